// What the NATS validator is compiled from, and the checks its compiled code calls. No ajv here:
// the image's bundle carries the validator as ajv's standalone code (src/api/compiled-validator.ts),
// which imports this module and nothing of ajv's compiler.
import { natsSchema } from './nats-schema.ts';

export interface SchemaNode {
  readonly type?: string | readonly string[];
  readonly properties?: Readonly<Record<string, SchemaNode>>;
  readonly additionalProperties?: SchemaNode;
  readonly items?: SchemaNode;
  readonly [keyword: string]: unknown;
}

export const INT_OR_STRING = 'x-kubernetes-int-or-string';
export const LIST_MAP_KEYS = 'x-kubernetes-list-map-keys';

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

/** The NATS schema as ajv compiles it; also the map from ajv's error paths to Kubernetes'. */
export const ajvNatsSchema: SchemaNode = toAjvSchema(natsSchema);

const RFC3339_DATE_TIME = /^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/;

function isDateTime(value: string): boolean {
  return RFC3339_DATE_TIME.test(value) && !Number.isNaN(Date.parse(value));
}

/** The formats the schema names, as ajv's format definitions. */
export const formats = {
  'date-time': { type: 'string', validate: isDateTime },
  int64: { type: 'number', validate: (value: number) => Number.isSafeInteger(value) },
} as const;

/** The apiserver rejects two list-map entries with the same key; so do we. */
export function listMapKeysUnique(keys: readonly string[], list: unknown): boolean {
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
