// ajv's compilation of the NATS schema: at run time for the sources, and as standalone code for
// the image's bundle (`natsValidatorModule`), so that the image neither loads ajv's compiler nor
// spends its start compiling (about 110 ms and 1.7 MB of heap on this machine).
import { Ajv, Name, _, type ValidateFunction } from 'ajv';
import standalone from 'ajv/dist/standalone/index.js';
import {
  INT_OR_STRING,
  LIST_MAP_KEYS,
  ajvNatsSchema,
  formats,
  listMapKeysUnique,
} from './validator-schema.ts';

/** The name the standalone code gives validator-schema.ts, which it imports. */
const CHECKS = new Name('checks');

function createAjv(source: boolean): Ajv {
  const ajv = new Ajv({
    strict: true,
    allErrors: true,
    allowUnionTypes: true,
    verbose: true,
    // At run time each value is passed by reference; standalone code names it instead.
    code: { source, esm: true, formats: _`${CHECKS}.formats` },
  });
  // Kubernetes extensions: annotations for ajv, but their shape is checked so a typo in the
  // schema fails here rather than at CRD registration.
  ajv.addKeyword({ keyword: INT_OR_STRING, metaSchema: { type: 'boolean' } });
  ajv.addKeyword({
    keyword: 'x-kubernetes-list-type',
    metaSchema: { enum: ['atomic', 'set', 'map'] },
  });
  ajv.addKeyword({
    keyword: 'x-kubernetes-validations',
    metaSchema: {
      type: 'array',
      items: {
        type: 'object',
        required: ['rule'],
        additionalProperties: false,
        properties: {
          rule: { type: 'string' },
          message: { type: 'string' },
          messageExpression: { type: 'string' },
          reason: { type: 'string' },
          fieldPath: { type: 'string' },
          optionalOldSelf: { type: 'boolean' },
        },
      },
    },
  });
  ajv.addKeyword({
    keyword: LIST_MAP_KEYS,
    type: 'array',
    metaSchema: { type: 'array', items: { type: 'string' }, minItems: 1 },
    // Code, not a `validate` function: standalone code can name a function, not hold one.
    code(cxt) {
      const unique = cxt.gen.scopeValue('keyword', {
        ref: listMapKeysUnique,
        code: _`${CHECKS}.listMapKeysUnique`,
      });
      cxt.fail(_`!${unique}(${cxt.schemaValue}, ${cxt.data})`);
    },
    error: { message: 'must not contain two entries with the same key' },
  });
  for (const [name, format] of Object.entries(formats)) ajv.addFormat(name, format);
  return ajv;
}

/** The validator of a whole NATS resource, compiled now. */
export function compileNatsValidator(): ValidateFunction {
  return createAjv(false).compile(ajvNatsSchema);
}

/**
 * The same validator as an ES module exporting `validateResource`; `checksModule` is how it
 * imports validator-schema.ts. What it needs of ajv's runtime (ucs2length, for maxLength) it
 * requires, which a bundler resolves.
 */
export function natsValidatorModule(checksModule: string): string {
  const ajv = createAjv(true);
  // A CommonJS module whose exports are the function, with itself as `default`: typed as the latter.
  const code = standalone.default(ajv, ajv.compile(ajvNatsSchema));
  return (
    `import * as ${CHECKS.str} from ${JSON.stringify(checksModule)};\n` +
    `${code}\nexport { validate as validateResource };\n`
  );
}
