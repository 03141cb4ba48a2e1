// JetStream health in the status against three real nats-server processes from the rendered
// size-3 config: each read goes through the manager's own monitoring client (clusterHealth), the
// status the reconcile's settle step computes (nextStatus: written only when it changed) and the
// Warning Events it derives (healthEvents), read after read as the reconcile polls.
// - Storage: the spec's fileStorage.size is 32Mi, which the API allows and which renders
//   max_file_store 24Mi (the headroom rule: at least min(256Mi, 25%) = 8Mi below the claim). An R3
//   file stream is filled with real publishes past 80% and 90% of every server's store, purged
//   back to between 85% and 90% (the level holds), then deleted (normal again).
// - Disabled: the path proven is a peer removal (`$JS.API.SERVER.REMOVE` through the system
//   account, removePeer), after which the removed server disables JetStream. A full disk, the
//   other way JetStream disables itself, needs a small file system this machine does not offer
//   without mounts; the status and Event do not depend on why the server disabled it.
import { jetstreamManager, jetstream, type JetStreamClient } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { setTimeout as sleep } from 'node:timers/promises';
import { defaultNatsSpec } from '../../src/api/defaults.ts';
import { NATS_API_VERSION, NATS_KIND, type Nats, type NatsStatus } from '../../src/api/nats.ts';
import type { NatsEvent } from '../../src/controller/events.ts';
import { healthEvents } from '../../src/controller/jetstream-health.ts';
import { nextStatus, type PlanSettings } from '../../src/controller/plan.ts';
import { clusterHealth, type ServerHealth } from '../../src/nats/monitoring.ts';
import { removePeer } from '../../src/nats/peers.ts';
import { DEFAULT_IMAGES } from '../../src/render/context.ts';
import { maxFileStoreBytes } from '../../src/render/guards.ts';
import { generateSystemAccountPassword } from '../../src/render/password.ts';
import {
  addFileStream,
  logTail,
  startRenderedCluster,
  waitForMetaLeader,
  type LoopbackCluster,
  type RunningServer,
} from '../support/nats-cluster.ts';

const NAME = 'eventing-nats';
const STREAM = 'fill';
const CLAIM = '32Mi';
const STORE_BYTES = Number(maxFileStoreBytes(32n * 1024n * 1024n));
// About half a percent of the store each: a step lands within a percent of its target.
const MESSAGE = new Uint8Array(128 * 1024).fill(120);
const password = generateSystemAccountPassword();
const NAMESPACE = 'kyma-system';
const spec = defaultNatsSpec({ cluster: { size: 3 }, jetStream: { fileStorage: { size: CLAIM } } });
const settings: PlanSettings = {
  natsName: NAME,
  natsNamespace: NAMESPACE,
  images: DEFAULT_IMAGES,
  clusterDomain: 'cluster.local',
  recheckMs: 10_000,
};
const names = Array.from({ length: 3 }, (_, ordinal) => `${NAME}-${String(ordinal)}`);
// A StatefulSet whose pods all run the current revision: the status reads the servers.
const READY_STS = {
  metadata: { generation: 1 },
  spec: { replicas: 3, updateStrategy: { type: 'OnDelete' } },
  status: {
    observedGeneration: 1,
    replicas: 3,
    readyReplicas: 3,
    updatedReplicas: 3,
    currentRevision: 'r1',
    updateRevision: 'r1',
  },
};

let cluster: LoopbackCluster;
let nc: NatsConnection;
let js: JetStreamClient;
/** The resource with the status the last reconcile wrote, and every health Event produced. */
let nats: Nats = {
  apiVersion: NATS_API_VERSION,
  kind: NATS_KIND,
  metadata: { name: NAME, namespace: NAMESPACE, uid: 'uid-1', generation: 1 },
  spec,
};
let writes = 0;
const events: NatsEvent[] = [];
const readMs: number[] = [];

function log(line: string): void {
  process.stdout.write(`[jetstream-health] ${line}\n`);
}

function url(server: RunningServer): string {
  return `nats://127.0.0.1:${String(server.clientPort)}`;
}

/**
 * One reconcile's worth, as the plan's settle step does it: the servers read, the next status
 * (undefined when it is the stored one, and then nothing is written and no Event derived), the
 * health Events from the stored status to the next.
 */
async function reconcile(): Promise<{ servers: Map<string, ServerHealth>; status: NatsStatus }> {
  const started = performance.now();
  const servers = await clusterHealth(
    cluster.servers.map((s) => ({ name: s.name, ip: '127.0.0.1', port: s.monitorPort })),
  );
  readMs.push(performance.now() - started);
  const next = nextStatus(
    nats,
    settings,
    { kind: 'applied' },
    { now: new Date(), statefulSet: READY_STS, zones: ['a', 'b', 'c'], servers },
  );
  if (next !== undefined) {
    events.push(...healthEvents(nats.status, next));
    nats = { ...nats, status: next };
    writes++;
  }
  return { servers, status: nats.status ?? {} };
}

function condition(status: NatsStatus, type: string): { reason: string; message: string } {
  const found = status.conditions?.find((c) => c.type === type);
  if (found === undefined) throw new Error(`no ${type} condition in ${JSON.stringify(status)}`);
  return found;
}

/** Each server's whole percent of its store, as the condition rounds it. */
function percents(servers: ReadonlyMap<string, ServerHealth>): number[] {
  return names.map((name) => {
    const s = servers.get(name);
    if (s?.reachable !== true || s.storageUsed === undefined || s.storageMax === undefined) {
      throw new Error(`${name} reported no storage: ${JSON.stringify(s)}`);
    }
    expect(s.storageMax).toBe(STORE_BYTES);
    return Math.floor((s.storageUsed / s.storageMax) * 100);
  });
}

/** Publishes until every server's store is at least `target` percent full; returns the reads. */
async function fillTo(target: number): Promise<{ published: number; seen: number[] }> {
  let published = 0;
  for (;;) {
    const { servers } = await reconcile();
    const seen = percents(servers);
    if (Math.min(...seen) >= target) return { published, seen };
    // Publish while the fullest store is below the target; then let the last replica catch up.
    if (Math.max(...seen) < target) {
      await js.publish(`${STREAM}.x`, MESSAGE, { timeout: 5_000 });
      published++;
    } else {
      await sleep(20);
    }
  }
}

/** Reads until every server reports the same percent `accept` takes; returns it. */
async function settle(what: string, accept: (pct: number) => boolean): Promise<number[]> {
  const deadline = Date.now() + 15_000;
  let seen: number[] = [];
  while (Date.now() < deadline) {
    seen = percents((await reconcile()).servers);
    if (seen.every((p) => p === seen[0] && accept(p))) return seen;
    await sleep(100);
  }
  throw new Error(`${what}: the servers report ${seen.join(', ')}%`);
}

function storageEvents(): string[] {
  return events.filter((e) => e.reason.startsWith('Storage')).map((e) => e.reason);
}

beforeAll(async () => {
  const started = await startRenderedCluster(spec, password, names);
  cluster = started.cluster;
  expect(started.natsConf).toContain(`max_file_store: ${String(STORE_BYTES)}`);
  nc = await connect({ servers: cluster.servers.map(url), maxReconnectAttempts: -1 });
  js = jetstream(nc);
  await addFileStream(await jetstreamManager(nc), STREAM, 3);
}, 60_000);

afterAll(async () => {
  const median = [...readMs].sort((a, b) => a - b)[Math.floor(readMs.length / 2)] ?? 0;
  log(
    `${String(readMs.length)} reads of the three servers, ${String(writes)} status writes: median ${median.toFixed(1)} ms, ` +
      `max ${Math.max(0, ...readMs).toFixed(1)} ms`,
  );
  await nc.close().catch(() => undefined);
  await cluster.stop();
});

describe('JetStream health of three real servers', () => {
  test('an empty store: JetStream Enabled with the meta leader, StorageNormal, no Event', async () => {
    const { status } = await reconcile();
    expect(status.state).toBe('Ready');
    expect(condition(status, 'JetStream')).toMatchObject({
      reason: 'Enabled',
      message: expect.stringMatching(
        /^JetStream is enabled on all 3 server\(s\); the meta leader is eventing-nats-[0-2]\.$/,
      ) as string,
    });
    expect(condition(status, 'JetStreamStorage')).toEqual(
      expect.objectContaining({
        reason: 'StorageNormal',
        message: `File storage used of each server's 24 MiB store: ${names.map((n) => `${n} 0%`).join(', ')}.`,
      }),
    );
    expect(events).toEqual([]);
  });

  test('publishes past 80% then 90%: StorageHigh then StorageCritical, one Warning Event each', async () => {
    const started = Date.now();
    const high = await fillTo(80);
    const atHigh = nats.status;
    if (atHigh === undefined) throw new Error('no status');
    log(`past 80% after ${String(high.published)} publishes: ${high.seen.join(', ')}%`);
    expect(high.seen.every((p) => p >= 80 && p < 90)).toBe(true);
    expect(condition(atHigh, 'JetStreamStorage')).toMatchObject({
      status: 'False',
      reason: 'StorageHigh',
      message: `File storage used of each server's 24 MiB store: ${names.map((n, i) => `${n} ${String(high.seen[i])}%`).join(', ')}.`,
    });
    expect(atHigh.state).toBe('Ready');
    expect(storageEvents()).toEqual(['StorageHigh']);
    expect(events[0]).toMatchObject({
      type: 'Warning',
      message: expect.stringMatching(
        /^JetStream file storage crossed 80%: File storage used/,
      ) as string,
    });

    const critical = await fillTo(90);
    const atCritical = nats.status;
    if (atCritical === undefined) throw new Error('no status');
    log(
      `past 90% after ${String(high.published + critical.published)} publishes: ` +
        `${critical.seen.join(', ')}% (${String(Date.now() - started)} ms)`,
    );
    expect(critical.seen.every((p) => p >= 90 && p <= 100)).toBe(true);
    expect(condition(atCritical, 'JetStreamStorage')).toMatchObject({
      status: 'False',
      reason: 'StorageCritical',
      message: `File storage used of each server's 24 MiB store: ${names.map((n, i) => `${n} ${String(critical.seen[i])}%`).join(', ')}.`,
    });
    // A nearly full store takes the state to Warning.
    expect(atCritical.state).toBe('Warning');
    expect(storageEvents()).toEqual(['StorageHigh', 'StorageCritical']);
    expect(events[1]).toMatchObject({
      type: 'Warning',
      message: expect.stringMatching(/^JetStream file storage crossed 90%: /) as string,
    });
    // Polls at the same level announce nothing more.
    for (let i = 0; i < 3; i++) await reconcile();
    expect(storageEvents()).toEqual(['StorageHigh', 'StorageCritical']);
  }, 40_000);

  test('purged back to between 85% and 90% it stays StorageCritical; deleted, StorageNormal', async () => {
    const jsm = await jetstreamManager(nc);
    const info = await jsm.streams.info(STREAM);
    const now = Math.min(...percents((await reconcile()).servers));
    // Keep what makes about 87%: below the 90% threshold, above the 85% the level falls at.
    const keep = Math.floor((info.state.messages * 87) / now);
    await jsm.streams.purge(STREAM, { keep });
    const held = await settle('purged to 85-89%', (p) => p >= 85 && p < 90);
    log(
      `purged to ${String(keep)} of ${String(info.state.messages)} messages: ${held.join(', ')}%`,
    );
    expect(condition(nats.status ?? {}, 'JetStreamStorage')).toMatchObject({
      reason: 'StorageCritical',
      message: expect.stringContaining(
        names.map((n, i) => `${n} ${String(held[i])}%`).join(', '),
      ) as string,
    });

    await jsm.streams.delete(STREAM);
    const emptied = await settle('stream deleted', (p) => p < 75);
    log(`stream deleted: ${emptied.join(', ')}%`);
    expect(condition(nats.status ?? {}, 'JetStreamStorage')).toMatchObject({
      status: 'True',
      reason: 'StorageNormal',
    });
    expect(nats.status?.state).toBe('Ready');
    // Falling levels announce nothing: still the two Events of the rise.
    expect(storageEvents()).toEqual(['StorageHigh', 'StorageCritical']);
  }, 40_000);

  test('a server removed from JetStream disables it: JetStream Disabled, one JetStreamDisabled Event', async () => {
    const leader = await waitForMetaLeader(cluster.servers, 10_000);
    const removed = names.find((n) => n !== leader) ?? '';
    const asker = cluster.servers.find((s) => s.name === leader);
    if (asker === undefined) throw new Error(`no server ${leader}`);
    expect(await removePeer({ url: url(asker), password }, removed)).toEqual({
      ok: true,
      value: true,
    });
    const started = Date.now();
    const deadline = started + 15_000;
    let reads = 0;
    for (;;) {
      const { servers, status } = await reconcile();
      reads++;
      const s = servers.get(removed);
      if (s?.reachable === true && !s.jetStreamEnabled) break;
      if (Date.now() > deadline) {
        const server = cluster.servers.find((x) => x.name === removed);
        throw new Error(
          `${removed} still reports JetStream enabled: ${JSON.stringify(status.conditions)}\n` +
            (server === undefined ? '' : logTail(server)),
        );
      }
      await sleep(100);
    }
    log(
      `${removed} reported JetStream disabled ${String(Date.now() - started)} ms (${String(reads)} reads) after its removal`,
    );
    // Both of the server's own signals say so, not only one the client reads.
    const removedServer = cluster.servers.find((x) => x.name === removed);
    if (removedServer === undefined) throw new Error(`no server ${removed}`);
    const base = `http://127.0.0.1:${String(removedServer.monitorPort)}`;
    const enabledOnly = await fetch(`${base}/healthz?js-enabled-only=true`);
    const enabledBody = await enabledOnly.text();
    const jsz = (await (await fetch(`${base}/jsz`)).json()) as Record<string, unknown>;
    log(
      `${removed}: /healthz?js-enabled-only=true ${String(enabledOnly.status)} ${enabledBody.trim()}; ` +
        `/jsz disabled ${String(jsz.disabled)}, keys ${Object.keys(jsz).join(' ')}`,
    );
    expect(enabledOnly.status).not.toBe(200);
    expect(jsz.disabled).toBe(true);
    const status = nats.status ?? {};
    expect(status.state).toBe('Warning');
    expect(condition(status, 'JetStream')).toMatchObject({
      status: 'False',
      reason: 'Disabled',
      message: expect.stringMatching(
        new RegExp(`^JetStream is disabled on ${removed} \\(`),
      ) as string,
    });
    for (let i = 0; i < 3; i++) await reconcile();
    const disabled = events.filter((e) => e.reason === 'JetStreamDisabled');
    expect(disabled).toEqual([
      {
        type: 'Warning',
        reason: 'JetStreamDisabled',
        message: expect.stringContaining(`JetStream is disabled on ${removed}`) as string,
      },
    ]);
  }, 30_000);
});
