// Servers that come back under the name of a peer the manager removed from JetStream. A
// scale-down removes `<sts>-4` and `<sts>-3` from the meta group; a later scale-up re-creates
// them, and as raft peer ids are hashes of server names they are the same peers. nats-server
// 2.14.9 keeps, on every member of the meta group and only in memory, when it removed each peer
// (raft.go: `removed`, set by removePeer and processPeerState), and its leader adds a peer it
// hears from automatically only if that peer is not on the list or was removed at least
// `peerRemoveTimeout` ago (trackPeer; 5 minutes, not configurable). The one earlier way in is a
// catch-up that the leader completes from its log (runCatchup), which happens only when its log
// holds entries past its last snapshot: hence "re-admitted at once in one run, after five
// minutes in the next". No API adds a peer; a meta leader step-down hands the leadership to a
// server with the same list; restarting every staying server empties the list.
//
// So the manager records when it removed each peer (an annotation on the NATS resource, which a
// manager restart keeps), and while a re-created server is not yet a meta peer the JetStream
// condition says by when nats-server admits it. The StatefulSet grows at once: a server that is
// not a meta peer serves clients (publishes and the JetStream API reach the group through it),
// holds no stream replica and counts towards no quorum (src/controller/README.md). Pure.
import type { ServerHealth } from '../nats/monitoring.ts';
import type { RolloutPod } from './rollout.ts';
import { compareStrings } from '../base/order.ts';

/** The NATS resource's annotation: removed server name -> when the manager removed it (ISO). */
export const REMOVED_PEERS_ANNOTATION = 'nats.operator.kyma-project.io/removed-jetstream-peers';
/** nats-server's peerRemoveTimeout (raft.go, 2.14.9): a removed peer is re-admitted after it. */
export const PEER_REJOIN_MS = 5 * 60_000;
/** Past its re-admission time by this much, a server still outside the group is overdue. */
export const REJOIN_GRACE_MS = 60_000;

/** When the manager removed each server from the JetStream meta group, by server name. */
export type RemovedPeers = ReadonlyMap<string, Date>;

/** The annotation's record; what cannot be read counts as not recorded. */
export function parseRemovedPeers(value: string | undefined): RemovedPeers {
  if (value === undefined || value === '') return new Map();
  let parsed: unknown;
  try {
    parsed = JSON.parse(value);
  } catch {
    return new Map();
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) return new Map();
  const entries = Object.entries(parsed as Record<string, unknown>).flatMap(([name, at]) => {
    const time = typeof at === 'string' ? Date.parse(at) : Number.NaN;
    return Number.isFinite(time) ? [[name, new Date(time)] as const] : [];
  });
  return new Map(entries);
}

/** The annotation's value for `peers` (names sorted); undefined for none. */
export function formatRemovedPeers(peers: RemovedPeers): string | undefined {
  if (peers.size === 0) return undefined;
  const sorted = [...peers.entries()].sort(([a], [b]) => compareStrings(a, b));
  return JSON.stringify(Object.fromEntries(sorted.map(([name, at]) => [name, at.toISOString()])));
}

/** `peers` with `server` removed at `at`. */
export function withRemoval(peers: RemovedPeers, server: string, at: Date): RemovedPeers {
  return new Map([...peers, [server, at]]);
}

/** A re-created server the meta group has not admitted yet. */
export interface Rejoining {
  readonly server: string;
  readonly removedAt: Date;
  /** When nats-server admits it at the latest: its removal plus PEER_REJOIN_MS. */
  readonly rejoinsBy: Date;
  /** Still outside the group REJOIN_GRACE_MS after `rejoinsBy`. */
  readonly overdue: boolean;
}

export interface RejoinInput {
  readonly removed: RemovedPeers;
  readonly pods: readonly RolloutPod[];
  /** Each server's monitoring answers; the meta leader's lists the group. */
  readonly servers: ReadonlyMap<string, ServerHealth> | undefined;
  readonly now: Date;
}

export interface RejoinDecision {
  readonly rejoining: readonly Rejoining[];
  /** The record to store when it changes (an admitted or long-gone server leaves it). */
  readonly record?: RemovedPeers;
}

/** The meta group's members as its leader reports them; undefined when no leader answered. */
export function metaPeersOf(
  servers: ReadonlyMap<string, ServerHealth> | undefined,
): readonly string[] | undefined {
  for (const server of servers?.values() ?? []) {
    if (server.reachable && server.metaLeader === server.pod && server.metaReplicas !== undefined) {
      return [server.pod, ...server.metaReplicas.map((r) => r.name)];
    }
  }
  return undefined;
}

/** Its pod started after the removal: the server runs again under the removed name. */
function recreatedAfter(pod: RolloutPod | undefined, removedAt: Date): boolean {
  if (pod === undefined || pod.terminating || pod.startedAt === undefined) return false;
  const started = Date.parse(pod.startedAt);
  return Number.isFinite(started) && started >= removedAt.getTime();
}

/**
 * Which recorded servers run again without being meta peers, and what stays recorded: a server
 * leaves the record once the meta group lists it again after its pod was re-created, or once
 * the window passed with no pod of its name (it would be admitted when it comes).
 */
export function decideRejoin(input: RejoinInput): RejoinDecision {
  const peers = metaPeersOf(input.servers);
  const now = input.now.getTime();
  const rejoining: Rejoining[] = [];
  const kept = new Map<string, Date>();
  for (const [server, removedAt] of input.removed) {
    const pod = input.pods.find((p) => p.name === server);
    const rejoinsBy = new Date(removedAt.getTime() + PEER_REJOIN_MS);
    const recreated = recreatedAfter(pod, removedAt);
    if (recreated && peers?.includes(server) === true) continue;
    if (pod === undefined && now >= rejoinsBy.getTime()) continue;
    kept.set(server, removedAt);
    if (recreated && peers !== undefined && pod?.ready === true) {
      const overdue = now >= rejoinsBy.getTime() + REJOIN_GRACE_MS;
      rejoining.push({ server, removedAt, rejoinsBy, overdue });
    }
  }
  rejoining.sort((a, b) => compareStrings(a.server, b.server));
  return {
    rejoining,
    ...(kept.size === input.removed.size ? {} : { record: kept }),
  };
}

/** HH:MM:SSZ of `at`. */
export function clockTime(at: Date): string {
  return `${at.toISOString().slice(11, 19)}Z`;
}

/** The status sentence for servers waiting to be re-admitted. */
export function rejoinMessage(rejoining: readonly Rejoining[], metaPeers: number): string {
  const waiting = rejoining.filter((r) => !r.overdue);
  const late = rejoining.filter((r) => r.overdue);
  const parts: string[] = [];
  if (waiting.length > 0) {
    const [first, ...rest] = waiting;
    const times = [
      `${first?.server ?? ''} rejoins JetStream by ${clockTime(first?.rejoinsBy ?? new Date(0))}`,
      ...rest.map((r) => `${r.server} by ${clockTime(r.rejoinsBy)}`),
    ];
    parts.push(
      `${times.join(', ')}: nats-server re-admits a removed peer 5 minutes after its removal.`,
    );
  }
  if (late.length > 0) {
    parts.push(
      `${late.map((r) => `${r.server} (due ${clockTime(r.rejoinsBy)})`).join(', ')} ` +
        `${late.length === 1 ? 'is' : 'are'} still not in the JetStream meta group.`,
    );
  }
  const they = rejoining.length === 1 ? 'it serves' : 'they serve';
  parts.push(
    `Until then ${they} clients but ${rejoining.length === 1 ? 'holds' : 'hold'} no stream ` +
      `replicas; the meta group has ${String(metaPeers)} peers.`,
  );
  return parts.join(' ');
}
