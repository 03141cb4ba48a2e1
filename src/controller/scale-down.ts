// Lowering spec.cluster.size, decided one step at a time as a pure function. The departing
// servers (the highest ordinals) leave the JetStream meta group one at a time, each only while
// every staying server is in the group, current and healthy (so the meta group and every R3
// stream keep their quorum); only a server that left is cut from the StatefulSet; and a removed
// ordinal's volume claim is deleted once its pod is gone, so a later scale-up starts that server
// on an empty store. (nats-server 2.14 re-admits a server that comes back under a removed peer's
// name, with its old store if the claim was kept: test/integration/nats-peer-removal.test.ts;
// within 5 minutes of the removal only by chance: rejoin.ts.)
import type { ObjectRef } from '../base/object.ts';
import type { Asked, ClusterView } from '../nats/peers.ts';

/** How soon a step in progress is looked at again: nothing watches NATS. */
export const SCALE_DOWN_RECHECK_MS = 2_000;
/** The start of every progress message; a status that carries it means a scale-down is not done. */
export const SCALE_DOWN_PREFIX = 'Scaling down';

export interface ScaleDownObservation {
  /** The StatefulSet's name; pods and servers are `<name>-<ordinal>`. */
  readonly statefulSet: string;
  /** The live StatefulSet's spec.replicas. */
  readonly replicas: number;
  /** The ordinals of the StatefulSet's pods that exist (terminating ones too). */
  readonly podOrdinals: readonly number[];
  /** The ordinals of the pods that are Ready (their server ran and answered its probe). */
  readonly readyOrdinals: readonly number[];
  /** The claims of the StatefulSet's volume template, with their ordinals. */
  readonly claims: readonly { readonly ordinal: number; readonly ref: ObjectRef }[];
  /** The cluster as NATS reports it; undefined when it was not asked (nothing to remove). */
  readonly cluster: Asked<ClusterView> | undefined;
}

export interface ScaleDownStep {
  /** What the StatefulSet's replicas must be this reconcile. */
  readonly replicas: number;
  /** The server to remove from the JetStream meta group now. */
  readonly removePeer?: string;
  /** Move the meta leadership to this server first: the leaving server leads the group. */
  readonly stepDownTo?: string;
  /** Claims of removed ordinals whose pods are gone. */
  readonly deleteClaims: readonly ObjectRef[];
  /** For the status: what the scale-down does or waits for; undefined when none is under way. */
  readonly progress?: { readonly message: string; readonly blocked: boolean };
  readonly requeueAfterMs?: number;
}

/** The server name of an ordinal: the pod name. */
export function serverName(statefulSet: string, ordinal: number): string {
  return `${statefulSet}-${String(ordinal)}`;
}

/** The ordinal of a pod or claim name ending in `<statefulSet>-<n>`; undefined otherwise. */
export function ordinalOf(statefulSet: string, name: string): number | undefined {
  const match = /-(\d+)$/.exec(name);
  if (match?.[1] === undefined || !name.endsWith(`${statefulSet}-${match[1]}`)) return undefined;
  return Number(match[1]);
}

function plural(count: number, word: string): string {
  return `${String(count)} ${word}${count === 1 ? '' : 's'}`;
}

/** Why no stream may lose the departing servers, or undefined when none stands in the way. */
export function streamsBlocking(
  view: ClusterView,
  size: number,
  departing: readonly string[],
): string | undefined {
  const tooMany = view.streams
    .filter((s) => s.replicas > size)
    .map((s) => `${s.name} (R${String(s.replicas)})`);
  if (tooMany.length > 0) {
    return (
      `streams with more replicas than the ${plural(size, 'server')} to keep: ` +
      `${tooMany.join(', ')}; lower their replicas first`
    );
  }
  // A single replica on a leaving server has nowhere to copy its messages from once it left.
  const alone = view.streams
    .filter(
      (s) => s.replicas === 1 && s.hosts.length > 0 && s.hosts.every((h) => departing.includes(h)),
    )
    .map((s) => `${s.name} (R1 on ${s.hosts.join(', ')})`);
  if (alone.length > 0) {
    return `streams whose only replica is on a leaving server: ${alone.join(', ')}; raise their replicas or move them first`;
  }
  return undefined;
}

/** Why `server` may not leave the meta group now, or undefined when it may. */
function quorumBlocking(
  view: ClusterView,
  server: string,
  staying: readonly string[],
): string | undefined {
  if (view.metaLeader === undefined) return 'no JetStream meta leader';
  const peers = view.metaPeers.filter((p) => p.name !== server);
  const lagging = peers.filter((p) => p.offline || !p.current).map((p) => p.name);
  if (lagging.length > 0) return `meta peers not current: ${lagging.join(', ')}`;
  const missing = staying.filter((s) => !peers.some((p) => p.name === s));
  if (missing.length > 0) return `not in the meta group yet: ${missing.join(', ')}`;
  const unhealthy = staying.filter((s) => !view.healthy.includes(s));
  if (unhealthy.length > 0) return `not healthy (streams catching up): ${unhealthy.join(', ')}`;
  return undefined;
}

/** Claims of ordinals at or beyond `from` whose pods are gone; and whether some still wait for a pod. */
function removedClaims(
  observed: ScaleDownObservation,
  from: number,
): { ready: ObjectRef[]; waiting: number } {
  const beyond = observed.claims.filter((c) => c.ordinal >= from);
  const ready = beyond.filter((c) => !observed.podOrdinals.includes(c.ordinal)).map((c) => c.ref);
  return { ready, waiting: beyond.length - ready.length };
}

/** At or above the size: replicas are the size; claims a finished scale-down left behind go. */
function atSize(size: number, observed: ScaleDownObservation): ScaleDownStep {
  // Claims at or beyond both the old and the new size belong to no server that may run.
  const claims = removedClaims(observed, Math.max(observed.replicas, size));
  const left = claims.ready.length + claims.waiting;
  if (left === 0) return { replicas: size, deleteClaims: [] };
  return {
    replicas: size,
    deleteClaims: claims.ready,
    progress: {
      message: `${SCALE_DOWN_PREFIX}: deleting the volume claims of removed servers (${plural(left, 'claim')} left).`,
      blocked: false,
    },
    requeueAfterMs: SCALE_DOWN_RECHECK_MS,
  };
}

/** One shrinking step: what it holds, removes or cuts, with the status head it reports under. */
interface Shrinking {
  readonly observed: ScaleDownObservation;
  readonly size: number;
  readonly ordinal: number;
  readonly server: string;
  readonly head: string;
  readonly claims: readonly ObjectRef[];
}

function hold(
  step: Shrinking,
  message: string,
  more: { blocked?: boolean; removePeer?: string; stepDownTo?: string } = {},
): ScaleDownStep {
  const { blocked = false, ...actions } = more;
  return {
    replicas: step.ordinal + 1,
    deleteClaims: step.claims,
    ...actions,
    progress: { message: `${step.head}: ${message}.`, blocked },
    requeueAfterMs: SCALE_DOWN_RECHECK_MS,
  };
}

function cut(step: Shrinking, message: string): ScaleDownStep {
  return {
    replicas: step.ordinal,
    deleteClaims: step.claims,
    progress: { message: `${step.head}: ${message}.`, blocked: false },
    requeueAfterMs: SCALE_DOWN_RECHECK_MS,
  };
}

/** The step once NATS answered. */
function withView(step: Shrinking, view: ClusterView): ScaleDownStep {
  const { observed, size, server } = step;
  const departing = Array.from({ length: observed.replicas - size }, (_, i) =>
    serverName(observed.statefulSet, size + i),
  );
  const staying = Array.from({ length: size }, (_, i) => serverName(observed.statefulSet, i));
  const streams = streamsBlocking(view, size, departing);
  if (streams !== undefined)
    return hold(step, `not removing ${server}: ${streams}`, { blocked: true });
  const member = view.metaPeers.some((p) => p.name === server) || view.jetStream.includes(server);
  // Everything but the leaving server must stand; staying alone would hide a removal in flight.
  // Except a departing server that never joined: no peer, no replica, nothing to keep (a new
  // server of a scale-up that was not admitted would otherwise hold the scale-down forever).
  const joined = (s: string): boolean =>
    view.metaPeers.some((p) => p.name === s) || view.streams.some((st) => st.hosts.includes(s));
  const others = [...staying, ...departing.filter((d) => d !== server && joined(d))];
  const blocking = quorumBlocking(view, server, others);
  if (!member) {
    // Out of the group: its replicas were placed elsewhere; cut it once they caught up.
    return blocking === undefined
      ? cut(step, `${server} left JetStream; stopping it`)
      : hold(step, `${server} left JetStream; waiting before stopping it: ${blocking}`);
  }
  if (blocking !== undefined)
    return hold(step, `waiting to remove ${server} from JetStream: ${blocking}`);
  // A leader removing itself leaves the group without one until the others notice.
  if (view.metaLeader === server) {
    return hold(step, `moving the JetStream meta leadership off ${server}`, {
      stepDownTo: staying[0] ?? '',
    });
  }
  return hold(step, `removing ${server} from JetStream`, { removePeer: server });
}

/**
 * The next step towards `size` servers. Pure; called every reconcile with what the executor
 * observed. Growing, or at size, it leaves replicas at `size` and only clears claims a finished
 * scale-down left behind.
 */
export function decideScaleDown(size: number, observed: ScaleDownObservation): ScaleDownStep {
  const current = observed.replicas;
  if (current <= size) return atSize(size, observed);
  const ordinal = current - 1;
  const server = serverName(observed.statefulSet, ordinal);
  const step: Shrinking = {
    observed,
    size,
    ordinal,
    server,
    head: `${SCALE_DOWN_PREFIX} from ${String(current)} to ${String(size)} servers (${plural(current - size, 'server')} to remove)`,
    claims: removedClaims(observed, current).ready,
  };
  const asked = observed.cluster;
  if (asked?.ok === true) return withView(step, asked.value);
  // Its server never got to serve (a pod Pending or failing), so NATS cannot be holding data
  // only there that a removal would save: with NATS out of reach it need not wait.
  if (!observed.readyOrdinals.includes(ordinal)) {
    return cut(step, `NATS cannot be asked and ${server} is not ready; stopping it`);
  }
  const why = asked === undefined ? 'not asked' : asked.error;
  return hold(step, `waiting to ask NATS about ${server}: ${why}`, { blocked: true });
}
