// The status the operator reports for a NATS resource, computed from what one reconcile did and
// what it observed. Pure: the manager gathers the inputs and decides whether to write.
import {
  ConditionReason,
  ConditionType,
  NatsState,
  type NatsCondition,
  type NatsStatus,
} from '../api/nats.ts';
import { kubeTime } from '../base/object.ts';
import type { ServerHealth } from '../nats/monitoring.ts';
import { clientUrl, objectNames } from '../render/names.ts';
import {
  healthWarns,
  JETSTREAM_CONDITION,
  jetStreamConditions,
  STORAGE_CONDITION,
} from './jetstream-health.ts';
import type { Rejoining } from './rejoin.ts';
import { compareStrings } from '../base/order.ts';

/** Below this size NATS does not run as a cluster, so zone spreading does not apply. */
export const MIN_CLUSTER_SIZE = 3;

/** What the reconcile did with the resource. */
export type ReconcileOutcome =
  | { readonly kind: 'applied' }
  | { readonly kind: 'forbidden'; readonly message: string }
  | { readonly kind: 'failed'; readonly message: string }
  | { readonly kind: 'deleting' }
  | { readonly kind: 'deletionBlocked'; readonly message: string };

/** The parts of a StatefulSet the status depends on; a V1StatefulSet fits. */
export interface ObservedStatefulSet {
  readonly metadata?: { readonly generation?: number };
  readonly spec?: {
    readonly replicas?: number;
    readonly updateStrategy?: { readonly type?: string };
  };
  readonly status?: {
    readonly observedGeneration?: number;
    readonly replicas?: number;
    readonly readyReplicas?: number;
    readonly currentReplicas?: number;
    readonly updatedReplicas?: number;
    readonly availableReplicas?: number;
    readonly currentRevision?: string;
    readonly updateRevision?: string;
  };
}

export interface StatusInput {
  readonly nats: {
    readonly name: string;
    readonly namespace: string;
    readonly generation?: number;
    /** metadata.deletionTimestamp is set. */
    readonly deleting: boolean;
  };
  readonly previous: NatsStatus | undefined;
  readonly now: Date;
  readonly clusterDomain: string;
  readonly outcome: ReconcileOutcome;
  readonly statefulSet: ObservedStatefulSet | undefined;
  /** Zone of the node of each NATS pod; undefined when it could not be determined. */
  readonly zones: readonly string[] | undefined;
  /** spec.cluster.size after defaulting. */
  readonly size: number;
  /** A rollout in progress (rollout.ts): what it does or waits for. */
  readonly rollout?: { readonly message: string };
  /** Every server's monitoring answers, by pod name; absent when not asked. */
  readonly servers?: ReadonlyMap<string, ServerHealth>;
  /** A scale-down under way (scale-down.ts): what it does or waits for. */
  readonly scaling?: { readonly message: string; readonly blocked: boolean };
  /** What must go before the children are written (an earlier resource's children). */
  readonly waiting?: { readonly message: string; readonly blocked: boolean };
  /** Re-created servers of removed peers not yet re-admitted to the meta group (rejoin.ts). */
  readonly rejoining?: readonly Rejoining[];
}

type ConditionStatus = NatsCondition['status'];

interface ConditionDraft {
  /** The Go manager's types and reasons (ConditionType, ConditionReason), and ours beside them. */
  readonly type: string;
  readonly status: ConditionStatus;
  readonly reason: string;
  readonly message: string;
}

/** Whether the StatefulSet has fully rolled out its current spec and every pod is ready. */
export function statefulSetReady(sts: ObservedStatefulSet): boolean {
  const status = sts.status;
  if (status === undefined) return false;
  // A controller that has not seen the latest spec reports counts for the old one.
  const generation = sts.metadata?.generation ?? 0;
  if ((status.observedGeneration ?? 0) < generation) return false;
  const desired = sts.spec?.replicas ?? 1;
  const counts = [status.replicas, status.readyReplicas, status.updatedReplicas];
  if (counts.some((count) => (count ?? 0) !== desired)) return false;
  // OnDelete never moves currentRevision forward (the StatefulSet controller does that only
  // for RollingUpdate): there every pod updated and ready is the whole rollout.
  if (sts.spec?.updateStrategy?.type === 'OnDelete') return true;
  const { currentRevision, updateRevision } = status;
  if (currentRevision !== undefined && updateRevision !== undefined) {
    return currentRevision === updateRevision;
  }
  return true;
}

function rolloutMessage(sts: ObservedStatefulSet): string {
  const desired = sts.spec?.replicas ?? 1;
  const status = sts.status;
  if ((status?.observedGeneration ?? 0) < (sts.metadata?.generation ?? 0)) {
    return 'Waiting for the StatefulSet controller to observe the latest spec.';
  }
  return (
    `Waiting for the StatefulSet rollout: ${String(status?.readyReplicas ?? 0)}/` +
    `${String(desired)} ready, ${String(status?.updatedReplicas ?? 0)}/${String(desired)} updated.`
  );
}

function distinctZones(zones: readonly string[]): number {
  return new Set(zones).size;
}

/** The AvailabilityZones condition, and whether too few zones should turn the state to Warning. */
function zonesCondition(
  size: number,
  zones: readonly string[] | undefined,
  ready: boolean,
): { condition: ConditionDraft; tooFewZones: boolean } {
  const type = ConditionType.AvailabilityZones;
  if (size < MIN_CLUSTER_SIZE) {
    return {
      condition: {
        type,
        status: 'False',
        reason: ConditionReason.NotConfigured,
        message: `NATS is not configured to run in cluster mode (spec.cluster.size < ${String(MIN_CLUSTER_SIZE)}).`,
      },
      tooFewZones: false,
    };
  }
  if (!ready) {
    return {
      condition: {
        type,
        status: 'False',
        reason: ConditionReason.Pending,
        message: 'Waiting for the StatefulSet to get ready.',
      },
      tooFewZones: false,
    };
  }
  if (zones === undefined) {
    return {
      condition: {
        type,
        status: 'False',
        reason: ConditionReason.Unknown,
        message: 'The availability zones of the NATS pods could not be determined.',
      },
      tooFewZones: false,
    };
  }
  const used = distinctZones(zones);
  if (used < size) {
    return {
      condition: {
        type,
        status: 'False',
        reason: ConditionReason.NotConfigured,
        message: `NATS pods run in ${String(used)} availability zone(s), fewer than the ${String(size)} pods.`,
      },
      tooFewZones: true,
    };
  }
  return {
    condition: {
      type,
      status: 'True',
      reason: ConditionReason.Deployed,
      message: 'NATS is deployed in different availability zones.',
    },
    tooFewZones: false,
  };
}

interface Computed {
  readonly state: NatsState;
  readonly drafts: readonly ConditionDraft[];
  readonly url?: string;
}

function computeApplied(input: StatusInput): Computed {
  const sts = input.statefulSet;
  if (sts === undefined) {
    return {
      state: NatsState.Processing,
      drafts: [
        {
          type: ConditionType.StatefulSet,
          status: 'False',
          reason: ConditionReason.Pending,
          message: 'Waiting for the StatefulSet to be created.',
        },
        {
          type: ConditionType.Available,
          status: 'False',
          reason: ConditionReason.Deploying,
          message: 'NATS is being deployed.',
        },
        zonesCondition(input.size, input.zones, false).condition,
      ],
    };
  }
  if (!statefulSetReady(sts) || input.rollout !== undefined) {
    return {
      state: NatsState.Processing,
      drafts: [
        {
          type: ConditionType.StatefulSet,
          status: 'False',
          // The Go manager's reason while the StatefulSet rolls out; the message says how far
          // and, while the manager rolls the pods, which one.
          reason: ConditionReason.Pending,
          message: input.rollout?.message ?? rolloutMessage(sts),
        },
        {
          type: ConditionType.Available,
          status: 'False',
          reason: ConditionReason.Deploying,
          message: 'NATS is being deployed.',
        },
        zonesCondition(input.size, input.zones, false).condition,
        ...keptHealth(input.previous),
      ],
    };
  }
  const zones = zonesCondition(input.size, input.zones, true);
  const health =
    input.servers === undefined || input.servers.size === 0
      ? keptHealth(input.previous)
      : jetStreamConditions(input.servers, input.size > 1, input.previous, input.rejoining);
  return {
    state: zones.tooFewZones || healthWarns(health) ? NatsState.Warning : NatsState.Ready,
    url: clientUrl(objectNames(input.nats.name), input.nats.namespace, input.clusterDomain),
    drafts: [
      {
        type: ConditionType.StatefulSet,
        status: 'True',
        reason: ConditionReason.StatefulSetAvailable,
        message: 'StatefulSet is ready.',
      },
      {
        type: ConditionType.Available,
        status: 'True',
        reason: ConditionReason.Deployed,
        message: 'NATS is deployed.',
      },
      zones.condition,
      ...health,
    ],
  };
}

/**
 * The JetStream conditions as last reported: while pods roll or start, servers are expected to
 * be down one at a time, which is no news about JetStream's health.
 */
function keptHealth(previous: NatsStatus | undefined): ConditionDraft[] {
  return (previous?.conditions ?? [])
    .filter((c) => c.type === JETSTREAM_CONDITION || c.type === STORAGE_CONDITION)
    .map((c) => ({ type: c.type, status: c.status, reason: c.reason, message: c.message }));
}

/**
 * During deletion the last observed StatefulSet/Available/zone conditions stay as they were;
 * only the Deleted condition and the state speak of the deletion.
 */
function keptDuringDeletion(previous: NatsStatus | undefined): readonly ConditionDraft[] {
  return (previous?.conditions ?? [])
    .filter((c) => c.type !== ConditionType.Deleted)
    .map((c) => ({
      type: c.type as ConditionType,
      status: c.status,
      reason: c.reason as ConditionReason,
      message: c.message,
    }));
}

/**
 * A step under way (a scale-down, an earlier resource's children going) says so in the
 * StatefulSet condition; blocked, the state is Warning.
 */
function withScaling(computed: Computed, scaling: StatusInput['scaling']): Computed {
  if (scaling === undefined) return computed;
  return {
    ...computed,
    state: scaling.blocked ? NatsState.Warning : NatsState.Processing,
    drafts: computed.drafts.map((draft) =>
      draft.type === ConditionType.StatefulSet
        ? {
            ...draft,
            status: 'False',
            reason: ConditionReason.Processing,
            message: scaling.message,
          }
        : draft,
    ),
  };
}

function compute(input: StatusInput): Computed {
  const { outcome } = input;
  switch (outcome.kind) {
    case 'applied':
      // A resource already marked for deletion reports that, whatever the last apply did.
      if (input.nats.deleting) {
        return { state: NatsState.Deleting, drafts: keptDuringDeletion(input.previous) };
      }
      return withScaling(computeApplied(input), input.scaling ?? input.waiting);
    case 'forbidden':
      return {
        state: NatsState.Error,
        drafts: [
          {
            type: ConditionType.StatefulSet,
            status: 'False',
            reason: ConditionReason.Forbidden,
            message: outcome.message,
          },
          {
            type: ConditionType.Available,
            status: 'False',
            reason: ConditionReason.Forbidden,
            message: outcome.message,
          },
        ],
      };
    case 'failed':
      return {
        state: NatsState.Error,
        drafts: [
          {
            type: ConditionType.StatefulSet,
            status: 'False',
            reason: ConditionReason.FailedToSyncResources,
            message: outcome.message,
          },
          {
            type: ConditionType.Available,
            status: 'False',
            reason: ConditionReason.FailedProcessing,
            message: outcome.message,
          },
        ],
      };
    case 'deleting':
      return { state: NatsState.Deleting, drafts: keptDuringDeletion(input.previous) };
    case 'deletionBlocked':
      return {
        state: NatsState.Warning,
        drafts: [
          ...keptDuringDeletion(input.previous),
          {
            type: ConditionType.Deleted,
            status: 'False',
            reason: ConditionReason.DeletionError,
            message: outcome.message,
          },
        ],
      };
  }
}

function toCondition(
  draft: ConditionDraft,
  previous: NatsStatus | undefined,
  now: string,
  generation: number | undefined,
): NatsCondition {
  const before = previous?.conditions?.find((c) => c.type === draft.type);
  const lastTransitionTime = before?.status === draft.status ? before.lastTransitionTime : now;
  return {
    type: draft.type,
    status: draft.status,
    reason: draft.reason,
    message: draft.message,
    lastTransitionTime,
    ...(generation === undefined ? {} : { observedGeneration: generation }),
  };
}

export function computeNatsStatus(input: StatusInput): NatsStatus {
  const { state, drafts, url } = compute(input);
  const now = kubeTime(input.now);
  const generation = input.nats.generation;
  const deletion = state === NatsState.Deleting || input.outcome.kind === 'deletionBlocked';
  // While deleting, the last URL and zone count still describe the cluster being torn down.
  const keptUrl = deletion ? input.previous?.url : url;
  const zonesUsed = deletion
    ? input.previous?.availabilityZonesUsed
    : input.zones === undefined
      ? undefined
      : distinctZones(input.zones);
  return {
    state,
    ...(keptUrl === undefined ? {} : { url: keptUrl }),
    ...(zonesUsed === undefined ? {} : { availabilityZonesUsed: zonesUsed }),
    ...(generation === undefined ? {} : { observedGeneration: generation }),
    conditions: drafts.map((d) => toCondition(d, input.previous, now, generation)),
  };
}

/** JSON with object keys sorted and conditions ordered by type, without lastTransitionTime. */
function canonical(status: NatsStatus): string {
  const conditions = (status.conditions ?? [])
    // JSON.stringify leaves out undefined properties.
    .map((c) => ({ ...c, lastTransitionTime: undefined }))
    .sort((a, b) => compareStrings(a.type, b.type));
  const comparable = { ...status, conditions };
  return JSON.stringify(comparable, (_key, value: unknown) =>
    value !== null && typeof value === 'object' && !Array.isArray(value)
      ? Object.fromEntries(Object.entries(value).sort(([a], [b]) => compareStrings(a, b)))
      : value,
  );
}

/**
 * Whether writing `next` would change anything but lastTransitionTime, which moves only together
 * with a status and so is no reason on its own to write.
 */
export function statusChanged(previous: NatsStatus | undefined, next: NatsStatus): boolean {
  if (previous === undefined) return true;
  return canonical(previous) !== canonical(next);
}
