// The OpenAPI part of the apiserver's validation of a NATS resource, compiled with ajv from the
// same schema as the CRD. CEL rules (x-kubernetes-validations) are not evaluated here.
//
// Unknown fields are not errors: the schema declares no `additionalProperties: false` (a
// structural schema may not), and the apiserver prunes undeclared fields instead of rejecting
// them (it only warns, or fails under fieldValidation=Strict), so an admission webhook never
// sees them. Rejecting them here would make us stricter than the apiserver.
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import { LABEL_VALUE_PATTERN, QUANTITY_PATTERN, natsSchema } from './nats-schema.ts';

export interface FieldError {
  /** Kubernetes-style field path: `spec.cluster.size`, `status.conditions[0]`, `spec.labels[a/b]`. */
  path: string;
  message: string;
}

interface SchemaNode {
  readonly type?: string | readonly string[];
  readonly properties?: Readonly<Record<string, SchemaNode>>;
  readonly additionalProperties?: SchemaNode;
  readonly items?: SchemaNode;
  readonly [keyword: string]: unknown;
}

const INT_OR_STRING = 'x-kubernetes-int-or-string';
const LIST_MAP_KEYS = 'x-kubernetes-list-map-keys';

// Kubernetes spells int-or-string as `anyOf: [integer, string]` beside a parent-level `pattern`;
// ajv's strict types reject a string keyword without a string type, and anyOf would report each
// branch separately. A union type validates the same values with one error.
function toAjvSchema(node: SchemaNode): SchemaNode {
  const result: Record<string, unknown> = { ...node };
  if (node[INT_OR_STRING] === true) {
    delete result.anyOf;
    result.type = ['integer', 'string'];
  }
  if (node.properties) {
    result.properties = Object.fromEntries(
      Object.entries(node.properties).map(([key, child]) => [key, toAjvSchema(child)]),
    );
  }
  if (node.additionalProperties)
    result.additionalProperties = toAjvSchema(node.additionalProperties);
  if (node.items) result.items = toAjvSchema(node.items);
  return result;
}

const RFC3339_DATE_TIME = /^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/;

function listMapKeysUnique(keys: readonly string[], list: unknown): boolean {
  if (!Array.isArray(list)) return true;
  const seen = new Set<string>();
  for (const item of list as unknown[]) {
    const record = typeof item === 'object' && item !== null ? item : {};
    const key = JSON.stringify(keys.map((name) => (record as Record<string, unknown>)[name]));
    if (seen.has(key)) return false;
    seen.add(key);
  }
  return true;
}

function createAjv(): Ajv {
  const ajv = new Ajv({ strict: true, allErrors: true, allowUnionTypes: true, verbose: true });
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
  // The apiserver rejects two list-map entries with the same key; so do we.
  ajv.addKeyword({
    keyword: LIST_MAP_KEYS,
    type: 'array',
    metaSchema: { type: 'array', items: { type: 'string' }, minItems: 1 },
    validate: listMapKeysUnique,
    error: { message: 'must not contain two entries with the same key' },
  });
  ajv.addFormat('date-time', { type: 'string', validate: (value) => isDateTime(value) });
  ajv.addFormat('int64', { type: 'number', validate: (value) => Number.isSafeInteger(value) });
  return ajv;
}

function isDateTime(value: string): boolean {
  return RFC3339_DATE_TIME.test(value) && !Number.isNaN(Date.parse(value));
}

const ajvRootSchema = toAjvSchema(natsSchema);
const validateResource: ValidateFunction = createAjv().compile(ajvRootSchema);

function unescapePointer(segment: string): string {
  return segment.replaceAll('~1', '/').replaceAll('~0', '~');
}

// Turns ajv's JSON pointer into the path Kubernetes prints: properties joined by dots, list
// indices and map keys in brackets.
function kubernetesPath(instancePath: string, extraProperty?: string): string {
  const segments = instancePath === '' ? [] : instancePath.slice(1).split('/').map(unescapePointer);
  if (extraProperty !== undefined) segments.push(extraProperty);
  let node: SchemaNode | undefined = ajvRootSchema;
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
