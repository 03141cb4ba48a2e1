// What the validating webhook decides about a NATS resource: the CRD schema (through the shared
// ajv validator), the rules the CEL expressions in nats-schema.ts state, and the ones a schema
// cannot express (quantities the pattern lets through but nats-server or the apiserver would
// refuse, requests above limits, the single-instance rule). Pure and total: any JSON in, a list
// of field errors and warnings out.
//
// Verdicts agree with the CRD: the apiserver applies schema defaults before admission, so the
// rules read the defaulted spec, exactly what CEL sees.
import { defaultNatsSpec } from './defaults.ts';
import { QuantityError, compareQuantities, parseQuantity, type Quantity } from './quantity.ts';
import { validateNatsSpec, type FieldError } from './validator.ts';

export type Operation = 'CREATE' | 'UPDATE' | 'DELETE';

/** The NATS resource the manager serves; every other one is refused at creation. */
export interface ServedNats {
  readonly natsName: string;
  readonly natsNamespace: string;
}

/** Kubernetes' field.ErrorType values, which are also the StatusCause reasons. */
export type FieldErrorType =
  'FieldValueInvalid' | 'FieldValueRequired' | 'FieldValueForbidden' | 'FieldValueNotSupported';

/** A field error with its parts; `message` is formatFieldError of them. */
export interface NatsFieldError extends FieldError {
  readonly type: FieldErrorType;
  /** The rejected value; absent when the message does not show one. */
  readonly value?: unknown;
  readonly detail: string;
}

export interface NatsChangeVerdict {
  readonly errors: NatsFieldError[];
  readonly warnings: string[];
}

const TYPE_TEXT: Record<FieldErrorType, string> = {
  FieldValueInvalid: 'Invalid value',
  FieldValueRequired: 'Required value',
  FieldValueForbidden: 'Forbidden',
  FieldValueNotSupported: 'Unsupported value',
};

/** A bad value as field.Error prints it: strings quoted, other scalars bare, null as "null". */
function describeValue(value: unknown): string {
  if (value === null || value === undefined) return '"null"';
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  return JSON.stringify(value);
}

/** The part of a field error after its path, as a StatusCause message carries it. */
export function fieldErrorBody(error: Omit<NatsFieldError, 'message' | 'path'>): string {
  const withValue =
    error.value !== undefined &&
    (error.type === 'FieldValueInvalid' || error.type === 'FieldValueNotSupported');
  const head = withValue
    ? `${TYPE_TEXT[error.type]}: ${describeValue(error.value)}`
    : TYPE_TEXT[error.type];
  return error.detail === '' ? head : `${head}: ${error.detail}`;
}

/**
 * A field error as Kubernetes prints it: `spec.cluster.size: Invalid value: 2: size only accepts
 * odd numbers`, `spec.x: Required value: ...`, `metadata.name: Forbidden: ...`.
 */
export function formatFieldError(error: Omit<NatsFieldError, 'message'>): string {
  const body = fieldErrorBody(error);
  return error.path === '' ? body : `${error.path}: ${body}`;
}

function fieldError(
  type: FieldErrorType,
  path: string,
  detail: string,
  value?: unknown,
): NatsFieldError {
  const parts = { type, path, detail, ...(value === undefined ? {} : { value }) };
  return { ...parts, message: formatFieldError(parts) };
}

const invalid = (path: string, value: unknown, detail: string): NatsFieldError =>
  fieldError('FieldValueInvalid', path, detail, value);
const required = (path: string, detail: string): NatsFieldError =>
  fieldError('FieldValueRequired', path, detail);
const forbidden = (path: string, detail: string): NatsFieldError =>
  fieldError('FieldValueForbidden', path, detail);

/**
 * An error with the part of the object its rule reads. An UPDATE that leaves that part as it was
 * is not refused for it, as the apiserver ratchets CRD validation: otherwise a resource stored
 * before a rule existed could not even lose its finalizer.
 */
interface ScopedError {
  readonly error: NatsFieldError;
  readonly scope: string;
}

const scoped = (error: NatsFieldError, scope = error.path): ScopedError => ({ error, scope });

// ---------------------------------------------------------------------------------------------
// Reading untyped JSON

type JsonObject = Record<string, unknown>;

function isObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function at(value: unknown, ...keys: string[]): unknown {
  let node = value;
  for (const key of keys) {
    if (!isObject(node) || !Object.hasOwn(node, key)) return undefined;
    node = node[key];
  }
  return node;
}

const NOT_FOUND = Symbol('not found');

/**
 * The value at a Kubernetes field path (`spec.resources.limits[memory]`), or NOT_FOUND. A map key
 * may itself contain `]` or `.`, so each candidate end of a bracket is tried against the object.
 */
function valueAtPath(node: unknown, path: string): unknown {
  if (path === '') return node;
  if (path.startsWith('[')) {
    for (let end = path.indexOf(']'); end !== -1; end = path.indexOf(']', end + 1)) {
      const child = childAt(node, path.slice(1, end));
      if (child === NOT_FOUND) continue;
      const found = valueAtPath(child, path.slice(end + 1));
      if (found !== NOT_FOUND) return found;
    }
    return NOT_FOUND;
  }
  const match = /^\.?([^.[]+)/.exec(path);
  if (match?.[1] === undefined) return NOT_FOUND;
  const child = childAt(node, match[1]);
  return child === NOT_FOUND ? NOT_FOUND : valueAtPath(child, path.slice(match[0].length));
}

function childAt(node: unknown, key: string): unknown {
  if (Array.isArray(node) && /^\d+$/.test(key) && Number(key) < node.length) {
    return (node as unknown[])[Number(key)];
  }
  return isObject(node) && Object.hasOwn(node, key) ? node[key] : NOT_FOUND;
}

/** Object members that are null dropped, as the apiserver prunes or defaults them. */
function withoutNulls(value: unknown): unknown {
  if (Array.isArray(value)) return (value as unknown[]).map(withoutNulls);
  if (!isObject(value)) return value;
  // fromEntries, not assignment: a `__proto__` key stays an ordinary key.
  return Object.fromEntries(
    Object.entries(value)
      .filter(([, child]) => child !== null)
      .map(([key, child]) => [key, withoutNulls(child)]),
  );
}

function jsonEqual(a: unknown, b: unknown): boolean {
  // Object.is for NaN; === for 0 and -0, which JSON does not tell apart.
  if (a === b || Object.is(a, b)) return true;
  if (Array.isArray(a) && Array.isArray(b)) {
    return a.length === b.length && a.every((item, i) => jsonEqual(item, b[i]));
  }
  if (!isObject(a) || !isObject(b) || Array.isArray(a) || Array.isArray(b)) return false;
  const keys = Object.keys(a);
  return (
    keys.length === Object.keys(b).length &&
    keys.every((key) => Object.hasOwn(b, key) && jsonEqual(a[key], b[key]))
  );
}

function parsed(value: unknown): Quantity | undefined {
  if (typeof value !== 'string' && typeof value !== 'number') return undefined;
  try {
    return parseQuantity(value);
  } catch (err) {
    if (err instanceof QuantityError) return undefined;
    throw err;
  }
}

/** The spec as the apiserver hands it to admission: schema defaults applied. */
function defaultedSpec(spec: unknown): JsonObject | undefined {
  if (spec !== undefined && spec !== null && !isObject(spec)) return undefined;
  return defaultNatsSpec(spec);
}

// ---------------------------------------------------------------------------------------------
// Schema errors

const UNSUPPORTED_PREFIX = 'Unsupported value: ';

function fromSchemaError(error: FieldError, root: unknown): NatsFieldError {
  if (error.message === 'Required value') return required(error.path, '');
  // The validator already prints the value and the supported values.
  if (error.message.startsWith(UNSUPPORTED_PREFIX)) {
    return fieldError(
      'FieldValueNotSupported',
      error.path,
      error.message.slice(UNSUPPORTED_PREFIX.length),
    );
  }
  const value = valueAtPath(root, error.path);
  return value === NOT_FOUND
    ? fieldError('FieldValueInvalid', error.path, error.message)
    : invalid(error.path, value, error.message);
}

// ---------------------------------------------------------------------------------------------
// Semantic rules, each on the defaulted spec (`spec`) and, for updates, the old one (`old`)

const CLUSTER_SIZE = 'spec.cluster.size';
const MEM_STORAGE = 'spec.jetStream.memStorage';
const MEM_SIZE = `${MEM_STORAGE}.size`;
const FILE_STORAGE = 'spec.jetStream.fileStorage';
const FILE_SIZE = `${FILE_STORAGE}.size`;
const STORAGE_CLASS = `${FILE_STORAGE}.storageClassName`;
const RESOURCES = 'spec.resources';

// nats-server reads store sizes into an int64.
const MAX_STORE_BYTES = parseQuantity('9223372036854775807');
const ZERO = parseQuantity(0);
const TOO_LARGE =
  'must be at most 9223372036854775807 bytes, the largest store nats-server accepts';

interface RuleInput {
  readonly op: Operation;
  readonly spec: JsonObject;
  /** The old defaulted spec, for UPDATE. */
  readonly old: JsonObject | undefined;
  /** The spec as sent, for what defaulting would hide (a removed file-storage size). */
  readonly rawSpec: unknown;
  readonly rawOldSpec: unknown;
}

function clusterSizeRules({ spec, old }: RuleInput): ScopedError[] {
  const size = at(spec, 'cluster', 'size');
  if (typeof size !== 'number' || !Number.isInteger(size)) return [];
  const errors: ScopedError[] = [];
  if (size % 2 === 0)
    errors.push(scoped(invalid(CLUSTER_SIZE, size, 'size only accepts odd numbers')));
  const oldSize = at(old, 'cluster', 'size');
  if (typeof oldSize === 'number' && oldSize > 1 && size === 1) {
    errors.push(
      scoped(invalid(CLUSTER_SIZE, size, 'size cannot be set to 1 once it was greater than 1')),
    );
  }
  return errors;
}

function memStorageRules({ spec }: RuleInput): ScopedError[] {
  if (at(spec, 'jetStream', 'memStorage', 'enabled') !== true) return [];
  const size = at(spec, 'jetStream', 'memStorage', 'size');
  const quantity = parsed(size);
  if (quantity === undefined) return [];
  if (compareQuantities(quantity, ZERO) <= 0) {
    const detail = 'memStorage can only be enabled with a size greater than 0';
    return [scoped(invalid(MEM_SIZE, size, detail), MEM_STORAGE)];
  }
  if (compareQuantities(quantity, MAX_STORE_BYTES) > 0)
    return [scoped(invalid(MEM_SIZE, size, TOO_LARGE))];
  return [];
}

function storageClassRules({ spec, old }: RuleInput): ScopedError[] {
  const className = at(spec, 'jetStream', 'fileStorage', 'storageClassName');
  const oldClassName = at(old, 'jetStream', 'fileStorage', 'storageClassName');
  if (typeof className !== 'string' || typeof oldClassName !== 'string') return [];
  if (className === oldClassName) return [];
  const detail = `storageClassName is immutable once set (it is ${JSON.stringify(oldClassName)})`;
  return [scoped(invalid(STORAGE_CLASS, className, detail))];
}

// Read from the specs as sent: defaulting would fill in the controller's 1Gi. A size that was
// absent may be set later (upstream once refused that by mistake).
function fileSizeChangeRules({ rawSpec, rawOldSpec }: RuleInput): ScopedError[] {
  const oldSize = at(rawOldSpec, 'jetStream', 'fileStorage', 'size');
  if (oldSize === undefined || oldSize === null) return [];
  const size = at(rawSpec, 'jetStream', 'fileStorage', 'size');
  if (size === undefined || size === null) {
    const detail = `fileStorage.size cannot be removed once set (it is ${show(oldSize)})`;
    return [scoped(required(FILE_SIZE, detail), FILE_STORAGE)];
  }
  const [quantity, oldQuantity] = [parsed(size), parsed(oldSize)];
  if (quantity === undefined || oldQuantity === undefined) return [];
  if (compareQuantities(quantity, oldQuantity) === 0) return [];
  const detail = `fileStorage.size is immutable once set (it is ${show(oldSize)})`;
  return [scoped(invalid(FILE_SIZE, size, detail))];
}

function fileSizeRules({ rawSpec }: RuleInput): ScopedError[] {
  const size = at(rawSpec, 'jetStream', 'fileStorage', 'size');
  const quantity = parsed(size);
  if (quantity === undefined) return [];
  if (compareQuantities(quantity, ZERO) <= 0) {
    return [
      scoped(
        invalid(FILE_SIZE, size, 'must be greater than zero: it is the size of a volume claim'),
      ),
    ];
  }
  if (compareQuantities(quantity, MAX_STORE_BYTES) > 0)
    return [scoped(invalid(FILE_SIZE, size, TOO_LARGE))];
  return [];
}

const RENDERED_RESOURCES = ['cpu', 'memory'] as const;

// The StatefulSet would be refused for a request above its limit; say so at the NATS resource.
function requestsWithinLimitsRules({ spec }: RuleInput): ScopedError[] {
  const errors: ScopedError[] = [];
  for (const name of RENDERED_RESOURCES) {
    const request = at(spec, 'resources', 'requests', name);
    const limit = at(spec, 'resources', 'limits', name);
    const [requestQuantity, limitQuantity] = [parsed(request), parsed(limit)];
    if (requestQuantity === undefined || limitQuantity === undefined) continue;
    if (compareQuantities(requestQuantity, limitQuantity) <= 0) continue;
    const detail = `must be less than or equal to ${name} limit of ${show(limit)}`;
    errors.push(scoped(invalid(`${RESOURCES}.requests[${name}]`, request, detail), RESOURCES));
  }
  return errors;
}

/** Every quantity in the spec as sent, with its Kubernetes path. */
function quantityFields(rawSpec: unknown): { path: string; value: unknown; resource: boolean }[] {
  const fields = [
    { path: MEM_SIZE, value: at(rawSpec, 'jetStream', 'memStorage', 'size'), resource: false },
    { path: FILE_SIZE, value: at(rawSpec, 'jetStream', 'fileStorage', 'size'), resource: false },
  ];
  for (const list of ['limits', 'requests']) {
    const map = at(rawSpec, 'resources', list);
    if (!isObject(map)) continue;
    for (const [name, value] of Object.entries(map)) {
      fields.push({ path: `${RESOURCES}.${list}[${name}]`, value, resource: true });
    }
  }
  return fields.filter(
    (field) => typeof field.value === 'string' || typeof field.value === 'number',
  );
}

// The schema's pattern admits strings Kubernetes cannot parse (`1e9999999999`); those would make
// the manager fail to render. Values the pattern already refused are not reported twice.
function quantityRules(rawSpec: unknown, schemaErrorPaths: ReadonlySet<string>): ScopedError[] {
  const errors: ScopedError[] = [];
  for (const { path, value, resource } of quantityFields(rawSpec)) {
    if (schemaErrorPaths.has(path)) continue;
    try {
      const quantity = parseQuantity(value as string | number);
      if (resource && quantity.coefficient < 0n) {
        errors.push(scoped(invalid(path, value, 'must be greater than or equal to 0')));
      }
    } catch (err) {
      if (!(err instanceof QuantityError)) throw err;
      errors.push(scoped(invalid(path, value, err.message)));
    }
  }
  return errors;
}

function singleInstanceRule(object: unknown, served: ServedNats): ScopedError[] {
  const name = at(object, 'metadata', 'name');
  const namespace = at(object, 'metadata', 'namespace');
  if (name === served.natsName && namespace === served.natsNamespace) return [];
  const path = name === served.natsName ? 'metadata.namespace' : 'metadata.name';
  const detail =
    `the NATS Manager serves only one NATS resource, ${served.natsNamespace}/${served.natsName}; ` +
    'any other would never be reconciled';
  return [scoped(forbidden(path, detail))];
}

// spec.labels and spec.annotations are copied onto every child: a key or value the API server
// would refuse there must be refused here, where the author sees it, not later on each child.
const NAME_PART = /^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const NAME_PART_RULE =
  "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (at most 63)";

function qualifiedNameProblem(key: string): string | undefined {
  const slash = key.lastIndexOf('/');
  const prefix = slash === -1 ? undefined : key.slice(0, slash);
  const name = slash === -1 ? key : key.slice(slash + 1);
  if (prefix !== undefined && (prefix.length > 253 || !DNS_SUBDOMAIN.test(prefix))) {
    return 'prefix part must be a lowercase DNS subdomain (at most 253 characters)';
  }
  if (name.length > 63 || !NAME_PART.test(name)) return NAME_PART_RULE;
  return undefined;
}

function metadataMapRules({ spec }: RuleInput): ScopedError[] {
  const errors: ScopedError[] = [];
  for (const field of ['labels', 'annotations'] as const) {
    const map = at(spec, field);
    if (!isObject(map)) continue;
    const path = `spec.${field}`;
    for (const [key, value] of Object.entries(map)) {
      const keyProblem = qualifiedNameProblem(key);
      if (keyProblem !== undefined) errors.push(scoped(invalid(path, key, keyProblem), path));
      if (
        field === 'labels' &&
        typeof value === 'string' &&
        value !== '' &&
        (value.length > 63 || !NAME_PART.test(value))
      ) {
        errors.push(
          scoped(
            invalid(
              `${path}[${key}]`,
              value,
              "a label value must be empty or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (at most 63)",
            ),
            path,
          ),
        );
      }
    }
  }
  return errors;
}

const SPEC_RULES = [
  clusterSizeRules,
  memStorageRules,
  storageClassRules,
  fileSizeChangeRules,
  fileSizeRules,
  requestsWithinLimitsRules,
  metadataMapRules,
];

// ---------------------------------------------------------------------------------------------
// Warnings: legal, but probably not what the author wants

function show(value: unknown): string {
  return typeof value === 'string' || typeof value === 'number'
    ? String(value)
    : JSON.stringify(value);
}

function warningsFor(spec: JsonObject): string[] {
  const warnings: string[] = [];
  const size = at(spec, 'cluster', 'size');
  if (size === 1) {
    warnings.push(
      `${CLUSTER_SIZE} is 1: a single NATS server keeps no replicas, so JetStream is ` +
        'unavailable whenever it restarts',
    );
  }
  const memEnabled = at(spec, 'jetStream', 'memStorage', 'enabled') === true;
  const memSize = at(spec, 'jetStream', 'memStorage', 'size');
  const memQuantity = memEnabled ? parsed(memSize) : undefined;
  const memoryLimit = at(spec, 'resources', 'limits', 'memory');
  const limitQuantity = parsed(memoryLimit);
  if (memQuantity && limitQuantity && compareQuantities(memQuantity, limitQuantity) > 0) {
    warnings.push(
      `${MEM_SIZE} (${show(memSize)}) is larger than ${RESOURCES}.limits.memory ` +
        `(${show(memoryLimit)}): a server whose memory store fills up is OOM-killed`,
    );
  }
  const fileSize = at(spec, 'jetStream', 'fileStorage', 'size');
  const fileQuantity = parsed(fileSize);
  if (memQuantity && fileQuantity && compareQuantities(fileQuantity, memQuantity) < 0) {
    warnings.push(
      `${FILE_SIZE} (${show(fileSize)}) is smaller than ${MEM_SIZE} (${show(memSize)}), ` +
        'so JetStream gets less room on disk than in memory; fileStorage.size cannot change once set',
    );
  }
  return warnings;
}

// ---------------------------------------------------------------------------------------------

function semanticErrors(
  input: RuleInput,
  object: unknown,
  served: ServedNats,
  schemaErrorPaths: ReadonlySet<string>,
): ScopedError[] {
  return [
    ...(input.op === 'CREATE' ? singleInstanceRule(object, served) : []),
    ...quantityRules(input.rawSpec, schemaErrorPaths),
    ...SPEC_RULES.flatMap((rule) => rule(input)),
  ];
}

/**
 * Whether a NATS resource may be created, updated or deleted as requested, with every violation
 * at once and warnings for risky but legal specs. `object` and `oldObject` are the review's
 * (oldObject only for UPDATE). Deletion is always allowed: the manager's deletion flow, not
 * admission, protects streams that still hold data.
 */
export function validateNatsChange(
  op: Operation,
  object: unknown,
  oldObject: unknown,
  served: ServedNats,
): NatsChangeVerdict {
  if (op === 'DELETE') return { errors: [], warnings: [] };
  if (!isObject(object)) {
    return { errors: [invalid('', object, 'must be a NATS resource object')], warnings: [] };
  }
  const rawSpec = object.spec;
  const rawOldSpec = op === 'UPDATE' ? at(oldObject, 'spec') : undefined;
  const spec = defaultedSpec(rawSpec);
  // A null field is absent to the apiserver: defaulted or pruned before validation.
  const schemaErrors = validateNatsSpec(rawSpec === null ? undefined : withoutNulls(rawSpec)).map(
    (error) => scoped(fromSchemaError(error, object)),
  );
  const old = op === 'UPDATE' ? defaultedSpec(rawOldSpec) : undefined;
  const input = spec && { op, spec, old, rawSpec, rawOldSpec };
  const ruleErrors = input
    ? semanticErrors(input, object, served, new Set(schemaErrors.map((e) => e.error.path)))
    : [];
  const all = [...schemaErrors, ...ruleErrors];
  const kept =
    op === 'UPDATE'
      ? all.filter(
          ({ scope }) => !jsonEqual(valueAtPath(object, scope), valueAtPath(oldObject, scope)),
        )
      : all;
  const specChanged = op === 'CREATE' || !jsonEqual(rawSpec, rawOldSpec);
  return {
    // By path, as Kubernetes lists them; the sort is stable, so one field keeps its order.
    errors: kept
      .map(({ error }) => error)
      .sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0)),
    warnings: spec && specChanged ? warningsFor(spec) : [],
  };
}
