// One reconcile of one NATS resource, decided as a pure function: from the resource, its children
// as the caches hold them and what the shell observed (Istio served, pods' zones, the customer-data
// check, volume claims), what to write, what to report and when to look again. The executor
// (reconciler.ts) carries a plan out; settleApply() turns its per-child results into the status.
// test/unit/reconcile-plan.test.ts is the specification of the loop.
import { defaultNatsSpec } from '../api/defaults.ts';
import { canonicalResourceQuantity } from '../api/quantity.ts';
import { effectiveFileStorageSize } from '../api/storage.ts';
import {
  MANAGED_BY_LABEL,
  MANAGED_BY_VALUE,
  NATS_FINALIZER,
  NATS_KIND,
  type Nats,
  type NatsStatus,
} from '../api/nats.ts';
import { singleInstanceMessage } from '../api/rules.ts';
import { isRecord } from '../base/json.ts';
import { describeObject, refOf, type KubeObject, type ObjectRef } from '../base/object.ts';
import type { CustomerDataCheck } from '../nats/customer-data.ts';
import type { ServerHealth } from '../nats/monitoring.ts';
import { renderedChildKinds, type ChildKind } from '../render/children.ts';
import type { NatsImages, RenderContext } from '../render/context.ts';
import { natsRenderInput } from '../render/render.ts';
import { systemAccountPasswordFrom } from '../render/secret.ts';
import {
  appliedBy,
  changedByOthers,
  findDrift,
  findForeignAddition,
  lastChangedBy,
  type ChangedBy,
} from './drift.ts';
import type { NatsEvent } from './events.ts';
import { decideScaleDown, type ScaleDownObservation, type ScaleDownStep } from './scale-down.ts';
import {
  decideRejoin,
  parseRemovedPeers,
  REMOVED_PEERS_ANNOTATION,
  type RejoinDecision,
} from './rejoin.ts';
import {
  decideStorageGrowth,
  growthRefused,
  STORAGE_GROWTH_PREFIX,
  type ObservedClaim,
  type StorageGrowthStep,
} from './storage-growth.ts';
import {
  healthEvents,
  healthUnsettled,
  JETSTREAM_CONDITION,
  STORAGE_CONDITION,
} from './jetstream-health.ts';
import {
  decideRollout,
  ROLLOUT_POLL_MS,
  type RolloutDecision,
  type RolloutPod,
  type RolloutStatefulSet,
} from './rollout.ts';
import {
  appliedByLegacyManager,
  FIELD_MANAGER,
  LEGACY_FIELD_MANAGER,
  needsTakeover,
  takeoverBlockers,
  takeoverReplacement,
} from './takeover.ts';
import {
  computeNatsStatus,
  statusChanged,
  type ObservedStatefulSet,
  type ReconcileOutcome,
} from './status.ts';

export { FIELD_MANAGER } from './takeover.ts';

export interface PlanSettings {
  /** The only NATS resource served. */
  readonly natsName: string;
  readonly natsNamespace: string;
  readonly images: NatsImages;
  readonly clusterDomain: string;
  /** How soon a blocked deletion or a name conflict is looked at again (nothing watches them). */
  readonly recheckMs: number;
  /** The cloud provider (kube-system/shoot-info): decides the default file-storage size. */
  readonly provider?: string;
  /**
   * How often a converged resource's servers are asked about JetStream's health (default
   * HEALTH_POLL_MS). Only a changed status or a crossing is written.
   */
  readonly healthPollMs?: number;
}

/** The default interval of the JetStream health poll of a converged resource. */
export const HEALTH_POLL_MS = 30_000;
/** The poll's interval while the JetStream condition is not True. */
export const UNSETTLED_POLL_MS = 5_000;

/** What the shell observed; each part is gathered only when the plan needs it. */
export interface Observations {
  /** The live child of each kind by kind (absent: not there). */
  readonly children: ReadonlyMap<string, KubeObject>;
  /** Istio's DestinationRule API is served (the CRDs of optional kinds). */
  readonly servedCrd: (crd: string) => boolean;
  /** A fresh password, used only when no Secret of ours holds one. */
  readonly newPassword: string;
  /** Zone of the node of each NATS pod; undefined when unknown. */
  readonly zones?: readonly string[];
  /** The customer-data check; present during a deletion. */
  readonly customerData?: CustomerDataCheck;
  /** The StatefulSet's volume claims; present during a deletion. */
  readonly claims?: readonly ObjectRef[];
  /** The NATS pods; present once the StatefulSet exists. */
  readonly pods?: readonly RolloutPod[];
  /** Each server's monitoring answers by pod name; present when its pods were asked. */
  readonly servers?: ReadonlyMap<string, ServerHealth>;
  /** Pods, claims and NATS's view; present while the cluster shrinks or a shrink is finishing. */
  readonly scaleDown?: ScaleDownObservation;
  /**
   * The StatefulSet's volume claims with their sizes; present once the StatefulSet exists (or
   * while a storage growth re-creates it).
   */
  readonly volumeClaims?: readonly ObservedClaim[];
  /** NATS pods that run with no controller; counted while there is no StatefulSet. */
  readonly orphanedPods?: number;
  readonly now: Date;
}

/**
 * One child write. `replace` (PUT) where an apply could not restore the child; `takeover` for a
 * child the legacy field manager applied: `replacement` is PUT, then `object` applied, then the
 * legacy manager's managedFields entries removed (takeover.ts); `recreate` deletes `live` (the
 * StatefulSet of a storage growth) leaving its pods, to be created again once it is gone.
 */
export interface ChildWrite {
  readonly child: ChildKind;
  readonly action: 'create' | 'apply' | 'replace' | 'takeover' | 'recreate';
  readonly object: KubeObject;
  readonly replacement?: KubeObject;
  /** The live object a `recreate` deletes. */
  readonly live?: KubeObject;
  /** The first differing field, for logs and events. */
  readonly drift?: string;
  /** The event to record once the write succeeded. */
  readonly event: NatsEvent;
}

export interface Conflict {
  readonly child: ChildKind;
  readonly ref: ObjectRef;
}

/** A child left by an earlier NATS resource of the same name, waiting for the garbage collector. */
export interface StaleChild {
  readonly child: ChildKind;
  readonly ref: ObjectRef;
  readonly uid: string;
  /** Already being deleted: nothing to ask, only to wait for. */
  readonly deleting: boolean;
}

/** A child the legacy manager applied that cannot be taken over safely, and why. */
export interface TakeoverRefusal {
  readonly child: ChildKind;
  readonly ref: ObjectRef;
  readonly blockers: readonly string[];
}

export type Plan =
  /** Nothing to do: gone, or a deletion that is not ours to finish. */
  | { readonly kind: 'none' }
  /** A resource besides the served one: tell it so. */
  | {
      readonly kind: 'forbidden';
      readonly status: NatsStatus | undefined;
      readonly events: readonly NatsEvent[];
    }
  | ApplyPlan
  | DeletePlan;

export interface ApplyPlan {
  readonly kind: 'apply';
  /** Add our finalizer before any child is written. */
  readonly addFinalizer: boolean;
  readonly writes: readonly ChildWrite[];
  /** Objects with a child's name that are not ours: reported, never written. */
  readonly conflicts: readonly Conflict[];
  /**
   * Children of an earlier NATS resource of this name (deleted and created again): deleted
   * first, and nothing is written until they are gone, so no child mixes two of them.
   */
  readonly stale: readonly StaleChild[];
  /** Children not written because they read a conflicting object (a foreign ConfigMap). */
  readonly held: readonly { readonly child: ChildKind; readonly because: readonly string[] }[];
  /** Live children that need no write. */
  readonly unchanged: readonly KubeObject[];
  /** What the pod rollout does next (rollout.ts); a restart deletes that pod after the writes. */
  readonly rollout: RolloutDecision;
  /**
   * Children of the legacy manager that cannot be taken over safely: when there is any, nothing
   * is written (no finalizer, no child) and the status says what and why.
   */
  readonly refused: readonly TakeoverRefusal[];
  /** The scale-down step (scale-down.ts); the StatefulSet's replicas in `writes` follow it. */
  readonly scaleDown?: ScaleDownStep;
  /** Re-created servers of removed peers, and the record of removals to store (rejoin.ts). */
  readonly rejoin: RejoinDecision;
  /** The storage growth step (storage-growth.ts): claims to raise before the writes. */
  readonly storageGrowth?: StorageGrowthStep;
}

export interface DeletePlan {
  readonly kind: 'delete';
  /** Written first (only when it changes). */
  readonly status: NatsStatus | undefined;
  readonly events: readonly NatsEvent[];
  /** Volume claims to delete, then the finalizer to remove; empty and false while blocked. */
  readonly deleteClaims: readonly ObjectRef[];
  readonly removeFinalizer: boolean;
  readonly requeueAfterMs?: number;
}

export interface PlanInput {
  readonly nats: Nats;
  readonly settings: PlanSettings;
  readonly observed: Observations;
}

function ownerRefs(
  object: KubeObject,
): readonly { uid?: unknown; kind?: unknown; name?: unknown }[] {
  const refs = object.metadata.ownerReferences;
  return Array.isArray(refs) ? (refs as { uid?: unknown; kind?: unknown; name?: unknown }[]) : [];
}

function labelled(object: KubeObject): boolean {
  const labels = object.metadata.labels;
  return isRecord(labels) && labels[MANAGED_BY_LABEL] === MANAGED_BY_VALUE;
}

/**
 * Whether a live object is this resource's child: owned by its uid, or (its ownerReferences
 * stripped) labelled as ours, applied by our field manager, and owned by no other NATS resource.
 */
export function isOwnChild(object: KubeObject, uid: string): boolean {
  const refs = ownerRefs(object);
  if (refs.some((ref) => ref.uid === uid)) return true;
  const otherNats = refs.some((ref) => ref.kind === NATS_KIND);
  return (
    !otherNats &&
    labelled(object) &&
    (appliedBy(object, FIELD_MANAGER) || appliedByLegacyManager(object))
  );
}

/**
 * Whether a live object is a child of an earlier NATS resource with this one's name: every NATS
 * owner it names is this name with another uid. Names are unique in a namespace, so that owner
 * is gone and the object is garbage the collector has not yet reached (it may take a while
 * when it has only just started watching NATS resources).
 */
export function isStaleChild(object: KubeObject, nats: Nats): boolean {
  const natsOwners = ownerRefs(object).filter((ref) => ref.kind === NATS_KIND);
  return (
    natsOwners.length > 0 &&
    natsOwners.every((ref) => ref.name === nats.metadata?.name && ref.uid !== nats.metadata?.uid)
  );
}

/** The resource's spec is the one last reconciled: a difference in a child came from outside. */
function specReconciled(nats: Nats): boolean {
  const status = nats.status;
  return (
    status?.observedGeneration !== undefined &&
    status.observedGeneration === nats.metadata?.generation
  );
}

/**
 * The event for a child write: Restored only for what others changed (a deleted child, a field
 * another client changed or added), Updated when our own rendering changed (a spec change, or
 * a new version of the manager rendering differently), Created for a new child.
 */
function childEvent(
  nats: Nats,
  write: Omit<ChildWrite, 'event'>,
  live: KubeObject | undefined,
): NatsEvent {
  const { kind } = write.object;
  const name = write.object.metadata.name ?? '';
  if (write.action === 'create') {
    return specReconciled(nats) && nats.status?.state !== undefined
      ? {
          type: 'Warning',
          reason: 'Restored',
          message: `Recreated ${kind} ${name}, which was deleted.`,
        }
      : { type: 'Normal', reason: 'Created', message: `Created ${kind} ${name}.` };
  }
  if (write.action === 'takeover') {
    return {
      type: 'Normal',
      reason: 'TakenOver',
      message:
        `Took over ${kind} ${name} from the field manager ${LEGACY_FIELD_MANAGER} (the Go NATS ` +
        `manager's): replaced it with this manager's rendering, applied it as ${FIELD_MANAGER} ` +
        `and removed ${LEGACY_FIELD_MANAGER}'s managedFields entries.`,
    };
  }
  const drift = write.drift ?? '';
  const byOthers =
    write.action === 'replace' ||
    (live !== undefined && changedByOthers(live, drift, FIELD_MANAGER));
  if (!byOthers) {
    return { type: 'Normal', reason: 'Updated', message: `Updated ${kind} ${name} (${drift}).` };
  }
  const by = live === undefined ? undefined : lastChangedBy(live, drift, FIELD_MANAGER);
  return {
    type: 'Warning',
    reason: 'Restored',
    message: `Restored ${kind} ${name}: ${drift} was changed outside the NATS resource${changedByText(by)}.`,
  };
}

/**
 * ` by <manager> (<operation> at <time>)`, from managedFields; the API server records no user
 * there, so the field manager is the most it can tell.
 */
function changedByText(by: ChangedBy | undefined): string {
  if (by === undefined) return '';
  const manager = by.manager === '' ? 'a client without a field manager name' : by.manager;
  const details = [by.operation, by.time === undefined ? undefined : `at ${by.time}`].filter(
    (d) => d !== undefined,
  );
  return ` by ${manager}${details.length > 0 ? ` (${details.join(' ')})` : ''}`;
}

/** What to do with one child: write it, leave it, or report its name taken. */
function planChild(
  nats: Nats,
  child: ChildKind,
  desired: KubeObject,
  live: KubeObject | undefined,
): {
  write?: ChildWrite;
  conflict?: Conflict;
  stale?: StaleChild;
  unchanged?: KubeObject;
  refused?: TakeoverRefusal;
} {
  const uid = nats.metadata?.uid ?? '';
  if (live === undefined) {
    const write = { child, action: 'create' as const, object: desired };
    return { write: { ...write, event: childEvent(nats, write, live) } };
  }
  if (isStaleChild(live, nats)) {
    const liveUid = live.metadata.uid;
    const stale = { child, ref: refOf(live), uid: typeof liveUid === 'string' ? liveUid : '' };
    return { stale: { ...stale, deleting: live.metadata.deletionTimestamp !== undefined } };
  }
  if (!isOwnChild(live, uid)) return { conflict: { child, ref: refOf(desired) } };
  if (needsTakeover(live)) {
    const blockers = takeoverBlockers(desired, live);
    if (blockers.length > 0) return { refused: { child, ref: refOf(desired), blockers } };
    const write = {
      child,
      action: 'takeover' as const,
      object: desired,
      replacement: takeoverReplacement(desired, live),
      drift: `metadata.managedFields (${LEGACY_FIELD_MANAGER})`,
    };
    return { write: { ...write, event: childEvent(nats, write, live) } };
  }
  const foreign = findForeignAddition(desired, live, FIELD_MANAGER);
  if (foreign !== undefined) {
    const write = {
      child,
      action: 'replace' as const,
      object: replacement(child, desired, live),
      drift: foreign,
    };
    return { write: { ...write, event: childEvent(nats, write, live) } };
  }
  const drift = findDrift(desired, live, FIELD_MANAGER);
  if (drift === undefined) return { unchanged: live };
  const write = { child, action: 'apply' as const, object: desired, drift };
  return { write: { ...write, event: childEvent(nats, write, live) } };
}

function valueAt(object: unknown, path: readonly string[]): unknown {
  let node = object;
  for (const key of path) node = isRecord(node) ? node[key] : undefined;
  return node;
}

function withValueAt(object: KubeObject, path: readonly string[], value: unknown): KubeObject {
  const [head, ...rest] = path;
  if (head === undefined) return object;
  const copy = structuredClone(object) as Record<string, unknown>;
  let node = copy;
  for (const key of [head, ...rest].slice(0, -1)) {
    const next = node[key];
    node[key] = isRecord(next) ? next : {};
    node = node[key] as Record<string, unknown>;
  }
  node[path[path.length - 1] ?? head] = value;
  return copy as KubeObject;
}

/**
 * The desired object as a full replacement of `live`: compare-and-swap on its resourceVersion,
 * with what Kubernetes allocated (a Service's cluster IPs) carried over.
 */
export function replacement(child: ChildKind, desired: KubeObject, live: KubeObject): KubeObject {
  let object: KubeObject = {
    ...desired,
    metadata: { ...desired.metadata, resourceVersion: live.metadata.resourceVersion },
  };
  for (const path of child.allocatedFields ?? []) {
    const keys = path.split('.');
    const value = valueAt(live, keys);
    if (value !== undefined && valueAt(object, keys) === undefined) {
      object = withValueAt(object, keys, value);
    }
  }
  return object;
}

/** What cannot be taken over and why; the status message of a refused takeover. */
export function refusalMessage(refused: readonly TakeoverRefusal[]): string {
  const what = refused.map((r) => `${describeObject(r.ref)}: ${r.blockers.join('; ')}`);
  return (
    `Cannot take over the children ${LEGACY_FIELD_MANAGER} (the Go NATS manager) applied, so ` +
    `nothing was written: ${what.join('. ')}. Once the live objects match this manager's ` +
    'rendering in these fields, the takeover proceeds.'
  );
}

/** How soon to look again while an earlier resource's children are still there. */
const STALE_RECHECK_MS = 2_000;

function staleMessage(stale: readonly StaleChild[]): string {
  return (
    `Waiting for ${stale.map((s) => describeObject(s.ref)).join(', ')} of an earlier NATS ` +
    'resource of this name to be deleted; the children are created once they are gone.'
  );
}

function conflictMessage(conflicts: readonly Conflict[]): string {
  const names = conflicts.map((c) => describeObject(c.ref));
  const one = names.length === 1;
  return (
    `${names.join(', ')} already exist${one ? 's' : ''} and ${one ? 'is' : 'are'} not owned by ` +
    'this NATS resource; the manager does not take over objects it did not create. Delete or ' +
    'rename them.'
  );
}

/** What the children are rendered with; the live Secret's password is kept. */
function renderContext(
  uid: string,
  kinds: readonly ChildKind[],
  settings: PlanSettings,
  observed: Observations,
): RenderContext {
  const liveSecret = observed.children.get('Secret');
  const keptPassword =
    liveSecret !== undefined && isOwnChild(liveSecret, uid)
      ? systemAccountPasswordFrom(liveSecret)
      : undefined;
  return {
    istioPresent: kinds.some((c) => c.crd !== undefined),
    systemAccountPassword: keptPassword ?? observed.newPassword,
    images: settings.images,
    clusterDomain: settings.clusterDomain,
    ...(settings.provider === undefined ? {} : { provider: settings.provider }),
  };
}

/** max_file_store as the volumes are: the spec's size only once every claim holds it. */
function withStoreSize(
  context: RenderContext,
  growth: StorageGrowthStep | undefined,
): RenderContext {
  return growth === undefined || growth.storeSize === growth.size
    ? context
    : { ...context, fileStoreSize: growth.storeSize };
}

function claimTemplateSize(sts: KubeObject | undefined): string | undefined {
  const templates = valueAt(sts, ['spec', 'volumeClaimTemplates']);
  const first: unknown = Array.isArray(templates) ? (templates as unknown[])[0] : undefined;
  const size = valueAt(first, ['spec', 'resources', 'requests', 'storage']);
  return typeof size === 'string' || typeof size === 'number' ? String(size) : undefined;
}

/** Whether the last status said a storage growth was under way. */
function wasGrowing(nats: Nats): boolean {
  return (nats.status?.conditions ?? []).some(
    (c) => c.type === 'StatefulSet' && c.message.startsWith(STORAGE_GROWTH_PREFIX),
  );
}

/**
 * The storage growth step, while no scale-down is under way (that one runs alone, as rollouts
 * do); undefined before the claims were observed.
 */
function planStorageGrowth(
  nats: Nats,
  settings: PlanSettings,
  observed: Observations,
  scaleDown: ScaleDownStep | undefined,
): StorageGrowthStep | undefined {
  if (observed.volumeClaims === undefined) return undefined;
  const spec = defaultNatsSpec(nats.spec);
  const liveSts = observed.children.get('StatefulSet');
  const step = decideStorageGrowth({
    desired: canonicalResourceQuantity(
      effectiveFileStorageSize(spec.jetStream.fileStorage.size, settings.provider),
    ),
    template: claimTemplateSize(liveSts),
    statefulSetExists: liveSts !== undefined,
    statefulSetDeleting: liveSts?.metadata.deletionTimestamp !== undefined,
    size: spec.cluster.size,
    claims: observed.volumeClaims,
    wasGrowing: wasGrowing(nats),
    orphanedPods: observed.orphanedPods ?? 0,
  });
  // A scale-down first: only max_file_store still follows the claims.
  return scaleDown?.progress === undefined
    ? step
    : { patchClaims: [], size: step.size, statefulSet: 'write', storeSize: step.storeSize };
}

/** The StatefulSet's plan as the storage growth has it: held, deleted leaving its pods, re-created. */
function withGrowth(
  planned: ReturnType<typeof planChild>,
  growth: StorageGrowthStep | undefined,
  child: ChildKind,
  live: KubeObject | undefined,
): ReturnType<typeof planChild> {
  if (growth === undefined || child.kind !== 'StatefulSet' || planned.write === undefined) {
    return planned;
  }
  const name = planned.write.object.metadata.name ?? '';
  switch (growth.statefulSet) {
    case 'write':
      return planned;
    case 'hold':
      return live === undefined ? {} : { unchanged: live };
    case 'recreate':
      if (live === undefined) return planned;
      return {
        write: {
          child,
          action: 'recreate',
          object: planned.write.object,
          live,
          drift: 'spec.volumeClaimTemplates[0].spec.resources.requests.storage',
          event: {
            type: 'Normal',
            reason: 'Recreating',
            message:
              `Deleting StatefulSet ${name} leaving its pods running, to create it again with ` +
              `volume claims of ${growth.size} (volumeClaimTemplates cannot change).`,
          },
        },
      };
    case 'create':
      return planned.write.action !== 'create'
        ? planned
        : {
            write: {
              ...planned.write,
              event: {
                type: 'Normal',
                reason: 'Recreated',
                message:
                  `Created StatefulSet ${name} again with volume claims of ${growth.size}; it ` +
                  'adopts the running pods.',
              },
            },
          };
  }
  return planned;
}

function planApply(nats: Nats, settings: PlanSettings, observed: Observations): ApplyPlan {
  const input = natsRenderInput(nats);
  const kinds = renderedChildKinds(observed.servedCrd);
  const scaleDown =
    observed.scaleDown === undefined
      ? undefined
      : decideScaleDown(input.spec.cluster.size, observed.scaleDown);
  const growth = planStorageGrowth(nats, settings, observed, scaleDown);
  const context = withStoreSize(renderContext(input.uid, kinds, settings, observed), growth);
  const decided = kinds.map((child) => {
    const rendered = child.render(input, context);
    const desired =
      scaleDown === undefined || child.kind !== 'StatefulSet'
        ? rendered
        : withValueAt(rendered, ['spec', 'replicas'], scaleDown.replicas);
    const live = observed.children.get(child.kind);
    return {
      child,
      ...withGrowth(planChild(nats, child, desired, live), growth, child, live),
    };
  });
  const conflicts = decided.flatMap((d) => (d.conflict === undefined ? [] : [d.conflict]));
  const refused = decided.flatMap((d) => (d.refused === undefined ? [] : [d.refused]));
  const stale = decided.flatMap((d) => (d.stale === undefined ? [] : [d.stale]));
  // One child that cannot be taken over stops every write: a half-taken-over cluster, with
  // some children ours and some the Go manager's, is worse than either. So does one child of an
  // earlier resource of this name, until all of them are gone.
  const { writes, held } =
    refused.length > 0 || stale.length > 0
      ? { writes: [], held: [] }
      : heldBack(decided, conflicts);
  const rejoin = planRejoin(nats, observed);
  // A growth runs alone too: pods are rolled once the StatefulSet has its new claims.
  const alone = scaleDown !== undefined || growth?.progress !== undefined || stale.length > 0;
  const rollout = alone ? NO_ROLLOUT : planRollout(observed, writes, refused, rejoin);
  return {
    kind: 'apply',
    addFinalizer:
      refused.length === 0 && !(nats.metadata?.finalizers ?? []).includes(NATS_FINALIZER),
    writes,
    conflicts,
    stale,
    held,
    unchanged: decided.flatMap((d) => (d.unchanged === undefined ? [] : [d.unchanged])),
    rollout,
    refused,
    ...(scaleDown === undefined ? {} : { scaleDown }),
    rejoin,
    ...(growth === undefined ? {} : { storageGrowth: growth }),
  };
}

/** Which re-created servers of removed peers JetStream has yet to admit (rejoin.ts). */
function planRejoin(nats: Nats, observed: Observations): RejoinDecision {
  return decideRejoin({
    removed: parseRemovedPeers(nats.metadata?.annotations?.[REMOVED_PEERS_ANNOTATION]),
    pods: observed.pods ?? [],
    servers: observed.servers,
    now: observed.now,
  });
}

/** The writes to make, and those held back because they read an object that is not ours. */
function heldBack(
  decided: readonly { child: ChildKind; write?: ChildWrite }[],
  conflicts: readonly Conflict[],
): { writes: ChildWrite[]; held: { child: ChildKind; because: string[] }[] } {
  const conflicting = new Set(conflicts.map((c) => c.child.kind));
  const held: { child: ChildKind; because: string[] }[] = [];
  const writes: ChildWrite[] = [];
  for (const { child, write } of decided) {
    if (write === undefined) continue;
    const because = (child.consumes ?? []).filter((kind) => conflicting.has(kind));
    if (because.length > 0) held.push({ child, because });
    else writes.push(write);
  }
  return { writes, held };
}

/** A scale-down runs alone: pods are rolled once the cluster has its new size. */
const NO_ROLLOUT: RolloutDecision = { kind: 'none' };

/**
 * Pods are rolled against the StatefulSet as it is live; one being written this time is looked
 * at again once its controller has seen the new spec. Nothing rolls while a takeover is refused.
 */
function planRollout(
  observed: Observations,
  writes: readonly ChildWrite[],
  refused: readonly TakeoverRefusal[],
  rejoin: RejoinDecision,
): RolloutDecision {
  const liveSts = observed.children.get('StatefulSet');
  const stsWritten = writes.some((w) => w.object.kind === 'StatefulSet');
  return liveSts === undefined || stsWritten || refused.length > 0 || observed.pods === undefined
    ? { kind: 'none' }
    : decideRollout({
        statefulSet: liveSts as RolloutStatefulSet,
        pods: observed.pods,
        servers: observed.servers ?? new Map(),
        rejoining: rejoin.rejoining.map((r) => r.server),
        now: observed.now,
      });
}

function natsSize(nats: Nats): number {
  return defaultNatsSpec(nats.spec).cluster.size;
}

/** What the status is computed from besides the resource. */
interface StatusFacts {
  readonly now: Date;
  readonly statefulSet?: ObservedStatefulSet;
  readonly zones?: readonly string[];
  readonly rollout?: { readonly message: string };
  readonly servers?: ReadonlyMap<string, ServerHealth>;
  readonly scaling?: ScaleDownStep['progress'];
  readonly waiting?: { readonly message: string; readonly blocked: boolean };
  readonly rejoining?: RejoinDecision['rejoining'];
}

/** The status `outcome` leads to, or undefined when it is the one stored. */
export function nextStatus(
  nats: Nats,
  settings: PlanSettings,
  outcome: ReconcileOutcome,
  observed: StatusFacts,
): NatsStatus | undefined {
  const now = observed.now;
  const previous = nats.status;
  const next = computeNatsStatus({
    nats: {
      name: nats.metadata?.name ?? '',
      namespace: nats.metadata?.namespace ?? '',
      generation: nats.metadata?.generation,
      deleting: nats.metadata?.deletionTimestamp !== undefined,
    },
    previous,
    now,
    clusterDomain: settings.clusterDomain,
    outcome,
    statefulSet: observed.statefulSet,
    zones: observed.zones,
    size: natsSize(nats),
    ...(observed.rollout === undefined ? {} : { rollout: observed.rollout }),
    ...(observed.servers === undefined ? {} : { servers: observed.servers }),
    ...(observed.scaling === undefined ? {} : { scaling: observed.scaling }),
    ...(observed.waiting === undefined ? {} : { waiting: observed.waiting }),
    ...(observed.rejoining === undefined ? {} : { rejoining: observed.rejoining }),
  });
  return statusChanged(previous, next) ? next : undefined;
}

function stateMessage(next: NatsStatus, outcome: ReconcileOutcome): string {
  if (outcome.kind === 'deletionBlocked') {
    return next.conditions?.find((c) => c.type === 'Deleted')?.message ?? '';
  }
  if (next.state === 'Deleting') return 'The NATS resource is being deleted.';
  const unhealthy = next.conditions?.find(
    (c) => (c.type === JETSTREAM_CONDITION || c.type === STORAGE_CONDITION) && c.status === 'False',
  );
  if (next.state === 'Warning' && unhealthy !== undefined) return unhealthy.message;
  return next.conditions?.find((c) => c.type === 'Available')?.message ?? '';
}

/** Named after the state, except where the Go manager names the cause (Forbidden). */
function eventReason(next: NatsStatus, outcome: ReconcileOutcome): string {
  if (outcome.kind === 'deletionBlocked') return 'DeletionBlocked';
  if (outcome.kind === 'forbidden') return 'Forbidden';
  return next.state ?? 'Unknown';
}

/** The Event for a state the status moves to; undefined when the state stays. */
export function stateEvent(
  previous: NatsStatus | undefined,
  next: NatsStatus | undefined,
  outcome: ReconcileOutcome,
): NatsEvent | undefined {
  if (next === undefined) return undefined;
  const blocked = outcome.kind === 'deletionBlocked';
  if (previous?.state === next.state && !blocked) return undefined;
  const warning = next.state === 'Error' || next.state === 'Warning';
  return {
    type: warning ? 'Warning' : 'Normal',
    reason: eventReason(next, outcome),
    message: stateMessage(next, outcome),
  };
}

function withStateEvent(
  nats: Nats,
  status: NatsStatus | undefined,
  outcome: ReconcileOutcome,
  events: readonly NatsEvent[] = [],
): { status: NatsStatus | undefined; events: NatsEvent[] } {
  const event = stateEvent(nats.status, status, outcome);
  return { status, events: [...events, ...(event === undefined ? [] : [event])] };
}

function planDelete(nats: Nats, settings: PlanSettings, observed: Observations): Plan {
  if (!(nats.metadata?.finalizers ?? []).includes(NATS_FINALIZER)) return { kind: 'none' };
  const check = observed.customerData ?? { kind: 'error', error: 'the check did not run' };
  const now = observed.now;
  if (check.kind === 'blocked' || check.kind === 'error') {
    const message =
      check.kind === 'blocked'
        ? check.message
        : `Cannot delete NATS cluster: checking it for customer streams failed: ${check.error}`;
    const outcome: ReconcileOutcome = { kind: 'deletionBlocked', message };
    // Written only when it changes: a deletion blocked for hours writes nothing on rechecks.
    const status = nextStatus(nats, settings, outcome, { now });
    return {
      kind: 'delete',
      ...withStateEvent(nats, status, outcome),
      deleteClaims: [],
      removeFinalizer: false,
      requeueAfterMs: settings.recheckMs,
    };
  }
  const unreachable: NatsEvent[] =
    check.kind === 'unreachable'
      ? [
          {
            type: 'Warning',
            reason: 'DeletionUnchecked',
            message:
              'NATS could not be reached, so it was not checked for customer streams; ' +
              `deleting anyway: ${check.error}`,
          },
        ]
      : [];
  const outcome: ReconcileOutcome = { kind: 'deleting' };
  return {
    kind: 'delete',
    ...withStateEvent(nats, nextStatus(nats, settings, outcome, { now }), outcome, unreachable),
    deleteClaims: observed.claims ?? [],
    removeFinalizer: true,
  };
}

/** What one reconcile of `nats` should do. Pure. */
export function planReconcile({ nats, settings, observed }: PlanInput): Plan {
  const name = nats.metadata?.name;
  const namespace = nats.metadata?.namespace;
  const deleting = nats.metadata?.deletionTimestamp !== undefined;
  if (name !== settings.natsName || namespace !== settings.natsNamespace) {
    if (deleting) return { kind: 'none' };
    const outcome: ReconcileOutcome = {
      kind: 'forbidden',
      // The Go manager's words first: its users and tests match them.
      message:
        `${singleInstanceMessage(settings)} The NATS Manager serves only one NATS resource, ` +
        `${settings.natsNamespace}/${settings.natsName}; this one is not reconciled. Delete it.`,
    };
    return {
      kind: 'forbidden',
      ...withStateEvent(nats, nextStatus(nats, settings, outcome, { now: observed.now }), outcome),
    };
  }
  if (deleting) return planDelete(nats, settings, observed);
  return planApply(nats, settings, observed);
}

/** How one write of an apply plan went. */
export type WriteResult =
  | {
      readonly write: ChildWrite;
      readonly ok: true;
      readonly object: KubeObject;
      /** Found done already (a deletion under way): nothing written, no event. */
      readonly repeated?: boolean;
    }
  | { readonly write: ChildWrite; readonly ok: false; readonly error: string };

export interface Settled {
  readonly status: NatsStatus | undefined;
  readonly events: readonly NatsEvent[];
  readonly requeueAfterMs?: number;
  /** Children that failed: the reconcile fails (and is retried with backoff) after reporting. */
  readonly failed: readonly string[];
}

/** How the pod restart the plan asked for went; absent when it asked for none. */
export type RestartResult = { readonly ok: true } | { readonly ok: false; readonly error: string };

/** How raising one claim of a storage growth went. */
export type ClaimResult =
  | { readonly claim: string; readonly ok: true }
  | { readonly claim: string; readonly ok: false; readonly error: string };

/** The growth step as it turned out: blocked when the API server refused a claim's new size. */
function settledGrowth(
  plan: ApplyPlan,
  claims: readonly ClaimResult[],
): StorageGrowthStep | undefined {
  const refused = claims.flatMap((c) => (c.ok ? [] : [{ claim: c.claim, error: c.error }]));
  const growth = plan.storageGrowth;
  return growth === undefined || refused.length === 0 ? growth : growthRefused(growth, refused);
}

/** What a growth adds to the settled apply: a Warning once it is refused, and when to look again. */
function growthReport(
  growth: StorageGrowthStep | undefined,
  settings: PlanSettings,
  status: NatsStatus | undefined,
): { events: NatsEvent[]; requeueAfterMs: number | undefined } {
  const progress = growth?.progress;
  const blocked = progress?.blocked === true;
  return {
    // Announced when the status first says so, not on every recheck.
    events:
      blocked && status !== undefined
        ? [{ type: 'Warning', reason: 'StorageGrowthRefused', message: progress.message }]
        : [],
    // Refused, the claims are asked again only at the recheck interval.
    requeueAfterMs: blocked ? settings.recheckMs : growth?.requeueAfterMs,
  };
}

/** What keeps an apply from converging, each as a sentence of the status. */
function problemsOf(plan: ApplyPlan, failed: readonly string[]): string[] {
  return [
    ...(plan.refused.length > 0 ? [refusalMessage(plan.refused)] : []),
    ...(plan.conflicts.length > 0 ? [conflictMessage(plan.conflicts)] : []),
    ...(plan.held.length > 0
      ? [
          `${plan.held.map((h) => h.child.kind).join(', ')} not applied while ` +
            `${[...new Set(plan.held.flatMap((h) => h.because))].join(', ')} is not ours.`,
        ]
      : []),
    ...(failed.length > 0 ? [`Failed to apply: ${failed.join('; ')}`] : []),
  ];
}

/**
 * The events of the child writes that went through. They happened whatever becomes of the
 * status write after them, so a status lost to a conflict must not lose them too: the retry
 * finds the children written and has nothing left to announce.
 */
export function writeEvents(results: readonly WriteResult[]): NatsEvent[] {
  return results.flatMap((r) => (r.ok && r.repeated !== true ? [r.write.event] : []));
}

/** The status and events after an apply plan was carried out. Pure. */
export function settleApply(
  { nats, settings, observed }: PlanInput,
  plan: ApplyPlan,
  results: readonly WriteResult[],
  claims: readonly ClaimResult[] = [],
): Settled {
  const failed = results.flatMap((r) =>
    r.ok ? [] : [`${describeObject(r.write.object)}: ${r.error}`],
  );
  const written = results.flatMap((r) => (r.ok ? [r] : []));
  const events = writeEvents(results);
  const problems = problemsOf(plan, failed);
  if (problems.length > 0)
    return settleProblems({ nats, settings, observed }, plan, {
      problems,
      events,
      failed,
    });
  const statefulSet = [...written.map((r) => r.object), ...plan.unchanged].find(
    (o) => o.kind === 'StatefulSet',
  ) as ObservedStatefulSet | undefined;
  const outcome: ReconcileOutcome = { kind: 'applied' };
  const { rollout } = plan;
  const growth = settledGrowth(plan, claims);
  const scaling = plan.scaleDown?.progress ?? growth?.progress;
  const status = nextStatus(nats, settings, outcome, {
    now: observed.now,
    statefulSet,
    zones: observed.zones,
    ...(rollout.kind === 'none' ? {} : { rollout: { message: rollout.message } }),
    ...(observed.servers === undefined ? {} : { servers: observed.servers }),
    ...(scaling === undefined ? {} : { scaling }),
    rejoining: plan.rejoin.rejoining,
    ...(plan.stale.length === 0
      ? {}
      : { waiting: { message: staleMessage(plan.stale), blocked: false } }),
  });
  const health = status === undefined ? [] : healthEvents(nats.status, status);
  const grow = growthReport(growth, settings, status);
  return {
    ...withStateEvent(nats, status, outcome, [...events, ...grow.events, ...health]),
    requeueAfterMs: soonest(
      requeueAfter(rollout, settings, observed, status ?? nats.status),
      plan.scaleDown?.requeueAfterMs,
      grow.requeueAfterMs,
      plan.stale.length === 0 ? undefined : STALE_RECHECK_MS,
    ),
    failed,
  };
}

/** What a reconcile that could not write everything reports: the state Error, and why. */
function settleProblems(
  { nats, settings, observed }: PlanInput,
  plan: ApplyPlan,
  found: { problems: string[]; events: NatsEvent[]; failed: string[] },
): Settled {
  const { problems, events, failed } = found;
  const outcome: ReconcileOutcome = { kind: 'failed', message: problems.join(' ') };
  const status = nextStatus(nats, settings, outcome, { now: observed.now });
  // Announced once, when the status first says so, not on every recheck.
  const conflictEvent: NatsEvent[] =
    plan.conflicts.length > 0 && status !== undefined
      ? [{ type: 'Warning', reason: 'NameConflict', message: conflictMessage(plan.conflicts) }]
      : [];
  const refusalEvent: NatsEvent[] =
    plan.refused.length > 0 && status !== undefined
      ? [{ type: 'Warning', reason: 'TakeoverRefused', message: refusalMessage(plan.refused) }]
      : [];
  return {
    ...withStateEvent(nats, status, outcome, [...events, ...conflictEvent, ...refusalEvent]),
    requeueAfterMs:
      plan.conflicts.length > 0 || plan.refused.length > 0 ? settings.recheckMs : undefined,
    failed,
  };
}

/**
 * The Event of a pod restart that went through; recorded at once, before the status, so that a
 * status write lost to a conflict does not lose it (the retry sees the pod already going).
 */
export function restartEvent(plan: ApplyPlan, restart: RestartResult | undefined): NatsEvent[] {
  return plan.rollout.kind === 'restart' && restart?.ok === true
    ? [{ type: 'Normal', reason: 'Restarting', message: plan.rollout.message }]
    : [];
}

/**
 * A rollout is looked at again soon (catching up shows in no watched object); a converged
 * resource's servers at the health poll's interval; nothing else without a watch event.
 */
function requeueAfter(
  rollout: RolloutDecision,
  settings: PlanSettings,
  observed: Observations,
  status: NatsStatus | undefined,
): number | undefined {
  if (rollout.kind !== 'none') return ROLLOUT_POLL_MS;
  if (observed.servers === undefined || observed.servers.size === 0) return undefined;
  const interval = settings.healthPollMs ?? HEALTH_POLL_MS;
  // JetStream not (yet) serving, e.g. a meta leader still being elected: looked at sooner.
  return healthUnsettled(status) ? Math.min(interval, UNSETTLED_POLL_MS) : interval;
}

function soonest(...delays: readonly (number | undefined)[]): number | undefined {
  const given = delays.filter((d): d is number => d !== undefined);
  return given.length === 0 ? undefined : Math.min(...given);
}
