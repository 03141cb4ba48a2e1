// Faults on the real node under a steady publish loop to an R3 file stream: a NATS pod killed
// (SIGKILL of its server) while a rolling change is under way, and the node of the stream's
// leader restarted as a reboot would (its containers killed, containerd and the kubelet started
// again). Required each time: the rollout or the pods finish, the status is Ready with JetStream
// healthy again, and every acknowledged message is in the stream. Figures printed: how long
// recovery took, the states the status went through, publishes that failed beyond the retry
// window (NATS's own availability while a server is down, printed, not required).
import { execFile, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { jetstream, jetstreamManager, type JetStreamClient } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { ensureBinaries } from '../../src/localplane/binaries.ts';
import { eventually } from '../support/kube.ts';
import { addFileStream, replayStream } from '../support/nats-cluster.ts';
import {
  connectToNats,
  Figures,
  isReady,
  NAME,
  NodeKube,
  NS,
  resolveNodeNames,
  restartWorker,
  startManagerOnNode,
  startNodeOwner,
  startPublishLoop,
  stopNodeOwner,
  stopProcess,
  type Condition,
  type NodeOwner,
  type Pod,
  type PublishCounts,
} from '../support/node-cluster.ts';

const run = promisify(execFile);
const SAMPLE = new URL('../../config/samples/nats.yaml', import.meta.url).pathname;
const STREAM = 'faults';
const RETRY_WINDOW_MS = 5_000;

interface NatsObject {
  status?: { state?: string; conditions?: Condition[] };
}

let owner: NodeOwner | undefined;
let kube: NodeKube;
let manager: ChildProcess | undefined;
let managerOutput = '';
let nc: NatsConnection | undefined;
let js: JetStreamClient;
const figures = new Figures('node-faults');

async function getNats(): Promise<NatsObject | undefined> {
  return kube.getJson<NatsObject>(['nats', NAME, '-n', NS]);
}

function condition(nats: NatsObject | undefined, type: string): Condition | undefined {
  return nats?.status?.conditions?.find((c) => c.type === type);
}

function natsRestarts(pod: Pod): number {
  return pod.status.containerStatuses?.find((c) => c.name === 'nats')?.restartCount ?? 0;
}

/** Ready with JetStream healthy: what recovery means for the status. */
function recovered(nats: NatsObject | undefined): boolean {
  return nats?.status?.state === 'Ready' && condition(nats, 'JetStream')?.status === 'True';
}

/** Each state and JetStream condition the status shows while `until` does not hold. */
async function watchStatus<T>(
  what: string,
  until: (nats: NatsObject | undefined, pods: Pod[]) => Promise<T | undefined> | T | undefined,
  timeoutMs: number,
): Promise<{ result: T; seen: string[] }> {
  const seen: string[] = [];
  const result = await eventually(
    what,
    async () => {
      const [nats, pods] = await Promise.all([getNats(), kube.natsPods()]);
      const jetStream = condition(nats, 'JetStream');
      const line = `${nats?.status?.state ?? '-'} / JetStream ${jetStream?.status ?? '-'} (${jetStream?.reason ?? ''})`;
      if (seen.at(-1) !== line) seen.push(line);
      return until(nats, pods);
    },
    timeoutMs,
  );
  return { result, seen };
}

/** Every acknowledged message is in the stream, and no message twice. */
async function expectAllAcknowledgedStored(counts: PublishCounts, label: string): Promise<void> {
  if (nc === undefined) throw new Error('not connected');
  const info = await (await jetstreamManager(nc)).streams.info(STREAM);
  const stored = await replayStream(js, STREAM, info.state.messages, 60_000);
  const storedSet = new Set(stored);
  const missing = counts.ackedBodies.filter((body) => !storedSet.has(body));
  figures.add(
    `${label}: ${String(counts.acked)} acknowledged, ${String(counts.retried)} after a retry, ` +
      `${String(counts.failed)} failed beyond the ${String(RETRY_WINDOW_MS)} ms window; longest ` +
      `wait ${String(counts.longestMs)} ms; ${String(missing.length)} acknowledged missing; ` +
      `stream holds ${String(info.state.messages)}, read back ${String(stored.length)}`,
  );
  expect(stored).toHaveLength(info.state.messages);
  expect(missing).toEqual([]);
  expect(storedSet.size).toBe(stored.length);
  expect(counts.acked).toBeGreaterThan(0);
}

/** SIGKILL of the pod's nats-server, through its node's containerd: no lame duck, no preStop. */
async function killNatsServer(pod: Pod): Promise<void> {
  if (owner === undefined) throw new Error('no plane');
  const id = pod.status.containerStatuses
    ?.find((c) => c.name === 'nats')
    ?.containerID?.replace(/^containerd:\/\//, '');
  const worker = pod.spec.nodeName;
  if (id === undefined || worker === undefined) throw new Error(`${pod.metadata.name} not running`);
  const { ctr } = await ensureBinaries(['ctr'], () => undefined);
  const socket = join(owner.dir, 'node', worker, 'containerd', 'containerd.sock');
  await run(ctr, [
    `--address=${socket}`,
    '--namespace=k8s.io',
    'tasks',
    'kill',
    '--signal',
    'SIGKILL',
    id,
  ]);
}

beforeAll(async () => {
  const started = Date.now();
  owner = await startNodeOwner();
  kube = new NodeKube(owner.kubeconfig);
  figures.add(`plane with node up in ${String(Date.now() - started)} ms`);
  resolveNodeNames(owner);
  await kube.prepare();
  manager = await startManagerOnNode(owner, { onOutput: (text) => (managerOutput += text) });
  await kube.kubectl(['apply', '-f', SAMPLE]);
  await eventually(
    'state Ready with JetStream healthy',
    async () => recovered(await getNats()) || undefined,
    240_000,
  );
  nc = await connectToNats(owner, 'faults-publisher');
  await addFileStream(await jetstreamManager(nc), STREAM, 3, 60_000);
  js = jetstream(nc, { timeout: 1_500 });
}, 360_000);

afterAll(async () => {
  await nc?.close().catch(() => undefined);
  if (manager !== undefined) await stopProcess(manager, 5_000);
  if (owner !== undefined) await stopNodeOwner(owner, 30_000);
  figures.add(
    `manager errors:\n    ${managerOutput
      .split('\n')
      .filter((line) => line.includes('"level":"error"'))
      .map((line) => line.slice(0, 300))
      .join('\n    ')}`,
  );
  figures.print();
}, 60_000);

describe('faults on the node', () => {
  it('a NATS pod killed during a rolling change: the rollout finishes and the status recovers', async () => {
    const publishing = startPublishLoop(js, `${STREAM}.rolling`, RETRY_WINDOW_MS);
    const started = Date.now();
    // A new CPU request changes the pod template: the manager rolls the pods one at a time.
    await kube.patchNatsSpec({
      resources: {
        limits: { cpu: '500m', memory: '1Gi' },
        requests: { cpu: '41m', memory: '64Mi' },
      },
    });
    // Once the first pod is being replaced, another one's server is killed outright.
    const { result: victim } = await watchStatus(
      'the rollout to replace its first pod',
      (_nats, pods) => {
        const replacing = pods.some((p) => !isReady(p));
        const other = pods.find(isReady);
        return replacing && pods.length === 3 ? other : undefined;
      },
      120_000,
    );
    const restartsBefore = natsRestarts(victim);
    await killNatsServer(victim);
    const killedAt = Date.now();
    figures.add(
      `killed the server of ${victim.metadata.name} ${String(killedAt - started)} ms into the rollout`,
    );

    const { result: pods, seen } = await watchStatus(
      'every pod at the new revision, Ready, and the resource recovered',
      async (nats, current) => {
        const sts = await kube.getJson<{ status?: { updateRevision?: string } }>([
          'statefulset',
          NAME,
          '-n',
          NS,
        ]);
        const revision = sts?.status?.updateRevision;
        const done =
          current.length === 3 &&
          current.every(
            (p) => isReady(p) && p.metadata.labels?.['controller-revision-hash'] === revision,
          ) &&
          recovered(nats);
        return done ? current : undefined;
      },
      400_000,
    );
    figures.add(
      `rollout with a killed server finished ${String(Date.now() - started)} ms after the ` +
        `change (${String(Date.now() - killedAt)} ms after the kill); status: ${seen.join(' -> ')}`,
    );
    await new Promise((resolve) => setTimeout(resolve, 2_000));
    await expectAllAcknowledgedStored(await publishing.stop(), 'rollout with a kill');

    // The killed server came back: restarted in place, or replaced by the rollout afterwards.
    const after = pods.find((p) => p.metadata.name === victim.metadata.name);
    expect(after).toBeDefined();
    if (after?.metadata.uid === victim.metadata.uid) {
      expect(natsRestarts(after)).toBeGreaterThan(restartsBefore);
    }
    expect(pods.every((p) => p.spec.containers.length > 0)).toBe(true);
  }, 600_000);

  it('the node of the stream leader restarts: its pod comes back and the status recovers', async () => {
    if (owner === undefined) throw new Error('no plane');
    if (nc === undefined) throw new Error('not connected');
    const jsm = await jetstreamManager(nc);
    const leader = (await jsm.streams.info(STREAM)).cluster?.leader;
    const pods = await kube.natsPods();
    const leaderPod = pods.find((p) => p.metadata.name === leader);
    const worker = leaderPod?.spec.nodeName;
    if (leaderPod === undefined || worker === undefined) {
      throw new Error(`no pod for the stream leader ${String(leader)}`);
    }
    const publishing = startPublishLoop(js, `${STREAM}.reboot`, RETRY_WINDOW_MS);
    const onWorker = pods.filter((p) => p.spec.nodeName === worker);
    const restart = await restartWorker(owner, worker);
    figures.add(
      `restarted ${worker} (${onWorker.map((p) => p.metadata.name).join(', ')} on it): ` +
        `${String(restart.containersKilled)} containers killed, kubelet serving again after ` +
        `${String(restart.downMs)} ms`,
    );
    const restartedAt = Date.now();
    const { result: back, seen } = await watchStatus(
      'the pods of the restarted node running again and the resource recovered',
      (nats, current) => {
        const again = onWorker.every((before) => {
          const now = current.find((p) => p.metadata.name === before.metadata.name);
          return now !== undefined && isReady(now) && natsRestarts(now) > natsRestarts(before);
        });
        return current.length === 3 && current.every(isReady) && again && recovered(nats)
          ? current
          : undefined;
      },
      300_000,
    );
    figures.add(
      `recovered ${String(Date.now() - restartedAt)} ms after the node was back; status: ` +
        seen.join(' -> '),
    );
    await new Promise((resolve) => setTimeout(resolve, 2_000));
    await expectAllAcknowledgedStored(await publishing.stop(), 'node restart');

    expect(restart.containersKilled).toBeGreaterThan(0);
    // The same pods, restarted where they were: the node's pods were not replaced.
    for (const before of onWorker) {
      expect(back.find((p) => p.metadata.name === before.metadata.name)?.metadata.uid).toBe(
        before.metadata.uid,
      );
    }
    await eventually(
      'both followers of the stream current',
      async () => {
        const replicas = (await jsm.streams.info(STREAM)).cluster?.replicas ?? [];
        return replicas.length === 2 && replicas.every((r) => r.current) ? true : undefined;
      },
      120_000,
    );
  }, 600_000);
});
