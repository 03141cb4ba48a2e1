// What the validating webhook decides about a NATS resource: the CRD schema (through the shared
// ajv validator), the rules the CEL expressions in nats-schema.ts state, and the ones a schema
// cannot express (quantities the pattern lets through but nats-server or the apiserver would
// refuse, requests above limits, the single-instance rule). Pure and total: any JSON in, a list
// of field errors and warnings out.
//
// Verdicts agree with the CRD: the apiserver applies schema defaults before admission, so the
// rules read the defaulted spec, exactly what CEL sees.
import { defaultNatsSpec } from './defaults.ts';
import { MAX_STORE_BYTES as MAX_STORE_TEXT, MESSAGES, QUANTITY_PATTERN } from './nats-schema.ts';
import { QuantityError, compareQuantities, parseQuantity, type Quantity } from './quantity.ts';
import {
  belowProviderMinimum,
  fileStorageSizeDefault,
  fileStorageSizeMinimum,
  isUnsetSize,
} from './storage.ts';
import { validateNatsSpec, type FieldError } from './validator.ts';
import { compareStrings } from '../base/order.ts';

export type Operation = 'CREATE' | 'UPDATE' | 'DELETE';

/** The NATS resource the manager serves; every other one is refused at creation. */
export interface ServedNats {
  readonly natsName: string;
  readonly natsNamespace: string;
  /**
   * The cloud provider (kube-system/shoot-info), read by the caller: some have a minimum volume
   * size. A function so that the reading stays outside; undefined when unknown.
   */
  readonly provider?: () => string | undefined;
  /**
   * Rules on the children rendered from the resource (src/render/limits.ts), which this layer
   * cannot import: the caller passes them in.
   */
  readonly childRules?: ChildRules;
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
  readonly errors: readonly NatsFieldError[];
  readonly warnings: readonly string[];
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

export const invalid = (path: string, value: unknown, detail: string): NatsFieldError =>
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
  // Nothing to drop is the usual case: the value itself, not a copy (it is only read).
  if (!hasNullMember(value)) return value;
  if (Array.isArray(value)) return (value as unknown[]).map(withoutNulls);
  if (!isObject(value)) return value;
  // fromEntries, not assignment: a `__proto__` key stays an ordinary key.
  return Object.fromEntries(
    Object.entries(value)
      .filter(([, child]) => child !== null)
      .map(([key, child]) => [key, withoutNulls(child)]),
  );
}

function hasNullMember(value: unknown): boolean {
  if (Array.isArray(value)) return (value as unknown[]).some(hasNullMember);
  return isObject(value) && Object.values(value).some((v) => v === null || hasNullMember(v));
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

const BOUNDED_QUANTITY = new RegExp(QUANTITY_PATTERN);

/**
 * The quantity, for the rules that compare: as the CRD's CEL rules, only strings the bounded
 * pattern admits are parsed; the schema error already reports the others.
 */
function parsed(value: unknown): Quantity | undefined {
  if (typeof value !== 'string' && typeof value !== 'number') return undefined;
  if (typeof value === 'string' && !BOUNDED_QUANTITY.test(value)) return undefined;
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
const MAX_STORE_BYTES = parseQuantity(MAX_STORE_TEXT);
const TOO_LARGE = MESSAGES.storeTooLarge;

interface RuleInput {
  readonly op: Operation;
  readonly spec: JsonObject;
  /** The old defaulted spec, for UPDATE. */
  readonly old: JsonObject | undefined;
  /** The spec as sent, for what defaulting would hide (a removed file-storage size). */
  readonly rawSpec: unknown;
  readonly rawOldSpec: unknown;
  readonly provider: string | undefined;
}

function clusterSizeRules({ spec, old }: RuleInput): ScopedError[] {
  const size = at(spec, 'cluster', 'size');
  if (typeof size !== 'number' || !Number.isInteger(size)) return [];
  const errors: ScopedError[] = [];
  if (size % 2 === 0) errors.push(scoped(invalid(CLUSTER_SIZE, size, MESSAGES.sizeOdd)));
  const oldSize = at(old, 'cluster', 'size');
  if (typeof oldSize === 'number' && oldSize > 1 && size === 1) {
    errors.push(scoped(invalid(CLUSTER_SIZE, size, MESSAGES.sizeNotToOne)));
  }
  return errors;
}

// As the CRD's rule, which is the Go manager's: the integer 0 is refused while enabled; a zero
// quantity string is how its clients send an unset size, and means the default.
function memStorageRules({ spec }: RuleInput): ScopedError[] {
  const size = at(spec, 'jetStream', 'memStorage', 'size');
  const errors: ScopedError[] = [];
  if (at(spec, 'jetStream', 'memStorage', 'enabled') === true && size === 0) {
    errors.push(scoped(invalid(MEM_SIZE, size, MESSAGES.memStorageSize), MEM_STORAGE));
  }
  const quantity = parsed(size);
  if (quantity !== undefined && compareQuantities(quantity, MAX_STORE_BYTES) > 0)
    errors.push(scoped(invalid(MEM_SIZE, size, TOO_LARGE)));
  return errors;
}

function storageClassRules({ spec, old }: RuleInput): ScopedError[] {
  const className = at(spec, 'jetStream', 'fileStorage', 'storageClassName');
  const oldClassName = at(old, 'jetStream', 'fileStorage', 'storageClassName');
  if (typeof className !== 'string' || typeof oldClassName !== 'string') return [];
  if (className === oldClassName) return [];
  const detail = `${MESSAGES.fileStorageImmutable}: storageClassName cannot change (it is ${JSON.stringify(oldClassName)})`;
  return [scoped(invalid(STORAGE_CLASS, className, detail))];
}

/**
 * Whether a stored size fixed the claims: parseable, above zero, within the maximum. A zero size
 * means unset, and one the rules refuse today may have been stored under older ones; neither
 * leaves the resource stuck, as the CRD's rule says too.
 */
function isRealSize(size: unknown): boolean {
  const quantity = parsed(size);
  return (
    quantity !== undefined &&
    quantity.coefficient > 0n &&
    compareQuantities(quantity, MAX_STORE_BYTES) <= 0
  );
}

// Read from the specs as sent. A size that was absent or zero may be set later (upstream once
// refused that by mistake); a real size may grow but not shrink.
function fileSizeChangeRules({ rawSpec, rawOldSpec }: RuleInput): ScopedError[] {
  const oldSize = at(rawOldSpec, 'jetStream', 'fileStorage', 'size');
  if (!isRealSize(oldSize)) return [];
  const size = at(rawSpec, 'jetStream', 'fileStorage', 'size');
  if (size === undefined || size === null) {
    const detail = `${MESSAGES.fileStorageImmutable}: size cannot be removed (it is ${show(oldSize)})`;
    return [scoped(required(FILE_SIZE, detail), FILE_STORAGE)];
  }
  const [quantity, oldQuantity] = [parsed(size), parsed(oldSize)];
  if (quantity === undefined || oldQuantity === undefined) return [];
  // Growing is judged live (webhooks/storage-growth-check.ts): only the StorageClass can tell.
  if (compareQuantities(quantity, oldQuantity) >= 0) return [];
  const detail = `${MESSAGES.fileStorageShrink} (it is ${show(oldSize)})`;
  return [scoped(invalid(FILE_SIZE, size, detail))];
}

function fileSizeRules({ rawSpec, provider }: RuleInput): ScopedError[] {
  const size = at(rawSpec, 'jetStream', 'fileStorage', 'size');
  const quantity = parsed(size);
  if (quantity === undefined) return [];
  if (compareQuantities(quantity, MAX_STORE_BYTES) > 0)
    return [scoped(invalid(FILE_SIZE, size, TOO_LARGE))];
  if (belowProviderMinimum(size, provider)) {
    const minimum = fileStorageSizeMinimum(provider) ?? '';
    const detail =
      `must be at least ${minimum} on ${provider ?? ''}, the smallest volume it provisions ` +
      `(leave it unset or "0" for ${minimum})`;
    return [scoped(invalid(FILE_SIZE, size, detail))];
  }
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

/** The Go manager's words for a NATS resource besides the served one, which its users look for. */
export function singleInstanceMessage(
  served: Pick<ServedNats, 'natsName' | 'natsNamespace'>,
): string {
  return (
    `Only a single NATS CR with name: ${served.natsName} and namespace: ` +
    `${served.natsNamespace} is allowed to be created in a Kyma cluster.`
  );
}

function singleInstanceRule(object: unknown, served: ServedNats): ScopedError[] {
  const name = at(object, 'metadata', 'name');
  const namespace = at(object, 'metadata', 'namespace');
  if (name === served.natsName && namespace === served.natsNamespace) return [];
  const path = name === served.natsName ? 'metadata.namespace' : 'metadata.name';
  // Ours, then the Go manager's own words, which its users look for.
  const detail =
    `the NATS Manager serves only one NATS resource, ${served.natsNamespace}/${served.natsName}; ` +
    `any other would never be reconciled. ${singleInstanceMessage(served)}`;
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
    for (const key of Object.keys(map)) {
      const keyProblem = qualifiedNameProblem(key);
      if (keyProblem !== undefined) errors.push(scoped(invalid(path, key, keyProblem), path));
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

function warningsFor(spec: JsonObject, provider: string | undefined): string[] {
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
  const specFileSize = at(spec, 'jetStream', 'fileStorage', 'size');
  const fileSize =
    specFileSize === undefined || isUnsetSize(specFileSize)
      ? fileStorageSizeDefault(provider)
      : specFileSize;
  const fileQuantity = parsed(fileSize);
  if (memQuantity && fileQuantity && compareQuantities(fileQuantity, memQuantity) < 0) {
    warnings.push(
      `${FILE_SIZE} (${show(fileSize)}) is smaller than ${MEM_SIZE} (${show(memSize)}), ` +
        'so JetStream gets less room on disk than in memory; raising fileStorage.size later needs a ' +
        'StorageClass that allows volume expansion',
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
 * Rules that need more than the API: what the children rendered from the resource would be
 * (src/render/limits.ts). Called with the defaulted spec once the schema found no error.
 */
export type ChildRules = (resource: {
  readonly name: string;
  readonly namespace: string;
  readonly spec: JsonObject;
  readonly provider: string | undefined;
}) => NatsFieldError[];

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
  const schemaErrors = schemaErrorsOf(rawSpec, object);
  const old = op === 'UPDATE' ? defaultedSpec(rawOldSpec) : undefined;
  const input = spec && { op, spec, old, rawSpec, rawOldSpec, provider: served.provider?.() };
  const ruleErrors = input
    ? semanticErrors(input, object, served, new Set(schemaErrors.map((e) => e.error.path)))
    : [];
  // The children are rendered only from a spec the schema accepts.
  const childErrors =
    input && schemaErrors.length === 0 ? childRuleErrors(object, input, served.childRules) : [];
  const all = [...schemaErrors, ...ruleErrors, ...childErrors];
  const specChanged = op === 'CREATE' || !jsonEqual(rawSpec, rawOldSpec);
  return {
    // By path, as Kubernetes lists them; the sort is stable, so one field keeps its order.
    errors: (op === 'UPDATE' ? changedOnly(all, object, oldObject) : all)
      .map(({ error }) => error)
      .sort((a, b) => compareStrings(a.path, b.path)),
    warnings: spec && specChanged ? warningsFor(spec, input?.provider) : [],
  };
}

function schemaErrorsOf(rawSpec: unknown, object: JsonObject): ScopedError[] {
  // A null field is absent to the apiserver: defaulted or pruned before validation.
  return validateNatsSpec(rawSpec === null ? undefined : withoutNulls(rawSpec)).map((error) =>
    scoped(fromSchemaError(error, object)),
  );
}

function childRuleErrors(
  object: JsonObject,
  input: { readonly spec: JsonObject; readonly provider: string | undefined },
  childRules: ChildRules | undefined,
): ScopedError[] {
  const name = at(object, 'metadata', 'name');
  if (childRules === undefined || typeof name !== 'string') return [];
  const namespace = at(object, 'metadata', 'namespace');
  return childRules({
    name,
    namespace: typeof namespace === 'string' ? namespace : '',
    spec: input.spec,
    provider: input.provider,
  }).map((error) => scoped(error));
}

/** An UPDATE is refused only for what it changes: an old object's flaws stay its own. */
function changedOnly(all: ScopedError[], object: unknown, oldObject: unknown): ScopedError[] {
  return all.filter(
    ({ scope }) => !jsonEqual(valueAtPath(object, scope), valueAtPath(oldObject, scope)),
  );
}
