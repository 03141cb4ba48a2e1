// Restarts that keep JetStream's quorum. The StatefulSet updates its pods `OnDelete`, so the
// manager decides when each pod goes: one at a time, and the next only after the restarted
// server is back and current as the servers themselves report it (JetStream enabled, its full
// /healthz ok, a meta leader known, and the meta leader and every stream leader seeing it
// current). Pure: the executor gathers the pods and the servers' monitoring answers, the plan
// calls decideRollout() and carries out what it says.
import type { ReplicaView, ServerHealth } from '../nats/monitoring.ts';

/** The pod label the StatefulSet controller sets to the revision a pod was created from. */
export const REVISION_LABEL = 'controller-revision-hash';
/** How often a rollout in progress is looked at again (nothing watched tells of catching up). */
export const ROLLOUT_POLL_MS = 3_000;
/** A restarted server not current after this long is reported as overdue (still waited for). */
export const CATCH_UP_DEADLINE_MS = 10 * 60_000;

/** One NATS pod, as the rollout needs it. */
export interface RolloutPod {
  readonly name: string;
  readonly uid: string;
  /** The controller-revision-hash label; undefined when missing. */
  readonly revision?: string;
  readonly terminating: boolean;
  /** The pod's Ready condition is True. */
  readonly ready: boolean;
  /** When its containers started (status.startTime), ISO 8601. */
  readonly startedAt?: string;
}

/** The parts of the live StatefulSet the rollout reads. */
export interface RolloutStatefulSet {
  readonly metadata?: { readonly generation?: number };
  readonly spec?: { readonly replicas?: number };
  readonly status?: { readonly observedGeneration?: number; readonly updateRevision?: string };
}

export interface RolloutInput {
  readonly statefulSet: RolloutStatefulSet | undefined;
  readonly pods: readonly RolloutPod[];
  /** Each server's monitoring answers, by pod name. */
  readonly servers: ReadonlyMap<string, ServerHealth>;
  readonly now: Date;
  readonly catchUpDeadlineMs?: number;
  /**
   * Re-created servers of removed peers the meta group has not admitted yet (rejoin.ts): no
   * leader lists them, and they hold no replica and count towards no quorum, so only their own
   * answers are waited for.
   */
  readonly rejoining?: readonly string[];
}

export type RolloutDecision =
  /** Every pod runs the StatefulSet's latest revision (or there is nothing to judge yet). */
  | { readonly kind: 'none' }
  /** A rollout is in progress and nothing may be restarted now. */
  | {
      readonly kind: 'wait';
      /** The pod being rolled, when one is. */
      readonly pod?: string;
      readonly message: string;
      /** The restarted server has not been current for longer than the deadline. */
      readonly overdue: boolean;
    }
  /** Delete this pod (exactly this uid): the StatefulSet re-creates it at the latest revision. */
  | {
      readonly kind: 'restart';
      readonly pod: string;
      readonly uid: string;
      readonly message: string;
    };

function ordinalOf(name: string): number {
  const match = /-(\d+)$/.exec(name);
  return match === null ? -1 : Number(match[1]);
}

/**
 * The leader's own judgement (raft's `current`: it answered recently and has caught up with
 * the commits). A few entries of lag under a steady write load are normal and not asked about.
 */
function replicaCurrent(view: ReplicaView | undefined): boolean {
  return view !== undefined && view.current && !view.offline;
}

/** What the server says of itself: undefined when running, enabled and healthy. */
function ownState(
  pod: RolloutPod,
  own: ServerHealth | undefined,
  clustered: boolean,
): string | undefined {
  if (pod.terminating) return 'it is terminating';
  if (!pod.ready) return 'the pod is not Ready';
  if (own === undefined) return 'its monitoring was not asked';
  if (!own.reachable) return `its monitoring did not answer (${own.error})`;
  if (!own.jetStreamEnabled) return 'JetStream is not enabled on it';
  if (!own.healthy) return `its health check fails: ${own.healthError ?? 'not ok'}`;
  if (clustered && own.metaLeader === undefined) return 'it knows no JetStream meta leader';
  return undefined;
}

/** What the meta leader says of `pod`; undefined when it sees it current (or is it). */
function metaLeaderState(
  pod: RolloutPod,
  leader: string,
  servers: ReadonlyMap<string, ServerHealth>,
): string | undefined {
  if (leader === pod.name) return undefined;
  const metaLeader = servers.get(leader);
  if (metaLeader?.reachable !== true) return `the meta leader ${leader} could not be asked`;
  const view = metaLeader.metaReplicas?.find((r) => r.name === pod.name);
  return replicaCurrent(view) ? undefined : `the meta leader ${leader} does not see it current`;
}

/** What the stream leaders say of `pod`: the first stream not caught up on it. */
function streamsState(
  pod: RolloutPod,
  servers: ReadonlyMap<string, ServerHealth>,
): string | undefined {
  for (const other of servers.values()) {
    if (!other.reachable || other.pod === pod.name) continue;
    for (const stream of other.ledStreams) {
      const view = stream.replicas.find((r) => r.name === pod.name);
      if (view !== undefined && !replicaCurrent(view)) {
        return `stream ${stream.name} (leader ${other.pod}) has not caught up on it (lag ${String(view.lag)})`;
      }
    }
  }
  return undefined;
}

/**
 * Why the server of `pod` is not current, or undefined when it is. Every answer counts: its own
 * (JetStream on, full health ok, a meta leader known) and its leaders' (the meta leader and each
 * stream leader must list it as a current replica).
 */
export function notCurrentBecause(
  pod: RolloutPod,
  servers: ReadonlyMap<string, ServerHealth>,
  clustered: boolean,
): string | undefined {
  const own = servers.get(pod.name);
  const itself = ownState(pod, own, clustered);
  if (itself !== undefined || !clustered || own?.reachable !== true) return itself;
  return metaLeaderState(pod, own.metaLeader ?? '', servers) ?? streamsState(pod, servers);
}

function since(startedAt: string | undefined, now: Date): number | undefined {
  if (startedAt === undefined) return undefined;
  const ms = now.getTime() - Date.parse(startedAt);
  return Number.isFinite(ms) ? Math.max(0, ms) : undefined;
}

function progress(updated: number, total: number): string {
  return `Rolling out one pod at a time (${String(updated)}/${String(total)} pods at the latest revision)`;
}

/** A pod stopping or not yet re-created: the rollout's step is still under way. */
function stepUnderWay(
  pods: readonly RolloutPod[],
  replicas: number,
  done: string,
): RolloutDecision | undefined {
  const terminating = pods.find((p) => p.terminating);
  if (terminating !== undefined) {
    return {
      kind: 'wait',
      pod: terminating.name,
      message: `${done}: waiting for ${terminating.name} to stop.`,
      overdue: false,
    };
  }
  const present = new Set(pods.map((p) => p.name));
  const prefix = pods[0]?.name.replace(/-\d+$/, '') ?? '';
  for (let ordinal = 0; ordinal < replicas; ordinal++) {
    const name = `${prefix}-${String(ordinal)}`;
    if (!present.has(name)) {
      return {
        kind: 'wait',
        pod: name,
        message: `${done}: waiting for ${name} to be re-created.`,
        overdue: false,
      };
    }
  }
  return undefined;
}

/** With every server current: the next outdated pod, a follower before the meta leader. */
function nextRestart(
  outdated: readonly RolloutPod[],
  servers: ReadonlyMap<string, ServerHealth>,
  done: string,
): RolloutDecision {
  // Restarting the meta leader makes the group elect again: it goes last. Higher ordinals
  // first otherwise, as the StatefulSet controller rolls.
  const metaLeaders = new Set(
    [...servers.values()].flatMap((s) => (s.reachable ? [s.metaLeader ?? ''] : [])),
  );
  const next = outdated.find((p) => !metaLeaders.has(p.name)) ?? outdated[0];
  if (next === undefined) return { kind: 'none' };
  return {
    kind: 'restart',
    pod: next.name,
    uid: next.uid,
    message: `${done}: restarting ${next.name}.`,
  };
}

function waitFor(
  notCurrent: readonly { pod: RolloutPod; because: string }[],
  input: RolloutInput,
  done: string,
): RolloutDecision {
  const [first, ...rest] = notCurrent;
  if (first === undefined) return { kind: 'none' };
  const waited = since(first.pod.startedAt, input.now) ?? 0;
  const deadline = input.catchUpDeadlineMs ?? CATCH_UP_DEADLINE_MS;
  const overdue = rest.length === 0 && waited > deadline;
  const others =
    rest.length === 0 ? '' : `; also not current: ${rest.map((n) => n.pod.name).join(', ')}`;
  const late = overdue
    ? ` It has not been current for ${String(Math.round(waited / 1000))} s, past the ` +
      `${String(Math.round(deadline / 60_000))} min deadline; no further pod is restarted until it is.`
    : '';
  return {
    kind: 'wait',
    pod: first.pod.name,
    message: `${done}: waiting for ${first.pod.name} to be current (${first.because}${others}).${late}`,
    overdue,
  };
}

/** The revision pods should run, or undefined while the StatefulSet says nothing certain. */
function latestRevision(sts: RolloutStatefulSet | undefined): string | undefined {
  // Counts and revisions of an older spec say nothing about the latest one.
  const observed = sts?.status?.observedGeneration ?? 0;
  return observed < (sts?.metadata?.generation ?? 0) ? undefined : sts?.status?.updateRevision;
}

/** What the rollout should do next. Pure. */
export function decideRollout(input: RolloutInput): RolloutDecision {
  const revision = latestRevision(input.statefulSet);
  if (revision === undefined) return { kind: 'none' };
  const replicas = input.statefulSet?.spec?.replicas ?? 1;
  const pods = [...input.pods].sort((a, b) => ordinalOf(b.name) - ordinalOf(a.name));
  const outdated = pods.filter((p) => p.revision !== revision);
  if (outdated.length === 0) return { kind: 'none' };
  const done = progress(pods.length - outdated.length, replicas);
  const underWay = stepUnderWay(pods, replicas, done);
  if (underWay !== undefined) return underWay;
  const rejoining = new Set(input.rejoining);
  const notCurrent = pods.flatMap((pod) => {
    const because = rejoining.has(pod.name)
      ? ownState(pod, input.servers.get(pod.name), replicas > 1)
      : notCurrentBecause(pod, input.servers, replicas > 1);
    return because === undefined ? [] : [{ pod, because }];
  });
  const [only, second] = notCurrent;
  if (only === undefined) return nextRestart(outdated, input.servers, done);
  if (second === undefined && only.pod.revision !== revision) {
    // The only server that is not current runs the old revision: restarting it takes nothing
    // more out of service, and may be what it needs (a spec fix for a crashing pod).
    return {
      kind: 'restart',
      pod: only.pod.name,
      uid: only.pod.uid,
      message: `${done}: restarting ${only.pod.name}, which is not current anyway (${only.because}).`,
    };
  }
  return waitFor(notCurrent, input, done);
}
