// Restarts that keep quorum, on the real node: a 3-server cluster with an R3 file stream under a
// steady publish loop goes through an image change (the manager upgraded to another NATS image:
// the same nats-server build imported under a second name). The manager rolls the pods one at a
// time and the next only after the restarted server is current; the stream keeps accepting
// writes. Figures printed: publishes acknowledged, retried, failed beyond the retry window
// (target zero), the longest wait for an acknowledgement, the rollout's duration and order.
// Also JetStream's health in the status, and an idle converged manager writing nothing.
import { execFile, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { ensureBinaries } from '../../src/localplane/binaries.ts';
import { nodeImages, normalizeImageName, ociArchive } from '../../src/localplane/images.ts';
import { DEFAULT_IMAGES } from '../../src/render/context.ts';
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
  stopProcess,
  type Condition,
  type NodeOwner,
  type Pod,
} from '../support/node-cluster.ts';
import { addFileStream } from '../support/nats-cluster.ts';

const run = promisify(execFile);
const SAMPLE = new URL('../../config/samples/nats.yaml', import.meta.url).pathname;
const STREAM = 'rolling';
/** The same nats-server binary as the default image, under a name no pod used before. */
const ROLLED_IMAGE = 'localhost/nats-manager/nats:2.14.9-rolled';
/** A publish is retried for this long before it counts as failed. */
const RETRY_WINDOW_MS = 5_000;

interface NatsObject {
  metadata: { resourceVersion: string };
  status?: { state?: string; conditions?: Condition[] };
}

let owner: NodeOwner;
let kube: NodeKube;
let manager: ChildProcess | undefined;
let managerOutput = '';
const figures = new Figures('rolling');
let nc: NatsConnection | undefined;

function natsImage(pod: Pod): string {
  return pod.spec.containers.find((c) => c.name === 'nats')?.image ?? '';
}

async function getNats(): Promise<NatsObject | undefined> {
  return kube.getJson<NatsObject>(['nats', NAME, '-n', NS]);
}

function condition(nats: NatsObject | undefined, type: string): Condition | undefined {
  return nats?.status?.conditions?.find((c) => c.type === type);
}

/** The default NATS image's contents under ROLLED_IMAGE, in every worker's containerd. */
async function importRolledImage(): Promise<void> {
  const spec = nodeImages().find((s) => s.name === normalizeImageName(DEFAULT_IMAGES.nats));
  if (spec === undefined) throw new Error('no NATS image spec');
  const bins = await ensureBinaries(['nats-server', 'ctr'], () => undefined);
  const dir = mkdtempSync(join(tmpdir(), 'nats-rolled-image-'));
  try {
    const archive = join(dir, 'image.tar');
    writeFileSync(
      archive,
      ociArchive({ ...spec, name: ROLLED_IMAGE }, readFileSync(bins['nats-server'])),
    );
    for (const worker of owner.node.workers) {
      const socket = join(owner.dir, 'node', worker.name, 'containerd', 'containerd.sock');
      await run(bins.ctr, [
        `--address=${socket}`,
        '--namespace=k8s.io',
        'images',
        'import',
        archive,
      ]);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

beforeAll(async () => {
  const started = Date.now();
  owner = await startNodeOwner();
  kube = new NodeKube(owner.kubeconfig);
  figures.add(`plane with node up in ${String(Date.now() - started)} ms`);
  resolveNodeNames(owner);
  await kube.prepare();
  await importRolledImage();
  manager = await startManagerOnNode(owner, { onOutput: (text) => (managerOutput += text) });
}, 300_000);

afterAll(() => endNodeSuite({ nc, manager, owner, figures }));

describe('restarts that keep quorum, on the node', () => {
  it('rolls an image change one pod at a time while an R3 stream keeps accepting writes', async () => {
    await kube.kubectl(['apply', '-f', SAMPLE]);
    const ready = await eventually(
      'state Ready with JetStream healthy in the status',
      async () => {
        const nats = await getNats();
        return nats?.status?.state === 'Ready' &&
          condition(nats, 'JetStream')?.status === 'True' &&
          condition(nats, 'JetStreamStorage') !== undefined
          ? nats
          : undefined;
      },
      240_000,
    );
    // Point 3 on the node: the servers' own monitoring, in the status.
    expect(condition(ready, 'JetStream')).toMatchObject({
      reason: 'Enabled',
      message: expect.stringMatching(
        /^JetStream is enabled on all 3 server\(s\); the meta leader is eventing-nats-[012]\.$/,
      ) as string,
    });
    expect(condition(ready, 'JetStreamStorage')).toMatchObject({
      status: 'True',
      reason: 'StorageNormal',
      message: expect.stringMatching(
        /^File storage used of each server's 768 MiB store: eventing-nats-0 0%, eventing-nats-1 0%, eventing-nats-2 0%\.$/,
      ) as string,
    });
    figures.add(`JetStream conditions: ${JSON.stringify(ready.status?.conditions?.slice(-2))}`);

    nc = await connectToNats(owner, 'rolling-publisher');
    const jsm = await jetstreamManager(nc);
    await addFileStream(jsm, STREAM, 3, 60_000);
    const js = jetstream(nc, { timeout: 1_500 });

    // An idle converged manager writes nothing: the resource stays as it is over a poll.
    const before = await getNats();
    await new Promise((resolve) => setTimeout(resolve, 35_000));
    const after = await getNats();
    expect(after?.metadata.resourceVersion).toBe(before?.metadata.resourceVersion);
    figures.add('idle for 35 s (one 30 s health poll): the NATS resource was not written');

    const publishing = startPublishLoop(js, `${STREAM}.orders`, RETRY_WINDOW_MS);

    const podsBefore = await kube.natsPods();
    expect(podsBefore.map(natsImage)).toEqual(Array<string>(3).fill(DEFAULT_IMAGES.nats));
    // The upgrade: the manager restarted with another NATS image.
    if (manager !== undefined) await stopProcess(manager);
    const rollStarted = Date.now();
    manager = await startManagerOnNode(owner, {
      env: { NATS_IMAGE: ROLLED_IMAGE },
      onOutput: (text) => (managerOutput += text),
    });

    // Watched while it rolls: never more than one pod down, and the status naming each pod.
    const namedInStatus = new Set<string>();
    const messages: string[] = [];
    let mostDown = 0;
    await eventually(
      'every pod on the new image, Ready, and the resource Ready again',
      async () => {
        const [pods, nats] = await Promise.all([kube.natsPods(), getNats()]);
        const down = 3 - pods.filter(isReady).length;
        mostDown = Math.max(mostDown, down);
        const sts = condition(nats, 'StatefulSet');
        if (sts?.reason === 'Pending' && sts.message.startsWith('Rolling out')) {
          if (messages.at(-1) !== sts.message) messages.push(sts.message);
          for (const match of sts.message.matchAll(
            /(?:restarting|waiting for) (eventing-nats-\d)/g,
          )) {
            namedInStatus.add(match[1] ?? '');
          }
        }
        return pods.length === 3 &&
          pods.every((p) => isReady(p) && natsImage(p) === ROLLED_IMAGE) &&
          nats?.status?.state === 'Ready'
          ? true
          : undefined;
      },
      300_000,
    );
    const rollMs = Date.now() - rollStarted;
    // A few more seconds of writes on the new servers, then stop.
    await new Promise((resolve) => setTimeout(resolve, 3_000));
    const { acked, retried, failed, longestMs } = await publishing.stop();

    const events = await kube.kubectl([
      'get',
      'events',
      '-n',
      NS,
      '--field-selector',
      'reason=Restarting',
      '-o',
      'jsonpath={range .items[*]}{.message}{"\\n"}{end}',
    ]);
    const order = [...events.matchAll(/restarting (eventing-nats-\d)/g)].map((m) => m[1]);
    const reasons = await kube.kubectl([
      'get',
      'events',
      '-n',
      NS,
      '-o',
      'jsonpath={range .items[*]}{.reason}{" "}{end}',
    ]);
    figures.add(`events: ${reasons}`);
    figures.add(
      `manager log on restarts:\n    ${managerOutput
        .split('\n')
        .filter((line) => /restart|"level":"error"/i.test(line))
        .join('\n    ')}`,
    );
    const info = await jsm.streams.info(STREAM);
    figures.add(
      `image change rolled in ${String(rollMs)} ms, order ${order.join(' -> ')}; ` +
        `at most ${String(mostDown)} pod(s) not Ready at once`,
    );
    figures.add(
      `publishes: ${String(acked)} acknowledged, ${String(retried)} needed a retry, ` +
        `${String(failed)} failed beyond the ${String(RETRY_WINDOW_MS)} ms retry window; ` +
        `longest wait for an ack ${String(longestMs)} ms; stream holds ${String(info.state.messages)}`,
    );
    figures.add(`status messages while rolling:\n    ${messages.join('\n    ')}`);

    expect(failed).toBe(0);
    // Every acknowledged message is in the stream, once.
    expect(info.state.messages).toBe(acked);
    expect(mostDown).toBeLessThanOrEqual(1);
    expect([...order].sort()).toEqual(['eventing-nats-0', 'eventing-nats-1', 'eventing-nats-2']);
    expect([...namedInStatus].sort()).toEqual([
      'eventing-nats-0',
      'eventing-nats-1',
      'eventing-nats-2',
    ]);
    await eventually(
      'both followers of the stream current',
      async () => {
        const replicas = (await jsm.streams.info(STREAM)).cluster?.replicas ?? [];
        return replicas.length === 2 && replicas.every((r) => r.current) ? true : undefined;
      },
      60_000,
    );
    expect(condition(await getNats(), 'JetStream')?.status).toBe('True');
  }, 720_000);
});
