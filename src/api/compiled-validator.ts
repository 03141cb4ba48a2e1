// The compiled NATS validator. The image's bundle replaces this module with the same validator
// as ajv's standalone code, generated when it is bundled (src/localplane/manager-image.ts).
import type { ValidateFunction } from 'ajv';
import { compileNatsValidator } from './validator-compile.ts';

export const validateResource: ValidateFunction = compileNatsValidator();
