// What the manager asks a NATS cluster through its system account (user `admin` in `$SYS`, the
// password in the resource's Secret) to shrink it safely: each server's JetStream view and
// health, every stream's replica count, and the removal of one server from the JetStream meta
// group. Every call has one budget for the connect and its requests, and closes what it opened.
import type { NatsConnection } from '@nats-io/transport-node';
import { SYSTEM_ACCOUNT_USER } from '../render/nats-conf.ts';
import { closeQuietly, connectWithin, deadlineIn, within } from './connection.ts';
import { describeError } from './customer-data.ts';

export const DEFAULT_PEERS_TIMEOUT_MS = 5_000;
/** How long a ping collects answers after the last one when not every server answered. */
const PING_STALL_MS = 300;

export interface SystemAccess {
  readonly url: string;
  readonly password: string;
  readonly timeoutMs?: number;
}

export interface MetaPeer {
  readonly name: string;
  /** Caught up with the meta leader's log (the leader itself is current). */
  readonly current: boolean;
  readonly offline: boolean;
}

export interface StreamReplicas {
  readonly account: string;
  readonly name: string;
  readonly replicas: number;
  /** The servers that reported a replica of it. */
  readonly hosts: readonly string[];
}

/** One answer of the cluster: every server that answered, as the meta leader sees the group. */
export interface ClusterView {
  /** Servers that answered, by server name (the pod name). */
  readonly servers: readonly string[];
  /** Servers with JetStream enabled (a removed peer disables it). */
  readonly jetStream: readonly string[];
  /** Servers whose full health check passes: every stream and consumer on them current. */
  readonly healthy: readonly string[];
  readonly metaLeader?: string;
  /** The meta group's members as its leader reports them, the leader included; empty without one. */
  readonly metaPeers: readonly MetaPeer[];
  /** Every stream of every account, with its configured replica count. */
  readonly streams: readonly StreamReplicas[];
}

export type Asked<T> =
  { readonly ok: true; readonly value: T } | { readonly ok: false; readonly error: string };

interface ServerReply<T> {
  readonly server?: { readonly name?: string };
  readonly data?: T;
  readonly error?: { readonly description?: string };
}

interface Jsz {
  readonly disabled?: boolean;
  readonly meta_cluster?: {
    readonly leader?: string;
    readonly replicas?: readonly { name?: string; current?: boolean; offline?: boolean }[];
  };
  readonly account_details?: readonly {
    readonly name?: string;
    readonly stream_detail?: readonly {
      readonly name?: string;
      readonly config?: { readonly num_replicas?: number };
    }[];
  }[];
}

interface Healthz {
  readonly status?: string;
}

type Named<T> = readonly (readonly [string, ServerReply<T>])[];

function named<T>(replies: readonly ServerReply<T>[]): Named<T> {
  return replies.flatMap((r) =>
    r.server?.name === undefined ? [] : [[r.server.name, r] as const],
  );
}

/** The meta group as its leader reports it (only the leader lists the other members). */
function metaOf(byServer: Named<Jsz>): { leader?: string; peers: MetaPeer[] } {
  const leader = byServer
    .map(([, r]) => r.data?.meta_cluster?.leader)
    .find((name) => name !== undefined && name !== '');
  const reply = byServer.find(([name]) => name === leader)?.[1];
  if (leader === undefined || reply === undefined) return { peers: [] };
  const others = (reply.data?.meta_cluster?.replicas ?? []).map((peer) => ({
    name: peer.name ?? '',
    current: peer.current === true,
    offline: peer.offline === true,
  }));
  return { leader, peers: [{ name: leader, current: true, offline: false }, ...others] };
}

/** Every stream of every account; each server reports the streams it holds a replica of. */
function streamsOf(byServer: Named<Jsz>): StreamReplicas[] {
  const streams = new Map<string, StreamReplicas & { hosts: string[] }>();
  for (const [server, reply] of byServer) {
    for (const account of reply.data?.account_details ?? []) {
      const accountName = account.name ?? '';
      for (const stream of account.stream_detail ?? []) {
        const name = stream.name ?? '';
        const key = `${accountName}/${name}`;
        const entry = streams.get(key) ?? {
          account: accountName,
          name,
          replicas: stream.config?.num_replicas ?? 1,
          hosts: [],
        };
        entry.hosts.push(server);
        streams.set(key, entry);
      }
    }
  }
  return [...streams.entries()]
    .toSorted(([a], [b]) => (a < b ? -1 : 1))
    .map(([, s]) => ({ ...s, hosts: s.hosts.toSorted() }));
}

/** The cluster view from the servers' JSZ and HEALTHZ answers. Pure. */
export function clusterViewOf(
  jsz: readonly ServerReply<Jsz>[],
  healthz: readonly ServerReply<Healthz>[],
): ClusterView {
  const byServer = named(jsz);
  const meta = metaOf(byServer);
  return {
    servers: byServer.map(([name]) => name).toSorted(),
    jetStream: byServer
      .filter(([, r]) => r.error === undefined && r.data !== undefined && r.data.disabled !== true)
      .map(([name]) => name)
      .toSorted(),
    healthy: named(healthz)
      .filter(([, r]) => r.error === undefined && r.data?.status === 'ok')
      .map(([name]) => name)
      .toSorted(),
    ...(meta.leader === undefined ? {} : { metaLeader: meta.leader }),
    metaPeers: meta.peers,
    streams: streamsOf(byServer),
  };
}

async function asSystem<T>(
  access: SystemAccess,
  work: (nc: NatsConnection, remaining: () => number) => Promise<T>,
): Promise<Asked<T>> {
  const budget = access.timeoutMs ?? DEFAULT_PEERS_TIMEOUT_MS;
  const { remaining } = deadlineIn(budget);
  try {
    const connected = await connectWithin({
      url: access.url,
      timeoutMs: budget,
      user: SYSTEM_ACCOUNT_USER,
      pass: access.password,
    });
    if (!connected.done)
      return { ok: false, error: `no NATS handshake within ${String(budget)} ms` };
    const nc = connected.value;
    try {
      const answered = await within(work(nc, remaining), remaining());
      return answered.done
        ? { ok: true, value: answered.value }
        : { ok: false, error: `NATS did not answer within ${String(budget)} ms` };
    } finally {
      await closeQuietly(nc);
    }
  } catch (error) {
    return { ok: false, error: describeError(error) };
  }
}

/** Every server's answer to a `$SYS.REQ.SERVER.PING.<what>`, collected until `expected` came. */
async function ping<T>(
  nc: NatsConnection,
  what: string,
  body: unknown,
  { expected, maxWait }: { expected: number; maxWait: number },
): Promise<ServerReply<T>[]> {
  const replies = await nc.requestMany(`$SYS.REQ.SERVER.PING.${what}`, JSON.stringify(body), {
    strategy: 'stall',
    stall: PING_STALL_MS,
    maxWait,
    maxMessages: expected,
  });
  const all: ServerReply<T>[] = [];
  for await (const reply of replies) all.push(reply.json<ServerReply<T>>());
  return all;
}

/**
 * The cluster as its servers see it. `expected` is how many servers may answer (the
 * StatefulSet's replicas): collecting stops once that many did, or shortly after the last one.
 */
export async function observeCluster(
  access: SystemAccess,
  expected: number,
): Promise<Asked<ClusterView>> {
  return asSystem(access, async (nc, remaining) => {
    const collect = { expected, maxWait: remaining() };
    const jsz = ping<Jsz>(nc, 'JSZ', { accounts: true, streams: true, config: true }, collect);
    const healthz = ping<Healthz>(nc, 'HEALTHZ', {}, collect);
    return clusterViewOf(await jsz, await healthz);
  });
}

interface RemoveReply {
  readonly success?: boolean;
  readonly error?: { readonly code?: number; readonly description?: string };
}

/**
 * Removes server `name` from the JetStream meta group (`$JS.API.SERVER.REMOVE`, answered by the
 * meta leader only): the server disables JetStream and its stream replicas are placed elsewhere.
 */
export async function removePeer(access: SystemAccess, name: string): Promise<Asked<true>> {
  const asked = await asSystem(access, async (nc, remaining) => {
    const reply = await nc.request('$JS.API.SERVER.REMOVE', JSON.stringify({ peer: name }), {
      timeout: remaining(),
    });
    return reply.json<RemoveReply>();
  });
  if (!asked.ok) return asked;
  if (asked.value.success === true) return { ok: true, value: true };
  const error = asked.value.error;
  return {
    ok: false,
    error: `removing ${name}: ${error?.description ?? 'no success in the answer'}${
      error?.code === undefined ? '' : ` (${String(error.code)})`
    }`,
  };
}

/**
 * Asks the JetStream meta leader to hand its leadership over (`$JS.API.META.LEADER.STEPDOWN`),
 * to `preferred` when given: a server about to be removed should not be the one removing itself.
 */
export async function stepDownMetaLeader(
  access: SystemAccess,
  preferred?: string,
): Promise<Asked<true>> {
  const body = preferred === undefined ? {} : { placement: { preferred } };
  const asked = await asSystem(access, async (nc, remaining) => {
    const reply = await nc.request('$JS.API.META.LEADER.STEPDOWN', JSON.stringify(body), {
      timeout: remaining(),
    });
    return reply.json<RemoveReply>();
  });
  if (!asked.ok) return asked;
  if (asked.value.success === true) return { ok: true, value: true };
  return {
    ok: false,
    error: `meta leader step-down: ${asked.value.error?.description ?? 'no success in the answer'}`,
  };
}
