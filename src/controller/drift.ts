// Whether server-side applying a desired child would change the live object, decided locally so
// that a reconcile with nothing to do sends no request at all.
//
// An apply changes the object in two ways, and both are checked:
// - a field we render has another value live (an out-of-band edit, or a spec change): every
//   rendered value must be present, equal, in the live object. The API server adds defaults
//   around ours (a container's terminationMessagePath), so the live object may hold more.
// - a field we applied before is no longer rendered (a label removed from the spec): the apply
//   would remove it. Those fields are in the live object's managedFields, under our manager.
import type { KubeObject } from '../kube/api.ts';

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

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

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

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
    if (key === '.') continue;
    const fields = isRecord(subtree) ? subtree : {};
    if (key.startsWith('f:')) {
      const name = key.slice(2);
      if (!isRecord(desired) || !(name in desired)) return child(path, name);
      const found = firstOwnedButNotDesired(fields, desired[name], child(path, name));
      if (found !== undefined) return found;
    } else if (key.startsWith('k:')) {
      const listKey = parseJson(key.slice(2));
      const element =
        Array.isArray(desired) && isRecord(listKey)
          ? (desired as unknown[]).find((e) => matchesKey(e, listKey))
          : undefined;
      if (element === undefined) return `${path}[${key.slice(2)}]`;
      const found = firstOwnedButNotDesired(fields, element, `${path}[${key.slice(2)}]`);
      if (found !== undefined) return found;
    } else if (key.startsWith('v:')) {
      const value = JSON.stringify(parseJson(key.slice(2)));
      if (!Array.isArray(desired) || !desired.some((e) => JSON.stringify(e) === value)) {
        return `${path}[${key.slice(2)}]`;
      }
    }
  }
  return undefined;
}

interface ManagedFieldsEntry {
  readonly manager?: string;
  readonly operation?: string;
  readonly subresource?: string;
  readonly fieldsV1?: unknown;
}

function appliedFields(
  live: KubeObject,
  fieldManager: string,
): Record<string, unknown> | undefined {
  const entries = (live.metadata.managedFields ?? []) as readonly ManagedFieldsEntry[];
  const ours = entries.find(
    (e) =>
      e.manager === fieldManager &&
      e.operation === 'Apply' &&
      (e.subresource === undefined || e.subresource === ''),
  );
  return isRecord(ours?.fieldsV1) ? ours.fieldsV1 : undefined;
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
  const owned = appliedFields(live, fieldManager);
  // Nothing applied by us yet (created some other way): apply once to own what we render.
  if (owned === undefined) return 'metadata.managedFields';
  return firstOwnedButNotDesired(owned, desired, '');
}
