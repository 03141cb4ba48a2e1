// Storage growth on the real node: a 3-server cluster with an R3 file stream under a steady
// publish loop gets its fileStorage.size raised from 1Gi to 8Gi. The node's StorageClass allows
// volume expansion, and its volume pool resizes a grown claim's local volume as a CSI driver's
// resizer would (src/localplane/node.ts). The manager raises each claim, deletes the StatefulSet
// leaving its pods, creates it again with the 8Gi template, and max_file_store follows once the
// volumes have grown. Asserted: the claims ask for and hold 8Gi, the same pods (uids, no
// container restart) serve throughout, the StatefulSet is a new one with the new template, every
// server's /varz reports the new max_file_store, no acknowledged message is lost, a meta leader
// is known at every sample, and the status names each step. Figures printed: the steps, the
// growth's duration, publishes acknowledged/retried/failed.
import type { ChildProcess } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { maxFileStoreBytes } from '../../src/render/guards.ts';
import { eventually } from '../support/kube.ts';
import {
  connectToNats,
  endNodeSuite,
  Figures,
  isReady,
  NAME,
  NodeKube,
  NS,
  resolveNodeNames,
  startManagerOnNode,
  startNodeOwner,
  startPublishLoop,
  type Condition,
  type NodeOwner,
  type Pod,
} from '../support/node-cluster.ts';
import { addFileStream } from '../support/nats-cluster.ts';

const STREAM = 'growing';
const GiB = 1024n ** 3n;
/** Larger than the pool's 5Gi local volumes, so that each one has to be resized. */
const GROWN = '8Gi';
/** A publish is retried for this long before it counts as failed. */
const RETRY_WINDOW_MS = 5_000;

interface Claim {
  metadata: { name: string };
  spec: { resources: { requests: { storage: string } } };
  status: { phase?: string; capacity?: { storage?: string } };
}

interface StatefulSet {
  metadata: { uid: string };
  spec: {
    selector: { matchLabels: Record<string, string> };
    volumeClaimTemplates: { spec: { resources: { requests: { storage: string } } } }[];
  };
}

interface NatsObject {
  status?: { state?: string; conditions?: Condition[] };
}

let owner: NodeOwner;
let kube: NodeKube;
let manager: ChildProcess | undefined;
let managerOutput = '';
const figures = new Figures('storage-growth');
let nc: NatsConnection | undefined;

async function statefulSet(): Promise<StatefulSet | undefined> {
  return kube.getJson<StatefulSet>(['statefulset', NAME, '-n', NS]);
}

function selectorOf(sts: StatefulSet): string {
  return Object.entries(sts.spec.selector.matchLabels)
    .map(([key, value]) => `${key}=${value}`)
    .join(',');
}

/** The pods and claims by the labels the first StatefulSet selected (they outlive it). */
async function natsPods(selector: string): Promise<Pod[]> {
  return (await kube.getJson<{ items: Pod[] }>(['pods', '-n', NS, '-l', selector]))?.items ?? [];
}

async function natsClaims(selector: string): Promise<Claim[]> {
  return (await kube.getJson<{ items: Claim[] }>(['pvc', '-n', NS, '-l', selector]))?.items ?? [];
}

function restarts(pod: Pod): number {
  return (pod.status.containerStatuses ?? []).reduce((sum, c) => sum + c.restartCount, 0);
}

async function getNats(): Promise<NatsObject | undefined> {
  return kube.getJson<NatsObject>(['nats', NAME, '-n', NS]);
}

function condition(nats: NatsObject | undefined, type: string): Condition | undefined {
  return nats?.status?.conditions?.find((c) => c.type === type);
}

async function monitor<T>(pod: Pod, path: string): Promise<T | undefined> {
  if (pod.status.podIP === undefined) return undefined;
  try {
    const res = await fetch(`http://${pod.status.podIP}:8222${path}`, {
      signal: AbortSignal.timeout(2_000),
    });
    return res.ok ? ((await res.json()) as T) : undefined;
  } catch {
    return undefined;
  }
}

/** Each server's max_file_store as it reports it. */
async function maxStorage(pods: readonly Pod[]): Promise<(number | undefined)[]> {
  return Promise.all(
    pods.map(async (pod) => {
      const varz = await monitor<{ jetstream?: { config?: { max_storage?: number } } }>(
        pod,
        '/varz',
      );
      return varz?.jetstream?.config?.max_storage;
    }),
  );
}

beforeAll(async () => {
  const started = Date.now();
  owner = await startNodeOwner();
  kube = new NodeKube(owner.kubeconfig);
  figures.add(`plane with node up in ${String(Date.now() - started)} ms`);
  resolveNodeNames(owner);
  await kube.prepare();
  manager = await startManagerOnNode(owner, { onOutput: (text) => (managerOutput += text) });
}, 300_000);

afterAll(() => endNodeSuite({ nc, manager, owner, figures }));

describe('storage growth, on the node', () => {
  it('grows the claims of a 3-server cluster from 1Gi to 8Gi around its running pods', async () => {
    const manifest = JSON.stringify({
      apiVersion: 'operator.kyma-project.io/v1alpha1',
      kind: 'NATS',
      metadata: { name: NAME, namespace: NS },
      spec: { cluster: { size: 3 }, jetStream: { fileStorage: { size: '1Gi' } } },
    });
    await kube.kubectl(['apply', '-f', '-'], manifest);
    // What the resource and its pods looked like last, for a wait that times out.
    let last = 'no NATS resource read';
    await eventually(
      'state Ready with JetStream enabled',
      async () => {
        const nats = await getNats();
        const conditions = (nats?.status?.conditions ?? [])
          .map((c) => `${c.type}=${c.status} (${c.reason}: ${c.message})`)
          .join('; ');
        last = `state ${String(nats?.status?.state)}; ${conditions}`;
        return nats?.status?.state === 'Ready' && condition(nats, 'JetStream')?.status === 'True'
          ? true
          : undefined;
      },
      240_000,
    ).catch(async (error: unknown) => {
      const pods = await kube.getJson<{ items: Pod[] }>(['pods', '-n', NS]);
      const phases = (pods?.items ?? [])
        .map((pod) => `${pod.metadata.name} ${String(pod.status.phase)}`)
        .join(', ');
      const errors = managerOutput.split('\n').filter((line) => line.includes('"level":"error"'));
      throw new Error(
        `${(error as Error).message}; last: ${last}; pods: ${phases}; manager errors:\n` +
          errors.slice(-10).join('\n'),
      );
    });
    const stsBefore = await statefulSet();
    if (stsBefore === undefined) throw new Error('no StatefulSet');
    const selector = selectorOf(stsBefore);
    const podsBefore = await natsPods(selector);
    expect(podsBefore).toHaveLength(3);
    expect(await maxStorage(podsBefore)).toEqual(
      Array<number>(3).fill(Number(maxFileStoreBytes(GiB))),
    );

    nc = await connectToNats(owner, 'growth-publisher');
    const jsm = await jetstreamManager(nc);
    await addFileStream(jsm, STREAM, 3, 60_000);
    const js = jetstream(nc, { timeout: 1_500 });

    const publishing = startPublishLoop(js, `${STREAM}.orders`, RETRY_WINDOW_MS);
    await sleep(2_000);

    const grownBytes = Number(maxFileStoreBytes(8n * GiB));
    const growStarted = Date.now();
    await kube.patchNatsSpec({ jetStream: { fileStorage: { size: GROWN } } });

    // Watched while it grows: the status steps, the pods, a meta leader on every sample.
    const messages: string[] = [];
    let samples = 0;
    let withoutLeader = 0;
    let mostDown = 0;
    const stores = new Set<string>();
    await eventually(
      'every claim at 8Gi, a new StatefulSet, max_file_store grown and the resource Ready',
      async () => {
        const [nats, pods, claims, sts] = await Promise.all([
          getNats(),
          natsPods(selector),
          natsClaims(selector),
          statefulSet(),
        ]);
        const message = condition(nats, 'StatefulSet')?.message ?? '';
        if (message.startsWith('Growing the volume claims') && messages.at(-1) !== message) {
          messages.push(message);
        }
        mostDown = Math.max(mostDown, 3 - pods.filter(isReady).length);
        const [jsz, store] = await Promise.all([
          Promise.all(
            pods.map((pod) => monitor<{ meta_cluster?: { leader?: string } }>(pod, '/jsz')),
          ),
          maxStorage(pods),
        ]);
        samples++;
        if (!jsz.some((j) => (j?.meta_cluster?.leader ?? '') !== '')) withoutLeader++;
        stores.add(store.join(','));
        const done =
          nats?.status?.state === 'Ready' &&
          claims.length === 3 &&
          claims.every(
            (c) =>
              c.spec.resources.requests.storage === GROWN && c.status.capacity?.storage === GROWN,
          ) &&
          sts !== undefined &&
          sts.metadata.uid !== stsBefore.metadata.uid &&
          sts.spec.volumeClaimTemplates[0]?.spec.resources.requests.storage === GROWN &&
          store.every((s) => s === grownBytes);
        return done ? { pods, claims, sts } : undefined;
      },
      150_000,
    );
    const growMs = Date.now() - growStarted;
    await sleep(2_000);
    const { acked, retried, failed, longestMs } = await publishing.stop();

    const podsAfter = await natsPods(selector);
    const events = await kube.kubectl([
      'get',
      'events',
      '-n',
      NS,
      '-o',
      'jsonpath={range .items[*]}{.reason}{": "}{.message}{"\\n"}{end}',
    ]);
    const info = await jsm.streams.info(STREAM);
    figures.add(`growth 1Gi -> ${GROWN} done in ${String(growMs)} ms (patch to every check true)`);
    figures.add(`status steps:\n    ${messages.join('\n    ')}`);
    figures.add(`max_file_store per server over the samples: ${[...stores].join(' | ')}`);
    figures.add(
      `${String(samples)} samples, ${String(withoutLeader)} without a meta leader; at most ` +
        `${String(mostDown)} pod(s) not Ready at once`,
    );
    figures.add(
      `publishes: ${String(acked)} acknowledged, ${String(retried)} needed a retry, ` +
        `${String(failed)} failed beyond the ${String(RETRY_WINDOW_MS)} ms retry window; ` +
        `longest wait for an ack ${String(longestMs)} ms; stream holds ${String(info.state.messages)}`,
    );
    figures.add(
      `events:\n    ${events
        .split('\n')
        .filter((line) => /Recreat|Updated|StorageGrowth/.test(line))
        .join('\n    ')}`,
    );
    figures.add(
      `manager log:\n    ${managerOutput
        .split('\n')
        .filter((line) => /volume claim|leaving its pods|"level":"error"/.test(line))
        .join('\n    ')}`,
    );

    // The same pods served throughout: no pod replaced, no container restarted.
    expect(podsAfter.map((p) => p.metadata.uid).sort()).toEqual(
      podsBefore.map((p) => p.metadata.uid).sort(),
    );
    expect(podsAfter.map(restarts)).toEqual(podsBefore.map(restarts));
    expect(mostDown).toBe(0);
    // No quorum loss, no lost acknowledged message.
    expect(withoutLeader).toBe(0);
    expect(failed).toBe(0);
    expect(info.state.messages).toBe(acked);
    // The status said what happened at each step; the events record the re-creation.
    expect(messages.length).toBeGreaterThan(0);
    expect(messages.every((m) => m.startsWith(`Growing the volume claims to ${GROWN}: `))).toBe(
      true,
    );
    expect(events).toContain('Recreating: Deleting StatefulSet eventing-nats leaving its pods');
    expect(events).toContain('Recreated: Created StatefulSet eventing-nats again');
    expect(condition(await getNats(), 'JetStream')?.status).toBe('True');
  }, 420_000);
});
