// A 3 -> 5 soon after a 5 -> 3, against five real nats-server processes from the rendered
// size-5 config: the two removed servers come back under their names on wiped stores (their
// claims deleted). nats-server 2.14.9 keeps a removed peer out of the meta group for 5 minutes
// after its removal (raft.go trackPeer, peerRemoveTimeout), except when its leader happens to
// finish a catch-up of it from its log; the scale-up here waits for the meta log to be compacted
// (a minute), as on a cluster that had no JetStream change since the scale-down, so the window
// applies. Meanwhile: the decision (src/controller/rejoin.ts) and the JetStream condition say by
// when each server rejoins, the servers serve clients, rolling restarts do not wait for them.
// What happens after the window (both admitted, the record empty, an R5 stream on all five) is
// required on the node, in test/node/scale-down-on-node.test.ts: waiting it out here as well
// would add five minutes to every run.
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { setTimeout as sleep } from 'node:timers/promises';
import { defaultNatsSpec } from '../../src/api/defaults.ts';
import {
  JETSTREAM_CONDITION,
  jetStreamConditions,
  JetStreamReason,
} from '../../src/controller/jetstream-health.ts';
import {
  decideRejoin,
  metaPeersOf,
  PEER_REJOIN_MS,
  withRemoval,
  type RemovedPeers,
} from '../../src/controller/rejoin.ts';
import { decideRollout, type RolloutPod } from '../../src/controller/rollout.ts';
import {
  clusterHealth,
  MONITOR_PORT,
  type Fetch,
  type ServerHealth,
} from '../../src/nats/monitoring.ts';
import { observeCluster, removePeer, stepDownMetaLeader } from '../../src/nats/peers.ts';
import { generateSystemAccountPassword } from '../../src/render/password.ts';
import {
  addFileStream,
  startRenderedCluster,
  type LoopbackCluster,
  type RunningServer,
} from '../support/nats-cluster.ts';

const NAME = 'eventing-nats';
const password = generateSystemAccountPassword();
const names = Array.from({ length: 5 }, (_, ordinal) => `${NAME}-${String(ordinal)}`);
const [, , , THREE = '', FOUR = ''] = names;
/** What the meta log needs to be compacted after the last change: its snapshot timer. */
const META_COMPACT_MS = 65_000;

let cluster: LoopbackCluster;
let nc: NatsConnection;
let removed: RemovedPeers = new Map();
/** When each pod was "re-created": the restart of its server. */
const startedAt = new Map<string, string>();

function log(line: string): void {
  process.stdout.write(`[peer-rejoin] ${line}\n`);
}

function server(name: string): RunningServer {
  const found = cluster.servers.find((s) => s.name === name);
  if (found === undefined) throw new Error(`no server ${name}`);
  return found;
}

function url(s: RunningServer): string {
  return `nats://127.0.0.1:${String(s.clientPort)}`;
}

const access = (): { url: string; password: string } => ({
  url: url(server(names[0] ?? '')),
  password,
});

/** The monitoring answers as the manager gathers them, each "pod IP" mapped to its loopback port. */
async function health(running: readonly string[]): Promise<Map<string, ServerHealth>> {
  const ipOf = (name: string): string => `10.9.9.${String(names.indexOf(name))}`;
  const loopback: Fetch = (target, init) => {
    const match = /^http:\/\/10\.9\.9\.(\d+):(\d+)(\/.*)$/.exec(target);
    const s = cluster.servers[Number(match?.[1])];
    if (match === null || s === undefined || match[2] !== String(MONITOR_PORT)) {
      throw new Error(`unexpected ${target}`);
    }
    return fetch(`http://127.0.0.1:${String(s.monitorPort)}${match[3] ?? ''}`, init);
  };
  return clusterHealth(
    running.map((name) => ({ name, ip: ipOf(name) })),
    { fetch: loopback },
  );
}

function pods(revisions: Partial<Record<string, string>> = {}): RolloutPod[] {
  return names.map((name) => ({
    name,
    uid: `uid-${name}`,
    revision: revisions[name] ?? 'rev-1',
    terminating: false,
    ready: true,
    startedAt: startedAt.get(name) ?? '2026-01-01T00:00:00Z',
  }));
}

beforeAll(async () => {
  ({ cluster } = await startRenderedCluster(
    defaultNatsSpec({ cluster: { size: 5 } }),
    password,
    names,
  ));
  nc = await connect({
    servers: cluster.servers.slice(0, 3).map(url),
    maxReconnectAttempts: -1,
    reconnectTimeWait: 100,
  });
  await addFileStream(await jetstreamManager(nc), 'orders', 3);
}, 60_000);

afterAll(async () => {
  await nc.close().catch(() => undefined);
  await cluster.stop();
});

describe('a removed peer re-created inside the window', () => {
  test('5 -> 3: -4 then -3 leave the meta group; the manager records when', async () => {
    // The leader removes the others; the record holds the time each removal was answered. A
    // step-down is asked for only while another server leads: nats-server refuses one to the
    // leader itself, and names[0] may have won the election already.
    for (let attempt = 0; ; attempt++) {
      const asked = await observeCluster(access(), 5);
      if (asked.ok && asked.value.metaLeader === names[0]) break;
      if (attempt > 100) throw new Error(`${names[0]} did not become the meta leader`);
      if (asked.ok && asked.value.metaLeader !== undefined) {
        const moved = await stepDownMetaLeader(access(), names[0]);
        if (!moved.ok) log(`step-down to ${names[0]}: ${moved.error}`);
      }
      await sleep(300);
    }
    for (const name of [FOUR, THREE]) {
      for (let attempt = 0; ; attempt++) {
        const asked = await observeCluster(access(), 5);
        const ready =
          asked.ok &&
          asked.value.metaLeader === names[0] &&
          asked.value.metaPeers.every((p) => p.current && !p.offline);
        if (ready) {
          const done = await removePeer(access(), name);
          if (done.ok) break;
          log(`removing ${name}: ${done.error}`);
        }
        if (attempt > 100) throw new Error(`${name} could not be removed`);
        await sleep(300);
      }
      removed = withRemoval(removed, name, new Date());
      for (;;) {
        const asked = await observeCluster(access(), 5);
        if (asked.ok && !asked.value.metaPeers.some((p) => p.name === name)) break;
        await sleep(200);
      }
      await cluster.kill(server(name));
      log(`${name} removed at ${removed.get(name)?.toISOString() ?? ''} and stopped`);
    }
    const asked = await observeCluster(access(), 3);
    expect(asked.ok && asked.value.metaPeers.map((p) => p.name).toSorted()).toEqual(
      names.slice(0, 3),
    );
  }, 90_000);

  test('3 -> 5 inside the window: both serve clients; the status says by when they rejoin; rollouts do not wait', async () => {
    const lastRemoval = removed.get(THREE)?.getTime() ?? 0;
    await sleep(Math.max(0, lastRemoval + META_COMPACT_MS - Date.now()));
    for (const name of [THREE, FOUR]) {
      await cluster.restart(server(name), { wipe: true });
      startedAt.set(name, new Date().toISOString());
    }
    log(`re-created -3 and -4 ${String(Date.now() - lastRemoval)} ms after -3's removal`);
    // Both running with JetStream on, every server knowing the leader.
    let answers = await health(names);
    for (let i = 0; i < 150; i++) {
      if (
        [...answers.values()].every(
          (s) => s.reachable && s.jetStreamEnabled && s.metaLeader !== undefined,
        )
      )
        break;
      await sleep(200);
      answers = await health(names);
    }
    const decision = decideRejoin({ removed, pods: pods(), servers: answers, now: new Date() });
    const peers = metaPeersOf(answers) ?? [];
    log(
      `meta peers now: ${peers.join(', ')}; rejoining: ${decision.rejoining.map((r) => r.server).join(', ')}`,
    );
    // Each re-created server is either admitted already or reported with its time.
    for (const name of [THREE, FOUR]) {
      const rejoins = decision.rejoining.find((r) => r.server === name);
      expect(peers.includes(name) || rejoins !== undefined).toBe(true);
      if (rejoins !== undefined) {
        expect(rejoins.rejoinsBy.getTime()).toBe(
          (removed.get(name)?.getTime() ?? 0) + PEER_REJOIN_MS,
        );
        expect(rejoins.overdue).toBe(false);
      }
    }
    // The compacted log leaves nats-server nothing to catch them up from: the window applies.
    expect(decision.rejoining.map((r) => r.server)).toEqual([THREE, FOUR]);
    const [condition] = jetStreamConditions(answers, true, undefined, decision.rejoining);
    expect(condition?.type).toBe(JETSTREAM_CONDITION);
    expect(condition?.reason).toBe(JetStreamReason.PeersRejoining);
    expect(condition?.message).toMatch(
      new RegExp(
        `^JetStream is enabled on all 5 server\\(s\\); the meta leader is ${NAME}-0\\. ` +
          `${THREE} rejoins JetStream by \\d\\d:\\d\\d:\\d\\dZ, ${FOUR} by \\d\\d:\\d\\d:\\d\\dZ: ` +
          'nats-server re-admits a removed peer 5 minutes after its removal\\.',
      ),
    );
    log(`JetStream condition: ${condition?.reason ?? ''}: ${condition?.message ?? ''}`);

    // Clients of the re-created servers reach the stream through them.
    for (const name of [THREE, FOUR]) {
      const client = await connect({ servers: url(server(name)) });
      try {
        const ack = await jetstream(client).publish('orders.via', name, { timeout: 5_000 });
        expect(ack.stream).toBe('orders');
        // And the JetStream API: answered by the meta leader through it.
        const info = await (await jetstreamManager(client)).streams.info('orders');
        expect(info.config.num_replicas).toBe(3);
      } finally {
        await client.close();
      }
    }

    // A rollout of an older revision of 0-2 restarts a follower once every server answers for
    // itself, instead of waiting for servers no leader lists.
    const rolloutOf = (servers: ReadonlyMap<string, ServerHealth>, rejoining: readonly string[]) =>
      decideRollout({
        statefulSet: {
          metadata: { generation: 2 },
          spec: { replicas: 5 },
          status: { observedGeneration: 2, updateRevision: 'rev-2' },
        },
        pods: pods({ [THREE]: 'rev-2', [FOUR]: 'rev-2' }),
        servers,
        now: new Date(),
        rejoining,
      });
    const waits: string[] = [];
    for (let attempt = 0; ; attempt++) {
      const now = await health(names);
      const rejoining = decideRejoin({
        removed,
        pods: pods(),
        servers: now,
        now: new Date(),
      }).rejoining.map((r) => r.server);
      const rollout = rolloutOf(now, rejoining);
      if (rollout.kind === 'restart') {
        expect([names[1], names[2]]).toContain(rollout.pod);
        // Not knowing they rejoin, the same answers hold the rollout on a server no leader lists.
        if (rejoining.length > 0) {
          expect(rolloutOf(now, [])).toMatchObject({
            kind: 'wait',
            message: expect.stringMatching(/does not see it current/) as unknown,
          });
        }
        break;
      }
      if (rollout.kind === 'wait' && waits.at(-1) !== rollout.message) waits.push(rollout.message);
      if (attempt > 60) throw new Error(`the rollout kept waiting:\n${waits.join('\n')}`);
      await sleep(500);
    }
    log(`the rollout restarts a follower${waits.length > 0 ? ` after: ${waits.join(' / ')}` : ''}`);
    expect(waits.filter((w) => /the meta leader .* does not see it current/.test(w))).toEqual([]);
  }, 150_000);
});
