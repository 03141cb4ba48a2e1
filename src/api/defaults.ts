// Defaulting of a NATS spec exactly as the apiserver does it from the CRD schema. Schema defaults
// are read from natsSpecSchema, never restated here. The file-storage size has none: it is
// resolved when rendering (storage.ts) and never persisted, so that it can still be set later.
import type { DefaultedNatsSpec } from './nats.ts';
import { natsSpecSchema } from './nats-schema.ts';

interface SchemaNode {
  readonly default?: unknown;
  readonly properties?: Readonly<Record<string, SchemaNode>>;
  readonly additionalProperties?: SchemaNode;
  readonly items?: SchemaNode;
  readonly [keyword: string]: unknown;
}

const specHolder: SchemaNode = { properties: { spec: natsSpecSchema } };

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

// Not structuredClone: under jest's vm modules it returns objects of another realm, which
// libraries such as js-yaml do not recognise as plain objects.
function cloneJson(value: unknown): unknown {
  if (Array.isArray(value)) return (value as unknown[]).map(cloneJson);
  if (!isPlainObject(value)) return value;
  return Object.fromEntries(Object.entries(value).map(([key, child]) => [key, cloneJson(child)]));
}

function childSchema(schema: SchemaNode, key: string): SchemaNode | undefined {
  return schema.properties?.[key] ?? schema.additionalProperties;
}

// Plain assignment of a key named `__proto__` would set the prototype instead of a key, and a
// label map may carry any key the user wrote.
function setOwn(target: Record<string, unknown>, key: string, value: unknown): void {
  // defineProperty is a slow path in V8; every other key assigns as any key does.
  if (key !== '__proto__') {
    target[key] = value;
    return;
  }
  Object.defineProperty(target, key, {
    value,
    enumerable: true,
    writable: true,
    configurable: true,
  });
}

// Per schema node, found once: the defaulting walk runs on every admission request.
const withDefaults = new WeakMap<SchemaNode, readonly (readonly [string, SchemaNode])[]>();

function propertiesWithDefaults(schema: SchemaNode): readonly (readonly [string, SchemaNode])[] {
  let properties = withDefaults.get(schema);
  if (properties === undefined) {
    properties = Object.entries(schema.properties ?? {}).filter(([, p]) => p.default !== undefined);
    withDefaults.set(schema, properties);
  }
  return properties;
}

// Mirrors apiextensions structural defaulting: a missing (or null) field gets its default, then
// the walk descends, so nested defaults apply inside a defaulted `{}`. Nulls without a default
// are dropped as the apiserver prunes them. Returns new objects; the input is never touched.
function applySchemaDefaults(value: unknown, schema: SchemaNode): unknown {
  if (Array.isArray(value)) {
    const list = value as unknown[];
    const items = schema.items;
    return items ? list.map((item) => applySchemaDefaults(item, items)) : cloneJson(list);
  }
  if (!isPlainObject(value)) return value;

  const result: Record<string, unknown> = {};
  for (const [key, child] of Object.entries(value)) {
    const propertySchema = childSchema(schema, key);
    if (propertySchema === undefined) {
      // Not in the schema: the apiserver prunes it; we only default, so keep it as given.
      setOwn(result, key, cloneJson(child));
    } else if (child !== null) {
      setOwn(result, key, applySchemaDefaults(child, propertySchema));
    }
  }
  for (const [key, propertySchema] of propertiesWithDefaults(schema)) {
    if (result[key] === undefined) {
      result[key] = applySchemaDefaults(cloneJson(propertySchema.default), propertySchema);
    }
  }
  return result;
}

/**
 * The spec with every default applied: the CRD schema defaults, as the apiserver applies them
 * (no file-storage size: see storage.ts). Set values (including `false` and `0`) are kept; the
 * input is not mutated; applying it twice gives the same result. `undefined` or `null` stands
 * for an absent spec. Values of the wrong type are left as they are, so validate the spec
 * (validateNatsSpec) before trusting the result's type.
 * @throws TypeError when the spec is present but not an object.
 */
export function defaultNatsSpec(spec: unknown): DefaultedNatsSpec {
  const defaulted = applySchemaDefaults({ spec }, specHolder);
  const result = isPlainObject(defaulted) ? defaulted.spec : undefined;
  if (!isPlainObject(result)) {
    throw new TypeError(`NATS spec must be an object, got ${describeType(spec)}`);
  }
  return result as DefaultedNatsSpec;
}

function describeType(value: unknown): string {
  if (Array.isArray(value)) return 'array';
  return typeof value;
}
