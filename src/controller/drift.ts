// Whether server-side applying a desired child would change the live object, decided locally so
// that a reconcile with nothing to do sends no request at all.
//
// An apply changes the object in two ways, and both are checked:
// - a field we render has another value live (an out-of-band edit, or a spec change): every
//   rendered value must be present, equal, in the live object. The API server adds defaults
//   around ours (a container's terminationMessagePath), so the live object may hold more.
// - a field we applied before is no longer rendered (a label removed from the spec): the apply
//   would remove it. Those fields are in the live object's managedFields, under our manager.
import { isRecord, parseJsonOrUndefined } from '../base/json.ts';
import type { KubeObject } from '../base/object.ts';

function child(path: string, key: string): string {
  return path === '' ? key : `${path}.${key}`;
}

/** The first path where `live` does not hold `desired`, or undefined. */
function firstDifference(desired: unknown, live: unknown, path: string): string | undefined {
  if (isRecord(desired)) {
    if (!isRecord(live)) return path;
    for (const [key, value] of Object.entries(desired)) {
      const found = firstDifference(value, live[key], child(path, key));
      if (found !== undefined) return found;
    }
    return undefined;
  }
  if (Array.isArray(desired)) {
    // Lists we render are either atomic or keyed and applied in full, so the server keeps our
    // order: element by element is exact. A different length is always a difference.
    if (!Array.isArray(live) || live.length !== desired.length) return path;
    for (const [index, value] of desired.entries()) {
      const found = firstDifference(value, live[index], `${path}[${String(index)}]`);
      if (found !== undefined) return found;
    }
    return undefined;
  }
  return desired === live ? undefined : path;
}

/** Whether a list element matches the key of a `k:{...}` managed-fields entry. */
function matchesKey(element: unknown, key: Record<string, unknown>): boolean {
  if (!isRecord(element)) return false;
  // A key field we leave to the server's default (a port's protocol) is absent from the
  // rendered element; it cannot tell elements apart, so it does not count against a match.
  return Object.entries(key).every(
    ([field, value]) => element[field] === undefined || element[field] === value,
  );
}

const parseJson = parseJsonOrUndefined;

/**
 * The first field we own (a fieldsV1 tree) that `desired` no longer has, or undefined.
 * fieldsV1 keys: `f:<name>` a field, `k:<json>` a list element by key, `v:<json>` a set
 * element by value, `.` the node itself.
 */
function firstOwnedButNotDesired(
  owned: Record<string, unknown>,
  desired: unknown,
  path: string,
): string | undefined {
  for (const [key, subtree] of Object.entries(owned)) {
    const found = ownedEntryNotDesired(key, isRecord(subtree) ? subtree : {}, desired, path);
    if (found !== undefined) return found;
  }
  return undefined;
}

/** firstOwnedButNotDesired for one key of a fieldsV1 node. */
function ownedEntryNotDesired(
  key: string,
  fields: Record<string, unknown>,
  desired: unknown,
  path: string,
): string | undefined {
  if (key.startsWith('f:')) {
    const name = key.slice(2);
    if (!isRecord(desired) || !(name in desired)) return child(path, name);
    return firstOwnedButNotDesired(fields, desired[name], child(path, name));
  }
  if (key.startsWith('k:')) {
    const listKey = parseJson(key.slice(2));
    const element =
      Array.isArray(desired) && isRecord(listKey)
        ? (desired as unknown[]).find((e) => matchesKey(e, listKey))
        : undefined;
    if (element === undefined) return `${path}[${key.slice(2)}]`;
    return firstOwnedButNotDesired(fields, element, `${path}[${key.slice(2)}]`);
  }
  if (key.startsWith('v:')) {
    const value = JSON.stringify(parseJson(key.slice(2)));
    const present = Array.isArray(desired) && desired.some((e) => JSON.stringify(e) === value);
    return present ? undefined : `${path}[${key.slice(2)}]`;
  }
  // `.`: the node itself.
  return undefined;
}

// Managers that are Kubernetes itself: what they set (defaults, allocations) is theirs to keep.
const KUBERNETES_MANAGERS: ReadonlySet<string> = new Set([
  'kube-apiserver',
  'kube-controller-manager',
  'kube-scheduler',
  'kubelet',
]);

interface ManagedFieldsEntry {
  readonly manager?: string;
  readonly operation?: string;
  readonly subresource?: string;
  /** RFC 3339, whole seconds: when the manager last changed one of its fields. */
  readonly time?: string;
  readonly fieldsV1?: unknown;
}

function managedFieldsOf(live: KubeObject): readonly ManagedFieldsEntry[] {
  const entries = live.metadata.managedFields;
  return Array.isArray(entries) ? (entries as ManagedFieldsEntry[]) : [];
}

function appliedFields(
  live: KubeObject,
  fieldManager: string,
): Record<string, unknown> | undefined {
  const ours = managedFieldsOf(live).find(
    (e) =>
      e.manager === fieldManager &&
      e.operation === 'Apply' &&
      (e.subresource === undefined || e.subresource === ''),
  );
  return isRecord(ours?.fieldsV1) ? ours.fieldsV1 : undefined;
}

/**
 * The first field another client owns whole (a leaf of its fieldsV1: a scalar, or an atomic map
 * or list such as a Service's selector) whose live value is not exactly the desired one. Live
 * may hold more than we render only where the server adds defaults; in a field owned whole by
 * someone else, more is their addition, and our apply replaces it whole.
 */
function firstForeignWholeDifference(
  fields: Record<string, unknown>,
  desired: unknown,
  live: unknown,
  path: string,
): string | undefined {
  if (!isRecord(desired) || !isRecord(live)) return undefined;
  for (const [key, subtree] of Object.entries(fields)) {
    if (!key.startsWith('f:') || !isRecord(subtree)) continue;
    const name = key.slice(2);
    if (!(name in desired) || !(name in live)) continue;
    const found =
      Object.keys(subtree).length === 0
        ? JSON.stringify(desired[name]) === JSON.stringify(live[name])
          ? undefined
          : child(path, name)
        : firstForeignWholeDifference(subtree, desired[name], live[name], child(path, name));
    if (found !== undefined) return found;
  }
  return undefined;
}

function foreignEntries(live: KubeObject, fieldManager: string): ManagedFieldsEntry[] {
  return managedFieldsOf(live).filter((entry) => {
    const manager = entry.manager ?? '';
    const mainResource = entry.subresource === undefined || entry.subresource === '';
    return manager !== fieldManager && !KUBERNETES_MANAGERS.has(manager) && mainResource;
  });
}

/**
 * Where applying `desired` as `fieldManager` would change `live`: the first such field path
 * (for logs and events), or undefined when the apply would be a no-op and can be skipped.
 */
export function findDrift(
  desired: KubeObject,
  live: KubeObject,
  fieldManager: string,
): string | undefined {
  const changed = firstDifference(desired, live, '');
  if (changed !== undefined) return changed;
  for (const entry of foreignEntries(live, fieldManager)) {
    if (!isRecord(entry.fieldsV1)) continue;
    const found = firstForeignWholeDifference(entry.fieldsV1, desired, live, '');
    if (found !== undefined) return found;
  }
  const owned = appliedFields(live, fieldManager);
  // Nothing applied by us yet (created some other way): apply once to own what we render.
  if (owned === undefined) return 'metadata.managedFields';
  return firstOwnedButNotDesired(owned, desired, '');
}

/** Whether `fieldManager` has server-side applied the object (its Apply entry is there). */
export function appliedBy(live: KubeObject, fieldManager: string): boolean {
  return appliedFields(live, fieldManager) !== undefined;
}

/**
 * A field that another client (not Kubernetes itself) added and that `desired` does not have:
 * an extra label, env var, port or key. A server-side apply never removes fields another manager
 * owns, so such a child must be replaced to be restored. Undefined when there is none.
 */
export function findForeignAddition(
  desired: KubeObject,
  live: KubeObject,
  fieldManager: string,
): string | undefined {
  for (const entry of managedFieldsOf(live)) {
    const manager = entry.manager ?? '';
    if (manager === fieldManager || KUBERNETES_MANAGERS.has(manager)) continue;
    if (entry.subresource !== undefined && entry.subresource !== '') continue;
    if (!isRecord(entry.fieldsV1)) continue;
    const found = firstOwnedButNotDesired(entry.fieldsV1, desired, '');
    if (found !== undefined) return found;
  }
  return undefined;
}

/**
 * Whether the field at `path` (as findDrift names it) was changed by another client rather than
 * by our own rendering: another client owns it or something under it, or it was removed (a
 * removal leaves no owner). A field that only we own and that differs from what we render now
 * means our rendering changed: a spec change, or a new version of the manager.
 */
export function changedByOthers(live: KubeObject, path: string, fieldManager: string): boolean {
  const keys = fieldKeys(live, path);
  if (keys === undefined) return true;
  if (keys.length === 0 || keys[0] === 'managedFields') return false;
  return foreignEntries(live, fieldManager).some((entry) => owns(entry, keys));
}

/** Whether an entry owns the field at `keys` or something under it. */
function owns(entry: ManagedFieldsEntry, keys: readonly string[]): boolean {
  let node: unknown = entry.fieldsV1;
  for (const key of keys) node = isRecord(node) ? node[`f:${key}`] : undefined;
  return node !== undefined;
}

/** Who last changed a child, as its managedFields tell (they record no user). */
export interface ChangedBy {
  /** The field manager: `kubectl-edit`, `kubectl-patch`, a client's own name; '' if unnamed. */
  readonly manager: string;
  /** `Update` or `Apply`. */
  readonly operation?: string;
  readonly time?: string;
}

function latest(entries: readonly ManagedFieldsEntry[]): ManagedFieldsEntry | undefined {
  // RFC 3339 times in UTC order as strings; an entry without one counts as oldest, and of
  // equal times the later entry wins.
  return entries.reduce<ManagedFieldsEntry | undefined>(
    (best, entry) => (best === undefined || (entry.time ?? '') >= (best.time ?? '') ? entry : best),
    undefined,
  );
}

/**
 * The client other than `fieldManager` (and Kubernetes itself) that last changed the field at
 * `path` of `live`: of the entries that own it or something under it, the one changed last; when
 * none does (a removal leaves no owner), the one changed last of all. Undefined when no other
 * client has an entry.
 */
export function lastChangedBy(
  live: KubeObject,
  path: string,
  fieldManager: string,
): ChangedBy | undefined {
  const entries = foreignEntries(live, fieldManager);
  const keys = fieldKeys(live, path);
  const touching = keys === undefined ? [] : entries.filter((entry) => owns(entry, keys));
  const entry = latest(touching.length > 0 ? touching : entries);
  if (entry === undefined) return undefined;
  return {
    manager: entry.manager ?? '',
    ...(entry.operation === undefined ? {} : { operation: entry.operation }),
    ...(entry.time === undefined ? {} : { time: entry.time }),
  };
}

/**
 * The keys of a dotted path (up to its first list index) as they are in `object`: a key may hold
 * dots itself (`app.kubernetes.io/name`). Undefined when the path is not there.
 */
function fieldKeys(object: unknown, path: string): string[] | undefined {
  const segments = (path.split('[')[0] ?? '').split('.').filter((s) => s !== '');
  const keys: string[] = [];
  let node = object;
  for (let start = 0; start < segments.length;) {
    if (!isRecord(node)) return undefined;
    const record = node;
    const end = segments.findIndex(
      (_s, i) => i >= start && segments.slice(start, i + 1).join('.') in record,
    );
    if (end < 0) return undefined;
    const key = segments.slice(start, end + 1).join('.');
    keys.push(key);
    node = record[key];
    start = end + 1;
  }
  return keys;
}
