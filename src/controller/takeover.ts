// Taking over children another manager applied: the Go NATS manager applies every child with
// the field manager `nats-manager` (so did this manager before it had a name of its own). Those
// children are ours to keep, but not silently: a child with entries of that manager is taken
// over explicitly, once, in three writes (see takeoverSteps), and only when nothing about it
// stands in the way. What stands in the way is decided here, purely, before anything is written:
// a field the API server will not change in place (a StatefulSet's selector, its claim
// templates) or one whose change would cut running pods off (a Service's selector).
import { canonicalResourceQuantity } from '../api/quantity.ts';
import { isRecord } from '../base/json.ts';
import type { KubeObject } from '../base/object.ts';

/** The Go manager's field manager, and this manager's own before it took the name below. */
export const LEGACY_FIELD_MANAGER = 'nats-manager';

/** Ours: never the Go manager's, so that each one's fields can be told apart. */
export const FIELD_MANAGER = 'kyma-nats-manager';

interface ManagedFieldsEntry {
  readonly manager?: string;
  readonly operation?: string;
  readonly subresource?: string;
}

function managedFields(live: KubeObject): readonly ManagedFieldsEntry[] {
  const entries = live.metadata.managedFields;
  return Array.isArray(entries) ? (entries as ManagedFieldsEntry[]) : [];
}

function onMainResource(entry: ManagedFieldsEntry): boolean {
  return entry.subresource === undefined || entry.subresource === '';
}

/** Whether the legacy manager still owns fields of `live`: it has to be taken over. */
export function needsTakeover(live: KubeObject): boolean {
  return managedFields(live).some(
    (entry) => entry.manager === LEGACY_FIELD_MANAGER && onMainResource(entry),
  );
}

/** Whether `live` was applied by the legacy manager (it counts as our child like our own). */
export function appliedByLegacyManager(live: KubeObject): boolean {
  return managedFields(live).some(
    (entry) =>
      entry.manager === LEGACY_FIELD_MANAGER &&
      entry.operation === 'Apply' &&
      onMainResource(entry),
  );
}

function at(object: unknown, path: readonly string[]): unknown {
  let node = object;
  for (const key of path) node = isRecord(node) ? node[key] : undefined;
  return node;
}

function show(value: unknown): string {
  return value === undefined ? 'unset' : JSON.stringify(value);
}

/** JSON with sorted keys: two maps equal whatever their key order. */
function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  if (isRecord(value)) {
    const keys = Object.keys(value).sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonical(value[k])}`).join(',')}}`;
  }
  return value === undefined ? 'undefined' : JSON.stringify(value);
}

function same(a: unknown, b: unknown): boolean {
  return canonical(a) === canonical(b);
}

function emptyToUndefined(value: unknown): unknown {
  return isRecord(value) && Object.keys(value).length === 0 ? undefined : value;
}

function storageOf(template: unknown): string | undefined {
  const storage = at(template, ['spec', 'resources', 'requests', 'storage']);
  if (typeof storage !== 'string' && typeof storage !== 'number') return undefined;
  try {
    return canonicalResourceQuantity(storage);
  } catch {
    return String(storage);
  }
}

/** Why one claim template of the live StatefulSet differs from ours (templates are immutable). */
function claimTemplateBlockers(desired: unknown, live: unknown, index: number): string[] {
  const name = show(at(desired, ['metadata', 'name']));
  const where = `spec.volumeClaimTemplates[${String(index)}] (${name})`;
  const blockers: string[] = [];
  const compare = (field: string, path: readonly string[], normalise = (v: unknown) => v): void => {
    const want = normalise(at(desired, path));
    const have = normalise(at(live, path));
    if (!same(want, have)) {
      blockers.push(`${where}.${field} is ${show(have)}, this manager renders ${show(want)}`);
    }
  };
  compare('metadata.name', ['metadata', 'name']);
  compare('metadata.labels', ['metadata', 'labels'], emptyToUndefined);
  compare('metadata.annotations', ['metadata', 'annotations'], emptyToUndefined);
  compare('spec.accessModes', ['spec', 'accessModes']);
  compare('spec.storageClassName', ['spec', 'storageClassName']);
  const want = storageOf(desired);
  const have = storageOf(live);
  if (want !== have) {
    blockers.push(
      `${where}.spec.resources.requests.storage is ${show(have)}, this manager renders ${show(want)}`,
    );
  }
  return blockers;
}

const STATEFULSET_IMMUTABLE =
  'a StatefulSet accepts no change there; replacing it would have to delete it first';

function statefulSetBlockers(desired: KubeObject, live: KubeObject): string[] {
  const blockers: string[] = [];
  const selector = at(live, ['spec', 'selector']);
  const wanted = at(desired, ['spec', 'selector']);
  if (!same(selector, wanted)) {
    blockers.push(
      `spec.selector is ${show(selector)}, this manager selects ${show(wanted)}: ` +
        `${STATEFULSET_IMMUTABLE}, and its pods would not be the new one's`,
    );
  }
  for (const field of ['serviceName', 'podManagementPolicy'] as const) {
    const have =
      at(live, ['spec', field]) ?? (field === 'podManagementPolicy' ? 'OrderedReady' : undefined);
    const want = at(desired, ['spec', field]);
    if (!same(have, want)) {
      blockers.push(
        `spec.${field} is ${show(have)}, this manager renders ${show(want)}: ${STATEFULSET_IMMUTABLE}`,
      );
    }
  }
  const liveTemplates = at(live, ['spec', 'volumeClaimTemplates']);
  const desiredTemplates = at(desired, ['spec', 'volumeClaimTemplates']);
  const have = Array.isArray(liveTemplates) ? (liveTemplates as unknown[]) : [];
  const want = Array.isArray(desiredTemplates) ? (desiredTemplates as unknown[]) : [];
  if (have.length !== want.length) {
    blockers.push(
      `spec.volumeClaimTemplates has ${String(have.length)} template(s), this manager renders ` +
        `${String(want.length)}: ${STATEFULSET_IMMUTABLE}`,
    );
  } else {
    const templates = want.flatMap((template, i) => claimTemplateBlockers(template, have[i], i));
    if (templates.length > 0) {
      blockers.push(`${templates.join('; ')}: ${STATEFULSET_IMMUTABLE}`);
    }
  }
  return blockers;
}

function serviceBlockers(desired: KubeObject, live: KubeObject): string[] {
  const blockers: string[] = [];
  const selector = at(live, ['spec', 'selector']);
  const wanted = at(desired, ['spec', 'selector']);
  if (!same(selector, wanted)) {
    blockers.push(
      `spec.selector is ${show(selector)}, this manager selects ${show(wanted)}: the Service ` +
        'would stop selecting the running pods, and the route names resolve through it',
    );
  }
  const clusterIp = at(live, ['spec', 'clusterIP']);
  const headless = at(desired, ['spec', 'clusterIP']);
  if (clusterIp !== headless) {
    blockers.push(
      `spec.clusterIP is ${show(clusterIp)}, this manager renders ${show(headless)}: a ` +
        "Service's cluster IP cannot be changed in place",
    );
  }
  return blockers;
}

function disruptionBudgetBlockers(desired: KubeObject, live: KubeObject): string[] {
  const selector = at(live, ['spec', 'selector']);
  const wanted = at(desired, ['spec', 'selector']);
  return same(selector, wanted)
    ? []
    : [
        `spec.selector is ${show(selector)}, this manager selects ${show(wanted)}: the budget ` +
          'would no longer count the running pods',
      ];
}

/**
 * Why `live`, applied by the legacy manager, cannot be taken over as `desired` without
 * deleting it or cutting its pods off: one line per field, what it is and why it matters.
 * Empty when it can. Pure.
 */
export function takeoverBlockers(desired: KubeObject, live: KubeObject): string[] {
  switch (desired.kind) {
    case 'StatefulSet':
      return statefulSetBlockers(desired, live);
    case 'Service':
      return serviceBlockers(desired, live);
    case 'PodDisruptionBudget':
      return disruptionBudgetBlockers(desired, live);
    default:
      return [];
  }
}

/** Paths of what the API server allocated (a Service's cluster IPs), carried over on a PUT. */
const CARRIED_OVER: Readonly<Record<string, readonly (readonly string[])[]>> = {
  Service: [
    ['spec', 'clusterIP'],
    ['spec', 'clusterIPs'],
    ['spec', 'ipFamilies'],
    ['spec', 'ipFamilyPolicy'],
  ],
  // Equal to ours (takeoverBlockers checked); the live form, defaults and all, so that the PUT
  // cannot differ from it in a field the API server refuses to change.
  StatefulSet: [['spec', 'volumeClaimTemplates']],
};

/**
 * The first write of a takeover: `desired` as a full replacement (PUT) of `live`, a
 * compare-and-swap on its resourceVersion. Anything the legacy manager set that we do not render
 * goes; a server-side apply alone would leave it behind, owned by no one.
 */
export function takeoverReplacement(desired: KubeObject, live: KubeObject): KubeObject {
  const object = structuredClone(desired) as Record<string, unknown> & KubeObject;
  object.metadata = { ...object.metadata, resourceVersion: live.metadata.resourceVersion };
  for (const path of CARRIED_OVER[desired.kind] ?? []) {
    const value = at(live, path);
    if (value === undefined) continue;
    let node: Record<string, unknown> = object;
    for (const key of path.slice(0, -1)) {
      const next = node[key];
      node[key] = isRecord(next) ? next : {};
      node = node[key] as Record<string, unknown>;
    }
    const last = path[path.length - 1] ?? '';
    node[last] = structuredClone(value);
  }
  return object;
}

/** One operation of a JSON patch (RFC 6902). */
export type JsonPatchOperation =
  | { readonly op: 'test'; readonly path: string; readonly value: unknown }
  | { readonly op: 'remove'; readonly path: string };

/**
 * The last write of a takeover: a JSON patch removing from `object` (as the force apply returned
 * it) every managedFields entry of the legacy manager, and the Update entry our own PUT left, so
 * that our Apply entry alone owns what we render. Each removal is guarded by a test of the
 * entry's manager (not by the resourceVersion: the StatefulSet controller writes the status
 * all through a rollout); an entry that moved fails the patch and the next reconcile takes the
 * child over again, which repeats nothing harmful. Undefined when there is nothing to remove.
 */
export function legacyEntriesPatch(object: KubeObject): JsonPatchOperation[] | undefined {
  const entries = managedFields(object);
  const indices = entries.flatMap((entry, index) => {
    const legacy = entry.manager === LEGACY_FIELD_MANAGER && onMainResource(entry);
    const ourPut =
      entry.manager === FIELD_MANAGER && entry.operation === 'Update' && onMainResource(entry);
    return legacy || ourPut ? [index] : [];
  });
  if (indices.length === 0) return undefined;
  const operations: JsonPatchOperation[] = [];
  // From the end, so that each index still points at the entry it was computed for.
  for (const index of [...indices].reverse()) {
    const path = `/metadata/managedFields/${String(index)}`;
    operations.push({ op: 'test', path: `${path}/manager`, value: entries[index]?.manager });
    operations.push({ op: 'remove', path });
  }
  return operations;
}
