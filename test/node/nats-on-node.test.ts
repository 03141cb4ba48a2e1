// NATS really running: the manager (src/manager/main.ts as a process) on a local plane with a
// real worker node, the default StatefulSet's pods run by kubelet + containerd + runc from the
// images the plane imported, nothing patched by hand. One node serves the whole file (a host has
// one), in order: create, traffic, scale, reload, pod loss, load, deletion; then the node's owner
// is killed with SIGKILL and the host must be as it was; then `npm start` brings up a node of its
// own, the sample becomes Available, and Ctrl-C leaves the host clean again.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  jetstream,
  jetstreamManager,
  StorageType,
  type JetStreamManager,
} from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { hostDifferences, readSnapshot, type HostSnapshot } from '../../src/localplane/host.ts';
import { startLocalPlane } from '../../src/localplane/plane.ts';
import { isAlive } from '../../src/localplane/reaper.ts';
import { eventually } from '../support/kube.ts';
import {
  endNodeSuite,
  Figures,
  NAME,
  NodeKube,
  NS,
  exited,
  jsz,
  resolveNodeNames,
  retrying,
  startManagerOnNode,
  startNodeOwner,
  type NodeOwner,
  type Pod,
} from '../support/node-cluster.ts';

const MAIN = new URL('../../src/manager/main.ts', import.meta.url).pathname;
const SAMPLE = new URL('../../config/samples/nats.yaml', import.meta.url).pathname;
const USER_ROLES = new URL('../../deploy/rbac/user-roles.yaml', import.meta.url).pathname;
const STREAM = 'orders';
const MESSAGES = 200;

interface NatsObject {
  metadata: { finalizers?: string[] };
  status?: {
    state?: string;
    url?: string;
    availabilityZonesUsed?: number;
    conditions?: { type: string; status: string; reason: string; message: string }[];
  };
}

let owner: NodeOwner;
let kube: NodeKube;
let snapshot: HostSnapshot;
let nftBefore: string;
let manager: ChildProcess;
let managerOutput = '';
const figures = new Figures('node');
let nc: NatsConnection | undefined;
let jsm: JetStreamManager;

async function getNats(): Promise<NatsObject | undefined> {
  return kube.getJson<NatsObject>(['nats', NAME, '-n', NS]);
}

async function natsWhere(
  what: string,
  predicate: (nats: NatsObject) => boolean,
  timeoutMs = 120_000,
): Promise<NatsObject> {
  return eventually(
    what,
    async () => {
      const nats = await getNats();
      return nats !== undefined && predicate(nats) ? nats : undefined;
    },
    timeoutMs,
  );
}

async function streamMessages(): Promise<string[]> {
  if (nc === undefined) throw new Error('not connected');
  const js = jetstream(nc);
  const consumer = await js.consumers.get(STREAM);
  const bodies: string[] = [];
  const info = await jsm.streams.info(STREAM);
  const total = info.state.messages;
  while (bodies.length < total) {
    const batch = await consumer.fetch({ max_messages: 100, expires: 2_000 });
    for await (const message of batch) bodies.push(message.string());
  }
  return bodies;
}

beforeAll(async () => {
  const started = Date.now();
  owner = await startNodeOwner();
  kube = new NodeKube(owner.kubeconfig);
  figures.add(
    `plane with node up in ${String(Date.now() - started)} ms (node Ready ${String(owner.node.startedInMs)} ms after its first host change)`,
  );
  const recorded = readSnapshot(owner.dir);
  if (recorded === undefined) throw new Error('the node recorded no host snapshot');
  snapshot = recorded;
  nftBefore = readFileSync(snapshot.nftRulesetFile, 'utf8');
  // This process reaches NATS by the cluster's names, as the manager does.
  resolveNodeNames(owner);
  await kube.prepare();
  manager = await startManagerOnNode(owner, { onOutput: (text) => (managerOutput += text) });
}, 300_000);

afterAll(() => endNodeSuite({ nc, manager, owner, figures }));

describe('NATS on the local node', () => {
  it('creates the cluster: 3 pods Ready, Available, the URL and zones in status; an R3 file stream stores and replays', async () => {
    const applied = Date.now();
    await kube.kubectl(['apply', '-f', SAMPLE]);
    const pods = await kube.readyPods(3, 180_000);
    figures.add(`sample applied -> 3/3 pods Ready in ${String(Date.now() - applied)} ms`);
    for (const pod of pods) {
      expect(owner.node.workers.map((w) => w.name)).toContain(pod.spec.nodeName);
      expect(pod.status.containerStatuses?.map((c) => [c.name, c.ready]).sort()).toEqual([
        ['metrics', true],
        ['nats', true],
        ['reloader', true],
      ]);
    }
    await kube.kubectl([
      'wait',
      '--for=condition=Available',
      `nats/${NAME}`,
      '-n',
      NS,
      '--timeout=120s',
    ]);
    const nats = await natsWhere('state Ready', (n) => n.status?.state === 'Ready');
    expect(nats.status?.url).toBe(`nats://${NAME}.${NS}.svc.${owner.node.clusterDomain}:4222`);
    // The pods spread over the three nodes' zones, and the manager reports them.
    expect(new Set(pods.map((pod) => pod.spec.nodeName)).size).toBe(3);
    expect(nats.status?.availabilityZonesUsed).toBe(3);
    expect(nats.status?.conditions?.find((c) => c.type === 'AvailabilityZones')).toMatchObject({
      status: 'True',
      reason: 'Deployed',
    });
    figures.add(`state ${nats.status?.state ?? '?'} in ${String(Date.now() - applied)} ms`);

    // The meta leader is elected among the three, through the headless Service's DNS names.
    await eventually(
      'a JetStream meta leader',
      async () => {
        const views = await Promise.all(pods.map(jsz));
        return views.every(
          (v) => v?.meta_cluster?.leader !== undefined && v.meta_cluster.cluster_size === 3,
        )
          ? true
          : undefined;
      },
      60_000,
    );

    nc = await retrying(
      () => connect({ servers: nats.status?.url ?? '', maxReconnectAttempts: -1 }),
      30_000,
    );
    jsm = await jetstreamManager(nc);
    await retrying(
      () =>
        jsm.streams.add({
          name: STREAM,
          subjects: [`${STREAM}.>`],
          num_replicas: 3,
          storage: StorageType.File,
        }),
      30_000,
    );
    const js = jetstream(nc);
    for (let i = 0; i < MESSAGES; i++) await js.publish(`${STREAM}.created`, `order-${String(i)}`);
    const info = await jsm.streams.info(STREAM);
    expect(info.state.messages).toBe(MESSAGES);
    expect(info.cluster?.replicas).toHaveLength(2);
    await jsm.consumers.add(STREAM, { durable_name: 'replay' });
    const replayed = await streamMessages();
    expect(replayed).toEqual(Array.from({ length: MESSAGES }, (_, i) => `order-${String(i)}`));
  }, 400_000);

  it('refuses a second plane with nodes on this host, naming the first, at once', async () => {
    const started = Date.now();
    await expect(startLocalPlane({ node: true, log: () => undefined })).rejects.toThrow(
      `another local plane with a node runs on this host (pid ${String(owner.child.pid)}, ${owner.dir})`,
    );
    expect(Date.now() - started).toBeLessThan(10_000);
  });

  it('scales 3 -> 5 (two servers join the meta cluster) and back to 3', async () => {
    const started = Date.now();
    await kube.patchNatsSpec({ cluster: { size: 5 } });
    const five = await kube.readyPods(5, 240_000);
    await eventually(
      'a meta cluster of 5',
      async () => {
        const views = await Promise.all(five.map(jsz));
        return views.every((v) => v?.meta_cluster?.cluster_size === 5) ? true : undefined;
      },
      90_000,
    );
    await natsWhere(
      'Available at 5',
      (n) =>
        n.status?.conditions?.some((c) => c.type === 'Available' && c.status === 'True') === true &&
        n.status.availabilityZonesUsed === 3,
    );
    figures.add(`3 -> 5 Ready in ${String(Date.now() - started)} ms`);
    const down = Date.now();
    await kube.patchNatsSpec({ cluster: { size: 3 } });
    await kube.readyPods(3, 240_000);
    figures.add(`5 -> 3 in ${String(Date.now() - down)} ms`);
    const info = await retrying(() => jsm.streams.info(STREAM), 60_000);
    expect(info.state.messages).toBe(MESSAGES);
  }, 600_000);

  it('turns on debug logging through the reloader, without restarting a pod', async () => {
    const before = await kube.natsPods();
    const restarts = (pods: Pod[]): string =>
      JSON.stringify(
        pods
          .map((p) => [p.metadata.uid, p.status.containerStatuses?.map((c) => c.restartCount)])
          .sort(),
      );
    await kube.patchNatsSpec({ logging: { debug: true } });
    const changed = Date.now();
    const [pod] = before;
    if (pod === undefined) throw new Error('no NATS pod');
    await eventually(
      'a reload, then debug lines in the nats container log',
      async () => {
        // A client connecting is something a debug log reports.
        const probe = await connect({ servers: `nats://${pod.status.podIP ?? ''}:4222` });
        await probe.close();
        const logs = await kube.kubectl(['logs', '-n', NS, pod.metadata.name, '-c', 'nats']);
        return logs.includes('Reloaded server configuration') && logs.includes('[DBG]')
          ? true
          : undefined;
      },
      150_000,
    );
    figures.add(`debug logging live ${String(Date.now() - changed)} ms after the change`);
    expect(restarts(await kube.natsPods())).toBe(restarts(before));
  }, 200_000);

  it('recreates a deleted NATS pod, which rejoins with the stream intact on its volume', async () => {
    const [, victim] = await kube.natsPods();
    if (victim === undefined) throw new Error('no pod to delete');
    const deleted = Date.now();
    await kube.kubectl([
      'delete',
      'pod',
      victim.metadata.name,
      '-n',
      NS,
      '--wait=true',
      '--timeout=180s',
    ]);
    const pods = await kube.readyPods(3, 180_000);
    const back = pods.find((p) => p.metadata.name === victim.metadata.name);
    expect(back?.metadata.uid).not.toBe(victim.metadata.uid);
    figures.add(`deleted pod Ready again in ${String(Date.now() - deleted)} ms`);
    await eventually(
      'every replica current',
      async () => {
        const info = await jsm.streams.info(STREAM).catch(() => undefined);
        const replicas = info?.cluster?.replicas ?? [];
        return info?.state.messages === MESSAGES &&
          replicas.length === 2 &&
          replicas.every((r) => r.current)
          ? true
          : undefined;
      },
      90_000,
    );
    // Its own volume kept the data: the server reports the stream's messages from its store.
    const res = await fetch(`http://${back?.status.podIP ?? ''}:8222/jsz?streams=true`, {
      signal: AbortSignal.timeout(3_000),
    });
    const view = (await res.json()) as { messages?: number };
    expect(view.messages).toBe(MESSAGES);
    expect(await streamMessages()).toHaveLength(MESSAGES);
  }, 400_000);

  it('carries a publish/consume load through the Service (figures, not assertions)', async () => {
    const url = (await getNats())?.status?.url ?? '';
    const pub = await connect({ servers: url });
    const sub = await connect({ servers: url });
    const count = 50_000;
    const payload = new Uint8Array(128);
    const probe = new Uint8Array(1);
    let received = 0;
    let probed = false;
    const done = new Promise<void>((resolve) => {
      sub.subscribe('bench.core', {
        callback: (_error, message) => {
          if (message.data.length === probe.length) probed = true;
          else if (++received === count) resolve();
        },
      });
    });
    await sub.flush();
    // The two connections may reach different servers, and core NATS drops what no known
    // interest asks for: the subscription must have crossed the routes (a pod restarted by an
    // earlier test may still be forming them) before the count can be exact.
    await eventually('the subscription known to the publishing server', async () => {
      pub.publish('bench.core', probe);
      await pub.flush();
      await new Promise((resolve) => setTimeout(resolve, 100));
      return probed ? true : undefined;
    });
    const started = Date.now();
    for (let i = 0; i < count; i++) pub.publish('bench.core', payload);
    await pub.flush();
    // Bounded: a lost message fails the count below, not the test's timeout.
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([done, new Promise((resolve) => (timer = setTimeout(resolve, 60_000)))]);
    clearTimeout(timer);
    expect(received).toBe(count);
    const coreSeconds = (Date.now() - started) / 1000;
    figures.add(
      `core pub/sub through the Service: ${String(Math.round(count / coreSeconds))} msgs/s (${String(count)} x 128 B)`,
    );

    const js = jetstream(pub);
    const acked = 2_000;
    const jsStarted = Date.now();
    const pending: Promise<unknown>[] = [];
    for (let i = 0; i < acked; i++) {
      pending.push(js.publish(`${STREAM}.bench`, payload));
      if (pending.length >= 100) await Promise.all(pending.splice(0));
    }
    await Promise.all(pending);
    const jsSeconds = (Date.now() - jsStarted) / 1000;
    figures.add(
      `JetStream R3 file publish, acked: ${String(Math.round(acked / jsSeconds))} msgs/s (${String(acked)} x 128 B, 100 in flight)`,
    );
    await pub.close();
    await sub.close();
    // Back to the stream the next test expects.
    await jsm.streams.purge(STREAM, { filter: `${STREAM}.bench` });
  }, 200_000);

  it('routes a ClusterIP Service through kube-proxy, and aggregates the NATS roles into edit and view', async () => {
    const sts = await kube.getJson<{ spec: { selector: { matchLabels: Record<string, string> } } }>(
      ['statefulset', NAME, '-n', NS],
    );
    const file = join(tmpdir(), `nats-clusterip-${String(process.pid)}.json`);
    writeFileSync(
      file,
      JSON.stringify({
        apiVersion: 'v1',
        kind: 'Service',
        metadata: { name: 'nats-clusterip', namespace: NS },
        spec: {
          type: 'ClusterIP',
          selector: sts?.spec.selector.matchLabels,
          ports: [{ name: 'client', port: 4222, targetPort: 4222 }],
        },
      }),
    );
    await kube.kubectl(['apply', '-f', file]);
    rmSync(file);
    const service = await kube.getJson<{ spec: { clusterIP: string } }>([
      'service',
      'nats-clusterip',
      '-n',
      NS,
    ]);
    const clusterIp = service?.spec.clusterIP ?? '';
    expect(clusterIp.startsWith('10.96.0.')).toBe(true);
    const viaProxy = await retrying(
      () => connect({ servers: `nats://${clusterIp}:4222`, reconnect: false, timeout: 2_000 }),
      30_000,
    );
    expect(viaProxy.info?.cluster).toBe(NAME);
    await viaProxy.close();
    await kube.kubectl(['delete', 'service', 'nats-clusterip', '-n', NS]);

    await kube.kubectl(['apply', '-f', USER_ROLES]);
    for (const role of ['edit', 'view']) {
      await eventually(
        `the NATS rules aggregated into ${role}`,
        async () => {
          const cluster = await kube.getJson<{
            rules?: { apiGroups?: string[]; resources?: string[] }[];
          }>(['clusterrole', role]);
          return cluster?.rules?.some(
            (rule) =>
              rule.apiGroups?.includes('operator.kyma-project.io') === true &&
              rule.resources?.includes('nats') === true,
          ) === true
            ? true
            : undefined;
        },
        30_000,
      );
    }
  }, 120_000);

  it('blocks deletion while a customer stream exists, then deletes, removes the claims, and the namespace goes', async () => {
    await kube.kubectl(['delete', 'nats', NAME, '-n', NS, '--wait=false']);
    const blocked = await natsWhere(
      'deletion blocked',
      (n) =>
        n.status?.state === 'Warning' &&
        n.status.conditions?.some((c) => c.type === 'Deleted') === true,
    );
    expect(blocked.status?.conditions?.find((c) => c.type === 'Deleted')).toMatchObject({
      status: 'False',
      reason: 'DeletionError',
      message: 'Cannot delete NATS cluster as customer stream exists',
    });
    await jsm.streams.delete(STREAM);
    await nc?.close();
    nc = undefined;
    await eventually(
      'the NATS resource gone',
      async () => ((await getNats()) === undefined ? true : undefined),
      120_000,
    );
    await eventually(
      'the claims gone',
      async () => {
        const claims = await kube.getJson<{ items: unknown[] }>(['pvc', '-n', NS]);
        return claims?.items.length === 0 ? true : undefined;
      },
      120_000,
    );
    manager.kill('SIGTERM');
    await exited(manager);
    const deleting = Date.now();
    await kube.kubectl(['delete', 'namespace', NS, '--wait=true', '--timeout=120s']);
    figures.add(`namespace with claims deleted in ${String(Date.now() - deleting)} ms`);
    // Released volumes go back to the pool, wiped.
    await eventually(
      'no released volumes',
      async () => {
        const pvs = await kube.getJson<{ items: { status?: { phase?: string } }[] }>(['pv']);
        return pvs?.items.every((pv) => pv.status?.phase === 'Available') === true
          ? true
          : undefined;
      },
      60_000,
    );
  }, 400_000);

  it('leaves the host as it was when the node owner is killed with SIGKILL', async () => {
    const killed = Date.now();
    owner.child.kill('SIGKILL');
    await exited(owner.child);
    await eventually(
      'the reaper to finish',
      () => {
        try {
          readFileSync(`${owner.dir}/pids`);
          return undefined;
        } catch {
          return true;
        }
      },
      60_000,
    );
    await eventually(
      'no leftovers',
      () => {
        const diffs = hostDifferences(snapshot, nftBefore);
        return diffs.length === 0 ? true : undefined;
      },
      20_000,
    ).catch(() => undefined);
    expect(hostDifferences(snapshot, nftBefore)).toEqual([]);
    figures.add(`host clean ${String(Date.now() - killed)} ms after SIGKILL of the owner`);
  }, 120_000);

  it('npm start runs a node by default: the sample becomes Available with pods Running, and Ctrl-C leaves the host clean', async () => {
    const env: NodeJS.ProcessEnv = { ...process.env };
    delete env.KUBECONFIG;
    delete env.KUBERNETES_SERVICE_HOST;
    delete env.NATS_MANAGER_LOCAL_NODE;
    const started = Date.now();
    const child = spawn(process.execPath, ['--no-warnings', MAIN], {
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    try {
      const kubeconfig = await eventually(
        'the kubeconfig line',
        () => /kubeconfig: (\S+)/.exec(output)?.[1],
        240_000,
      );
      expect(output).toContain('starting with a local node');
      const dir = kubeconfig.replace(/\/[^/]+$/, '');
      const recorded = readSnapshot(dir);
      expect(recorded).toBeDefined();
      const nft = readFileSync(recorded?.nftRulesetFile ?? '', 'utf8');
      const own = new NodeKube(kubeconfig);
      await own.kubectl(['apply', '-f', SAMPLE]);
      await own.kubectl([
        'wait',
        '--for=condition=Available',
        `nats/${NAME}`,
        '-n',
        NS,
        '--timeout=240s',
      ]);
      figures.add(`npm start -> sample Available in ${String(Date.now() - started)} ms`);
      const pods = await own.kubectl([
        'get',
        'pods',
        '-n',
        NS,
        '-o',
        'jsonpath={.items[*].status.phase}',
      ]);
      expect(pods.split(' ').filter((phase) => phase === 'Running')).toHaveLength(3);
      const stopping = Date.now();
      child.kill('SIGINT');
      await exited(child);
      figures.add(`npm start stopped (Ctrl-C) in ${String(Date.now() - stopping)} ms`);
      if (recorded !== undefined) expect(hostDifferences(recorded, nft)).toEqual([]);
      expect(isAlive(child.pid ?? 0)).toBe(false);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  }, 600_000);
});
