// The informer against a real kube-apiserver: selection by label, a connection that goes silent,
// and kube-apiserver restarts, with no event lost on the way.
import * as k8s from '@kubernetes/client-node';
import {
  createInformer,
  type Informer,
  type InformerOptions,
  type RestartReason,
} from '../../src/controller/informer.ts';
import {
  clientFor,
  createObject,
  requestJson,
  resourcePath,
  type KubeObject,
} from '../../src/kube/api.ts';
import { startLocalPlane, type LocalPlane } from '../../src/localplane/plane.ts';
import type { Logger } from '../../src/base/log.ts';
import {
  createTestNamespace,
  deleteTestNamespace,
  eventually,
  testKubeConfig,
} from '../support/kube.ts';
import { kubeConfigVia, startStallProxy, type StallProxy } from '../support/stall-proxy.ts';

const MANAGED_BY = 'app.kubernetes.io/managed-by';
const SELECTOR = `${MANAGED_BY}=nats-manager`;

interface ConfigMap extends KubeObject {
  data?: Record<string, string>;
}

const silent: Logger = { info: () => undefined, error: () => undefined, with: () => silent };

async function createConfigMap(
  kc: k8s.KubeConfig,
  namespace: string,
  name: string,
  options: { managed?: boolean; v?: string } = {},
): Promise<void> {
  await createObject(kc, {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: {
      name,
      namespace,
      ...(options.managed === false ? {} : { labels: { [MANAGED_BY]: 'nats-manager' } }),
    },
    data: { v: options.v ?? '1' },
  });
}

async function patchConfigMap(
  kc: k8s.KubeConfig,
  namespace: string,
  name: string,
  patch: unknown,
): Promise<void> {
  await requestJson(kc, {
    method: 'PATCH',
    path: resourcePath('v1', 'ConfigMap', namespace, name),
    body: patch,
    contentType: 'application/merge-patch+json',
  });
}

async function deleteConfigMap(kc: k8s.KubeConfig, namespace: string, name: string): Promise<void> {
  await requestJson(kc, {
    method: 'DELETE',
    path: resourcePath('v1', 'ConfigMap', namespace, name),
  });
}

interface Recorder {
  readonly informer: Informer<ConfigMap>;
  /** `add a v=1`, `update a v=2`, `delete a`, `restart stalled`, in the order they happened. */
  readonly events: string[];
  /** When each restart was reported, by reason. */
  readonly restartTimes: Partial<Record<RestartReason, number[]>>;
  /** Every label set any handler was given. */
  readonly labelsSeen: (Record<string, string> | undefined)[];
}

function recordingInformer(
  kc: k8s.KubeConfig,
  namespace: string,
  options: Partial<InformerOptions> = {},
  onRestart: (reason: RestartReason) => void = () => undefined,
): Recorder {
  const events: string[] = [];
  const restartTimes: Partial<Record<RestartReason, number[]>> = {};
  const labelsSeen: (Record<string, string> | undefined)[] = [];
  const seen = (cm: ConfigMap): string => {
    labelsSeen.push(cm.metadata.labels as Record<string, string> | undefined);
    return cm.metadata.name ?? '';
  };
  const informer = createInformer<ConfigMap>(
    clientFor(kc),
    {
      path: resourcePath('v1', 'ConfigMap', namespace),
      labelSelector: SELECTOR,
      log: silent,
      ...options,
    },
    {
      add: (cm) => events.push(`add ${seen(cm)} v=${cm.data?.v ?? ''}`),
      update: (cm) => events.push(`update ${seen(cm)} v=${cm.data?.v ?? ''}`),
      delete: (cm) => events.push(`delete ${seen(cm)}`),
      onRestart: (reason) => {
        events.push(`restart ${reason}`);
        (restartTimes[reason] ??= []).push(Date.now());
        onRestart(reason);
      },
    },
  );
  return { informer, events, restartTimes, labelsSeen };
}

function names(informer: Informer<ConfigMap>): string[] {
  return informer
    .list()
    .map((cm) => `${cm.metadata.name ?? ''} v=${cm.data?.v ?? ''}`)
    .sort();
}

async function waitForStore(informer: Informer<ConfigMap>, expected: string[]): Promise<void> {
  const want = [...expected].sort();
  await eventually(
    `store to hold ${want.join(', ')} (has ${names(informer).join(', ')})`,
    () => (JSON.stringify(names(informer)) === JSON.stringify(want) ? true : undefined),
    20_000,
  );
}

const withoutRestarts = (events: string[]): string[] =>
  events.filter((event) => !event.startsWith('restart'));

describe('informer on the shared plane', () => {
  const kc = testKubeConfig();
  let namespace: string;
  const informers: Informer<ConfigMap>[] = [];
  const proxies: StallProxy[] = [];

  beforeEach(async () => {
    namespace = await createTestNamespace(kc, 'informer');
  });

  afterEach(async () => {
    for (const informer of informers.splice(0)) informer.stop();
    for (const proxy of proxies.splice(0)) await proxy.close();
    await deleteTestNamespace(kc, namespace);
  });

  it('lists and watches only the labelled ConfigMaps: unlabelled ones never reach the store', async () => {
    await createConfigMap(kc, namespace, 'a');
    await createConfigMap(kc, namespace, 'plain', { managed: false });
    const { informer, events, labelsSeen } = recordingInformer(kc, namespace);
    informers.push(informer);
    await informer.start();
    expect(names(informer)).toEqual(['a v=1']);

    await createConfigMap(kc, namespace, 'b');
    await createConfigMap(kc, namespace, 'c', { managed: false });
    await patchConfigMap(kc, namespace, 'a', { data: { v: '2' } });
    await patchConfigMap(kc, namespace, 'plain', { data: { v: '2' } });
    // Gaining the label is an add for this selector, losing it a delete.
    await patchConfigMap(kc, namespace, 'c', {
      metadata: { labels: { [MANAGED_BY]: 'nats-manager' } },
    });
    await patchConfigMap(kc, namespace, 'b', { metadata: { labels: { [MANAGED_BY]: null } } });
    await deleteConfigMap(kc, namespace, 'a');
    await deleteConfigMap(kc, namespace, 'plain');

    await waitForStore(informer, ['c v=1']);
    expect(events).toEqual([
      'add a v=1',
      'add b v=1',
      'update a v=2',
      'add c v=1',
      'delete b',
      'delete a',
    ]);
    expect(informer.get(namespace, 'plain')).toBeUndefined();
    // Every object handed out carried the label, even b's delete: for an object leaving the
    // selection the server sends its last state that matched.
    expect(labelsSeen).toHaveLength(events.length);
    expect(labelsSeen.every((labels) => labels?.[MANAGED_BY] === 'nats-manager')).toBe(true);
    expect(informer.restarts()).toEqual({ expired: 0, stalled: 0, failed: 0 });
  });

  it('notices a connection that went silent, reconnects, and misses no event', async () => {
    const stallTimeoutMs = 3_000;
    const proxy = await startStallProxy(kc.getCurrentCluster()?.server ?? '');
    proxies.push(proxy);
    await createConfigMap(kc, namespace, 's1');
    const { informer, events, restartTimes } = recordingInformer(
      kubeConfigVia(kc, proxy.server),
      namespace,
      { stallTimeoutMs },
      // The path heals as soon as the informer has given up on the silent connection.
      (reason) => {
        if (reason === 'stalled') proxy.heal();
      },
    );
    informers.push(informer);
    await informer.start();

    // A healthy watch with nothing to say is never mistaken for a stalled one: the server ends
    // it (timeoutSeconds) before the deadline and it is simply reopened.
    await new Promise((resolve) => setTimeout(resolve, 2 * stallTimeoutMs));
    expect(informer.restarts().stalled).toBe(0);
    await createConfigMap(kc, namespace, 's2');
    await waitForStore(informer, ['s1 v=1', 's2 v=1']);

    const connectionsBefore = proxy.connectionsOpened();
    proxy.stall();
    const stalledAt = Date.now();
    await patchConfigMap(kc, namespace, 's1', { data: { v: '2' } });
    await createConfigMap(kc, namespace, 's3');
    await deleteConfigMap(kc, namespace, 's2');

    await waitForStore(informer, ['s1 v=2', 's3 v=1']);
    const recoveredAfter = Date.now() - stalledAt;
    const detectedAfter = (restartTimes.stalled?.[0] ?? Infinity) - stalledAt;
    process.stderr.write(
      `[informer] stall detected after ${String(detectedAfter)} ms (deadline ${String(stallTimeoutMs)} ms), all events in after ${String(recoveredAfter)} ms\n`,
    );
    // Silence counts from the last byte, which came at most a deadline before the detection.
    expect(detectedAfter).toBeLessThanOrEqual(stallTimeoutMs + 500);
    expect(proxy.connectionsOpened()).toBeGreaterThan(connectionsBefore);
    // Resumed from its last resourceVersion: the watch replays, no relist is needed.
    expect(events.slice(events.indexOf('restart stalled'))).toEqual([
      'restart stalled',
      'update s1 v=2',
      'add s3 v=1',
      'delete s2',
    ]);
    expect(informer.restarts()).toMatchObject({ stalled: 1, expired: 0 });
  });
});

describe('informer across kube-apiserver restarts', () => {
  let plane: LocalPlane;
  let kc: k8s.KubeConfig;
  let namespace: string;
  const informers: Informer<ConfigMap>[] = [];
  const proxies: StallProxy[] = [];

  beforeAll(async () => {
    // A private plane: restarting the shared one would disturb every other suite.
    plane = await startLocalPlane({ controllers: [], log: () => undefined });
    kc = new k8s.KubeConfig();
    kc.loadFromFile(plane.kubeconfigPath);
  });

  beforeEach(async () => {
    namespace = await createTestNamespace(kc, 'informer-restart');
  });

  afterEach(async () => {
    for (const informer of informers.splice(0)) informer.stop();
    for (const proxy of proxies.splice(0)) await proxy.close();
  });

  afterAll(async () => {
    await plane.stop();
  });

  it('catches up after a restart with what changed while its watch was broken: relist, then add, update and delete', async () => {
    const proxy = await startStallProxy(plane.server);
    proxies.push(proxy);
    for (const name of ['a', 'b', 'c']) await createConfigMap(kc, namespace, name);
    const { informer, events } = recordingInformer(kubeConfigVia(kc, proxy.server), namespace, {
      backoff: { initialMs: 200, maxMs: 2_000 },
    });
    informers.push(informer);
    await informer.start();
    events.length = 0;

    proxy.refuse(true);
    await patchConfigMap(kc, namespace, 'a', { data: { v: '2' } });
    await deleteConfigMap(kc, namespace, 'b');
    await createConfigMap(kc, namespace, 'd');
    await createConfigMap(kc, namespace, 'plain', { managed: false });
    await plane.restartApiServer();
    await createConfigMap(kc, namespace, 'e');
    await deleteConfigMap(kc, namespace, 'c');
    proxy.refuse(false);
    const reopenedAt = Date.now();

    await waitForStore(informer, ['a v=2', 'd v=1', 'e v=1']);
    process.stderr.write(
      `[informer] after the restart, all missed changes in ${String(Date.now() - reopenedAt)} ms from the path reopening\n`,
    );
    // The restarted server's watch cache starts after our resourceVersion: 410, then a relist
    // whose differences arrive as ordinary events.
    expect(informer.restarts().expired).toBeGreaterThanOrEqual(1);
    expect(withoutRestarts(events).sort()).toEqual(
      ['update a v=2', 'delete b', 'add d v=1', 'add e v=1', 'delete c'].sort(),
    );
  });

  it('watches again soon after the API server is back, with default settings', async () => {
    await createConfigMap(kc, namespace, 'before');
    const { informer, events } = recordingInformer(kc, namespace);
    informers.push(informer);
    await informer.start();

    const restartStarted = Date.now();
    await plane.restartApiServer();
    const readyAt = Date.now();
    await createConfigMap(kc, namespace, 'after');
    await eventually(
      'the first change after the restart',
      () => informer.get(namespace, 'after'),
      30_000,
    );
    const seenAt = Date.now();
    process.stderr.write(
      `[informer] kube-apiserver down and back in ${String(readyAt - restartStarted)} ms; first change after it seen ${String(seenAt - readyAt)} ms after ready\n`,
    );
    expect(events.at(-1)).toBe('add after v=1');
    expect(withoutRestarts(events)).toEqual(['add before v=1', 'add after v=1']);
  });
});
