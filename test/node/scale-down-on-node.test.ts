// Safe scale-down on the real node: the manager (src/manager/main.ts as a process) shrinks a
// 5-server JetStream cluster to 3 while R3 streams take acknowledged writes, one server at a
// time through the system account; every acknowledged message is read back, the meta group has
// 3 peers, the claims of the removed ordinals are gone; then 3 -> 5 brings the two servers back
// on fresh volumes. nats-server admits a removed peer's name to the meta group 5 minutes after
// its removal (src/controller/rejoin.ts): they serve clients at once, the status says by when
// they rejoin, they are meta peers within the window and a margin, and an R5 stream is placed
// on all five. Figures: time per removed server, publish errors, admission after removal.
import type { ChildProcess } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { jetstream, jetstreamManager, StorageType, type JetStreamClient } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import {
  parseRemovedPeers,
  PEER_REJOIN_MS,
  REMOVED_PEERS_ANNOTATION,
} from '../../src/controller/rejoin.ts';
import { eventually } from '../support/kube.ts';
import {
  Figures,
  NAME,
  NodeKube,
  NS,
  exited,
  isReady,
  jsz,
  resolveNodeNames,
  retrying,
  running,
  startManagerOnNode,
  startNodeOwner,
  stopNodeOwner,
  type NodeOwner,
  type Pod,
} from '../support/node-cluster.ts';

const STREAMS = ['orders', 'payments'];
/** Past nats-server's window: a heartbeat for the leader to hear from the server, and slack. */
const REJOIN_MARGIN_MS = 60_000;
/** How far the status may trail the servers: a reconcile after the pods' Ready, a health poll. */
const STATUS_LAG_MS = 40_000;

interface NatsObject {
  status?: {
    state?: string;
    url?: string;
    conditions?: { type: string; status: string; reason: string; message: string }[];
  };
}

let owner: NodeOwner;
let kube: NodeKube;
let restoreLookup: (() => void) | undefined;
let manager: ChildProcess;
let managerOutput = '';
const figures = new Figures('scale-down');
let nc: NatsConnection | undefined;
let js: JetStreamClient;

/** The meta group's members as its leader reports them, once every pod agrees on the size. */
async function metaPeers(pods: readonly Pod[], size: number): Promise<string[]> {
  return eventually(
    `a meta group of ${String(size)} with every member current`,
    async () => {
      const views = await Promise.all(pods.map(jsz));
      if (!views.every((v) => v?.meta_cluster?.cluster_size === size && v.disabled !== true)) {
        return undefined;
      }
      const leader = views.find((v) => v?.meta_cluster?.replicas !== undefined)?.meta_cluster;
      const others = leader?.replicas ?? [];
      if (leader?.leader === undefined || !others.every((r) => r.current)) return undefined;
      return [leader.leader, ...others.map((r) => r.name)].toSorted();
    },
    120_000,
  );
}

async function patchSize(size: number): Promise<void> {
  await kube.patchNatsSpec({ cluster: { size } });
}

async function claims(): Promise<string[]> {
  const list = await kube.getJson<{ items: { metadata: { name: string } }[] }>(['pvc', '-n', NS]);
  return (list?.items ?? []).map((c) => c.metadata.name).toSorted();
}

/**
 * Publishes to every stream in turn until stopped: what was acknowledged, and what was not (a
 * publish whose acknowledgement did not come may still have been stored).
 */
function publishLoop(): {
  stop: () => Promise<{ acked: Map<string, string[]>; failed: Set<string>; errors: number }>;
} {
  const acked = new Map(STREAMS.map((s) => [s, [] as string[]]));
  const failed = new Set<string>();
  const state = { running: true };
  const loop = (async () => {
    for (let i = 0; state.running; i++) {
      const stream = STREAMS[i % STREAMS.length] ?? '';
      const body = `${stream}-${String(i)}`;
      try {
        await js.publish(`${stream}.new`, body, { timeout: 2_000 });
        acked.get(stream)?.push(body);
      } catch {
        failed.add(body);
        await sleep(100);
      }
    }
  })();
  return {
    stop: async () => {
      state.running = false;
      await loop;
      return { acked, failed, errors: failed.size };
    },
  };
}

async function readBack(stream: string, count: number): Promise<string[]> {
  if (nc === undefined) throw new Error('not connected');
  const jsm = await jetstreamManager(nc);
  await jsm.consumers.add(stream, { durable_name: 'read-back' });
  const consumer = await jetstream(nc).consumers.get(stream, 'read-back');
  const bodies: string[] = [];
  while (bodies.length < count) {
    const batch = await consumer.fetch({ max_messages: 500, expires: 2_000 });
    let got = 0;
    for await (const message of batch) {
      bodies.push(message.string());
      got++;
    }
    if (got === 0) break;
  }
  return bodies;
}

beforeAll(async () => {
  owner = await startNodeOwner();
  kube = new NodeKube(owner.kubeconfig);
  restoreLookup = resolveNodeNames(owner);
  await kube.prepare();
  manager = await startManagerOnNode(owner, { onOutput: (text) => (managerOutput += text) });
}, 300_000);

afterAll(async () => {
  await nc?.close().catch(() => undefined);
  if (running(manager)) {
    manager.kill('SIGKILL');
    await exited(manager);
  }
  await stopNodeOwner(owner, 90_000);
  restoreLookup?.();
  figures.print();
}, 120_000);

describe('scale-down on the node', () => {
  it('5 -> 3 under a publish loop: one server at a time, no acknowledged message lost, 3 meta peers, claims gone', async () => {
    const created = Date.now();
    const file = join(tmpdir(), `nats-five-${String(process.pid)}.json`);
    writeFileSync(
      file,
      JSON.stringify({
        apiVersion: 'operator.kyma-project.io/v1alpha1',
        kind: 'NATS',
        metadata: { name: NAME, namespace: NS },
        spec: {
          cluster: { size: 5 },
          jetStream: { memStorage: { enabled: true, size: '1Gi' }, fileStorage: { size: '1Gi' } },
        },
      }),
    );
    await kube.kubectl(['apply', '-f', file]);
    rmSync(file);
    const five = await kube.readyPods(5, 240_000);
    expect(await metaPeers(five, 5)).toHaveLength(5);
    figures.add(`5 servers Ready with a meta group of 5 in ${String(Date.now() - created)} ms`);

    const url = `nats://${NAME}.${NS}.svc.${owner.node.clusterDomain}:4222`;
    nc = await retrying(() => connect({ servers: url, maxReconnectAttempts: -1 }), 30_000);
    js = jetstream(nc);
    const jsm = await jetstreamManager(nc);
    for (const stream of STREAMS) {
      await retrying(
        () =>
          jsm.streams.add({
            name: stream,
            subjects: [`${stream}.>`],
            num_replicas: 3,
            storage: StorageType.File,
          }),
        30_000,
      );
    }
    const loop = publishLoop();
    await sleep(1_000);

    const shrinking = Date.now();
    await patchSize(3);
    // Every progress message the status shows, with when it first appeared.
    const seen: { at: number; message: string }[] = [];
    await eventually(
      'the scale-down to finish: 3 pods Ready, state Ready, 3 claims',
      async () => {
        const nats = await kube.getJson<NatsObject>(['nats', NAME, '-n', NS]);
        const message =
          nats?.status?.conditions?.find((c) => c.type === 'StatefulSet')?.message ?? '';
        if (message !== seen.at(-1)?.message) {
          seen.push({ at: Date.now() - shrinking, message });
          process.stdout.write(`[scale-down] +${String(Date.now() - shrinking)} ms: ${message}\n`);
        }
        if (nats?.status?.state !== 'Ready') return undefined;
        const pods = await kube.natsPods();
        if (pods.length !== 3 || !pods.every(isReady)) return undefined;
        return (await claims()).length === 3 ? true : undefined;
      },
      300_000,
    ).catch(async (error: unknown) => {
      await loop.stop();
      const lines = managerOutput
        .split('\n')
        .filter((l) => /JetStream|claim|status written/.test(l));
      process.stdout.write(`[scale-down] manager:\n${lines.slice(-60).join('\n')}\n`);
      throw error;
    });
    const { acked, failed, errors } = await loop.stop();
    figures.add(`5 -> 3 finished in ${String(Date.now() - shrinking)} ms`);
    for (const step of seen) figures.add(`  +${String(step.at)} ms: ${step.message}`);
    // Per server: from the first status naming it to the first naming the next step after it.
    const firstAt = (text: string): number | undefined =>
      seen.find((x) => x.message.includes(text))?.at;
    const marks = [`${NAME}-4`, `${NAME}-3`, 'volume claims'].map(firstAt);
    const times = marks
      .slice(0, -1)
      .map((at, i) => `${String((marks[i + 1] ?? Number.NaN) - (at ?? Number.NaN))} ms`);
    figures.add(`time per removed server (status, eventing-nats-4 then -3): ${times.join(', ')}`);
    const total = [...acked.values()].reduce((n, a) => n + a.length, 0);
    figures.add(
      `publish loop: ${String(total)} acknowledged, ${String(errors)} failed (not acknowledged)`,
    );

    // One server at a time, highest ordinal first.
    const removals = seen
      .map((s) => /removing (eventing-nats-\d) from JetStream/.exec(s.message)?.[1])
      .filter((s) => s !== undefined);
    expect([...new Set(removals)]).toEqual([`${NAME}-4`, `${NAME}-3`]);
    expect((await claims()).map((c) => /-(\d+)$/.exec(c)?.[1])).toEqual(['0', '1', '2']);
    const three = await kube.readyPods(3, 60_000);
    expect(await metaPeers(three, 3)).toEqual([0, 1, 2].map((i) => `${NAME}-${String(i)}`));
    for (const stream of STREAMS) {
      const bodies = acked.get(stream) ?? [];
      const info = await retrying(() => jsm.streams.info(stream), 60_000);
      const stored = await retrying(() => readBack(stream, info.state.messages), 60_000);
      expect(stored).toHaveLength(info.state.messages);
      // Every acknowledged message is there, in order; anything else came from a publish whose
      // acknowledgement was lost.
      const ackedSet = new Set(bodies);
      expect(stored.filter((b) => ackedSet.has(b))).toEqual(bodies);
      expect(stored.filter((b) => !ackedSet.has(b)).every((b) => failed.has(b))).toBe(true);
    }
  }, 600_000);

  it('3 -> 5 inside the window: fresh claims, clients served, the status says by when the servers rejoin; 5 meta peers, an R5 stream on all', async () => {
    // When the manager removed each server, as it recorded on the resource.
    const annotated = await kube.getJson<{ metadata: { annotations?: Record<string, string> } }>([
      'nats',
      NAME,
      '-n',
      NS,
    ]);
    const removed = parseRemovedPeers(annotated?.metadata.annotations?.[REMOVED_PEERS_ANNOTATION]);
    expect([...removed.keys()]).toEqual([`${NAME}-3`, `${NAME}-4`]);
    const lastRemoval = Math.max(...[...removed.values()].map((d) => d.getTime()));
    const before = await claims();
    const growing = Date.now();
    figures.add(`3 -> 5 started ${String(growing - lastRemoval)} ms after the last removal`);
    await patchSize(5);
    const five = await kube.readyPods(5, 240_000);
    const readyAt = Date.now();
    figures.add(`3 -> 5 pods Ready in ${String(readyAt - growing)} ms`);
    // The claims of ordinals 3 and 4 were deleted with their servers: these are new ones.
    const after = await claims();
    expect(after).toHaveLength(5);
    expect(after.filter((c) => !before.includes(c))).toHaveLength(2);
    const recreated = five.filter((p) => /-[34]$/.test(p.metadata.name));
    for (const pod of recreated) {
      const view = await jsz(pod);
      // JetStream runs on the fresh store, with no stream data of its own.
      expect(view?.disabled).not.toBe(true);
      expect(view?.streams ?? 0).toBe(0);
    }
    // Clients of the re-created servers are served at once, meta peers or not.
    for (const pod of recreated) {
      const client = await retrying(
        () => connect({ servers: `nats://${pod.status.podIP ?? ''}:4222` }),
        30_000,
      );
      try {
        const ack = await retrying(
          () => jetstream(client).publish(`${STREAMS[0] ?? ''}.via`, pod.metadata.name),
          30_000,
        );
        expect(ack.stream).toBe(STREAMS[0]);
        const info = await (await jetstreamManager(client)).streams.info(STREAMS[0] ?? '');
        expect(info.config.num_replicas).toBe(3);
      } finally {
        await client.close();
      }
    }

    // nats-server admits a removed peer's name 5 minutes after its removal at the latest
    // (src/controller/rejoin.ts); meanwhile the JetStream condition must say so.
    const deadline = lastRemoval + PEER_REJOIN_MS + REJOIN_MARGIN_MS;
    const admitted = new Map<string, number>();
    const silent: string[] = [];
    let shown: { at: number; message: string } | undefined;
    while (Date.now() < deadline && admitted.size < 2) {
      const views = await Promise.all(five.map(jsz));
      const leader = views.find((v) => v?.meta_cluster?.replicas !== undefined)?.meta_cluster;
      const peers = [leader?.leader ?? '', ...(leader?.replicas ?? []).map((r) => r.name)];
      for (const pod of recreated) {
        const name = pod.metadata.name;
        if (peers.includes(name) && !admitted.has(name)) admitted.set(name, Date.now());
      }
      const missing = recreated.map((p) => p.metadata.name).filter((n) => !admitted.has(n));
      const condition = (
        await kube.getJson<NatsObject>(['nats', NAME, '-n', NS])
      )?.status?.conditions?.find((c) => c.type === 'JetStream');
      const says =
        condition?.reason === 'PeersRejoining' &&
        missing.every((n) => condition.message.includes(n)) &&
        condition.message.includes('rejoins JetStream by');
      if (says && shown === undefined) {
        shown = { at: Date.now(), message: condition.message };
        figures.add(
          `status after ${String(Date.now() - readyAt)} ms of Ready pods: ${condition.message}`,
        );
      }
      // The status follows the pods within a reconcile and a health poll.
      if (missing.length > 0 && !says && Date.now() - readyAt > STATUS_LAG_MS) {
        silent.push(
          `+${String(Date.now() - readyAt)} ms: ${condition?.reason ?? 'none'}: ${condition?.message ?? ''}`,
        );
      }
      if (admitted.size < 2) await sleep(2_000);
    }
    for (const [name, at] of removed) {
      const when = admitted.get(name);
      figures.add(
        `${name} a meta peer ${when === undefined ? 'never' : `${String(when - at.getTime())} ms`} after its removal` +
          ` (${when === undefined ? '-' : String(when - readyAt)} ms after its pod was Ready)`,
      );
    }
    expect([...admitted.keys()].toSorted()).toEqual([`${NAME}-3`, `${NAME}-4`]);
    expect(silent).toEqual([]);
    // Admitted later than the status could follow: it must have said what was going on.
    const waited = Math.max(...admitted.values()) - readyAt;
    if (waited > STATUS_LAG_MS) expect(shown).toBeDefined();
    expect(await metaPeers(five, 5)).toEqual([0, 1, 2, 3, 4].map((i) => `${NAME}-${String(i)}`));

    // JetStream works on them: an R5 stream has a replica on every server and takes writes.
    if (nc === undefined) throw new Error('not connected');
    const jsm = await jetstreamManager(nc);
    await retrying(
      () => jsm.streams.add({ name: 'wide', subjects: ['wide.>'], num_replicas: 5 }),
      30_000,
    );
    await retrying(() => js.publish('wide.x', 'one', { timeout: 5_000 }), 30_000);
    const wide = await eventually(
      'the R5 stream with five current replicas',
      async () => {
        const info = await jsm.streams.info('wide');
        const replicas = info.cluster?.replicas ?? [];
        return replicas.length === 4 && replicas.every((r) => r.current) ? info : undefined;
      },
      60_000,
    );
    expect(
      [wide.cluster?.leader ?? '', ...(wide.cluster?.replicas ?? []).map((r) => r.name)].toSorted(),
    ).toEqual([0, 1, 2, 3, 4].map((i) => `${NAME}-${String(i)}`));

    // The condition clears, the record empties, and Events told the story.
    await eventually(
      'the JetStream condition Enabled and the record gone',
      async () => {
        const nats = await kube.getJson<
          NatsObject & { metadata: { annotations?: Record<string, string> } }
        >(['nats', NAME, '-n', NS]);
        const condition = nats?.status?.conditions?.find((c) => c.type === 'JetStream');
        return condition?.reason === 'Enabled' &&
          nats?.metadata.annotations?.[REMOVED_PEERS_ANNOTATION] === undefined
          ? true
          : undefined;
      },
      60_000,
    );
    const events = await kube.getJson<{ items: { reason: string; message: string }[] }>([
      'events',
      '-n',
      NS,
      '--field-selector',
      `involvedObject.name=${NAME},involvedObject.kind=NATS`,
    ]);
    const reasons = (events?.items ?? []).map((e) => e.reason);
    if (shown !== undefined)
      expect(reasons).toEqual(expect.arrayContaining(['PeersRejoining', 'PeersRejoined']));
    figures.add(`3 -> 5 test took ${String(Date.now() - growing)} ms`);
  }, 600_000);
});
