// The OpenAPI part of the apiserver's validation of a NATS resource, compiled with ajv from the
// same schema as the CRD. CEL rules (x-kubernetes-validations) are not evaluated here.
//
// Unknown fields are not errors: the schema declares no `additionalProperties: false` (a
// structural schema may not), and the apiserver prunes undeclared fields instead of rejecting
// them (it only warns, or fails under fieldValidation=Strict), so an admission webhook never
// sees them. Rejecting them here would make us stricter than the apiserver.
import type { ErrorObject } from 'ajv';
import { validateResource } from './compiled-validator.ts';
import { LABEL_VALUE_PATTERN, QUANTITY_PATTERN } from './nats-schema.ts';
import { ajvNatsSchema, type SchemaNode } from './validator-schema.ts';

export interface FieldError {
  /** Kubernetes-style field path: `spec.cluster.size`, `status.conditions[0]`, `spec.labels[a/b]`. */
  path: string;
  message: string;
}

function unescapePointer(segment: string): string {
  return segment.replaceAll('~1', '/').replaceAll('~0', '~');
}

// Turns ajv's JSON pointer into the path Kubernetes prints: properties joined by dots, list
// indices and map keys in brackets.
function kubernetesPath(instancePath: string, extraProperty?: string): string {
  const segments = instancePath === '' ? [] : instancePath.slice(1).split('/').map(unescapePointer);
  if (extraProperty !== undefined) segments.push(extraProperty);
  let node: SchemaNode | undefined = ajvNatsSchema;
  let path = '';
  for (const segment of segments) {
    const property: SchemaNode | undefined = node?.properties?.[segment];
    if (property) {
      path = path === '' ? segment : `${path}.${segment}`;
      node = property;
    } else if (node?.items) {
      path = `${path}[${segment}]`;
      node = node.items;
    } else if (node?.additionalProperties) {
      path = `${path}[${segment}]`;
      node = node.additionalProperties;
    } else {
      path = path === '' ? segment : `${path}.${segment}`;
      node = undefined;
    }
  }
  return path;
}

function typeMessage(type: unknown): string {
  // Only int-or-string fields have a union type.
  if (Array.isArray(type)) return 'must be an integer or a string';
  return `must be of type ${String(type)}`;
}

// Patterns whose meaning reads better than the expression.
const PATTERN_MESSAGES = new Map([
  [
    QUANTITY_PATTERN,
    'must be a Kubernetes quantity such as 1Gi, 500m or 1000 (no sign, at most 19 digits, ' +
      '9 decimals and a 2-digit exponent)',
  ],
  [
    LABEL_VALUE_PATTERN,
    "a label value must be empty or consist of alphanumeric characters, '-', '_' or '.', " +
      'and must start and end with an alphanumeric character',
  ],
]);

function messageOf(error: ErrorObject): string {
  const params = error.params as Record<string, unknown>;
  switch (error.keyword) {
    case 'required':
      return 'Required value';
    case 'type':
      return typeMessage(params.type);
    case 'minimum':
      return `should be greater than or equal to ${String(params.limit)}`;
    case 'maximum':
      return `should be less than or equal to ${String(params.limit)}`;
    case 'enum':
      return `Unsupported value: ${JSON.stringify(error.data)}: supported values: ${(
        params.allowedValues as unknown[]
      )
        .map((value) => JSON.stringify(value))
        .join(', ')}`;
    case 'pattern':
      return (
        PATTERN_MESSAGES.get(String(params.pattern)) ?? `should match '${String(params.pattern)}'`
      );
    case 'maxProperties':
      return `must have at most ${String(params.limit)} entries`;
    case 'maxLength':
      return `may not be longer than ${String(params.limit)}`;
    case 'minLength':
      return `should be at least ${String(params.limit)} chars long`;
    case 'format':
      return `must be a valid ${String(params.format)}`;
    default:
      return error.message ?? `failed ${error.keyword}`;
  }
}

function toFieldError(error: ErrorObject): FieldError {
  const missing =
    error.keyword === 'required'
      ? String((error.params as Record<string, unknown>).missingProperty)
      : undefined;
  return { path: kubernetesPath(error.instancePath, missing), message: messageOf(error) };
}

/** Schema errors of a whole NATS resource (apiVersion, kind, metadata, spec, status). */
export function validateNats(resource: unknown): FieldError[] {
  if (validateResource(resource)) return [];
  return (validateResource.errors ?? []).map(toFieldError);
}

/** Schema errors of a NATS spec, with paths starting at `spec`. */
export function validateNatsSpec(spec: unknown): FieldError[] {
  return validateNats({ spec });
}
