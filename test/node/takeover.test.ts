// Taking over a running cluster of the Go NATS manager, on a real node. The state it leaves is
// built first, without our manager: the NATS resource with its finalizer and status, its children
// as it renders them (test/support/go-manager-shape.ts, from the reference facts) server-side
// applied with its field manager `nats-manager` and force, as it applies them, three NATS pods
// running with an R3 stream holding messages. Then our manager starts, and while it takes over a
// sampler watches the headless Service's endpoints and resolves every route name through the
// cluster DNS, and a publisher keeps writing to the stream.
import type { ChildProcess } from 'node:child_process';
import { Resolver } from 'node:dns/promises';
import * as k8s from '@kubernetes/client-node';
import {
  jetstream,
  jetstreamManager,
  StorageType,
  type JetStreamClient,
  type JetStreamManager,
} from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { isRecord } from '../../src/base/json.ts';
import type { KubeObject } from '../../src/base/object.ts';
import { FIELD_MANAGER } from '../../src/controller/takeover.ts';
import { clientFor } from '../../src/kube/api.ts';
import type { KubeClient } from '../../src/kube/client.ts';
import { DEFAULT_IMAGES } from '../../src/render/context.ts';
import { natsRenderInput, renderNats } from '../../src/render/render.ts';
import { systemAccountPasswordFrom } from '../../src/render/secret.ts';
import { GO_FIELD_MANAGER, GO_FINALIZER, goManagerChildren } from '../support/go-manager-shape.ts';
import { eventually } from '../support/kube.ts';
import {
  Figures,
  NAME,
  NodeKube,
  NS,
  isReady,
  resolveNodeNames,
  startManagerOnNode,
  startNodeOwner,
  stopNodeOwner,
  type NodeOwner,
  type Pod,
} from '../support/node-cluster.ts';

const SIZE = 3;
const STREAM = 'orders';
const MESSAGES = 200;
const SELECTOR =
  'app.kubernetes.io/instance=eventing,app.kubernetes.io/name=nats,kyma-project.io/dashboard=eventing';
/** A publish is retried for this long before it counts as failed. */
const RETRY_WINDOW_MS = 5_000;

interface ManagedEntry {
  manager?: string;
  operation?: string;
  subresource?: string;
}

let owner: NodeOwner;
let kube: NodeKube;
let kc: k8s.KubeConfig;
let client: KubeClient;
let manager: ChildProcess | undefined;
let managerOutput = '';
const figures = new Figures('takeover');
let nc: NatsConnection | undefined;
let jsm: JetStreamManager;
let js: JetStreamClient;
let goChildren: KubeObject[];

async function pods(): Promise<Pod[]> {
  const list = await client.list<Pod>(`/api/v1/namespaces/${NS}/pods`, {
    labelSelector: SELECTOR,
    timeoutMs: 5_000,
  });
  return list.items ?? [];
}

async function natsResource(): Promise<KubeObject | undefined> {
  return client.get({
    apiVersion: 'operator.kyma-project.io/v1alpha1',
    kind: 'NATS',
    namespace: NS,
    name: NAME,
  });
}

function childRef(object: KubeObject): {
  apiVersion: string;
  kind: string;
  namespace: string;
  name: string;
} {
  return {
    apiVersion: object.apiVersion,
    kind: object.kind,
    namespace: NS,
    name: object.metadata.name ?? '',
  };
}

/** Paths where two JSON values differ (`a` the Go manager's, `b` ours), for the report. */
function differences(a: unknown, b: unknown, path = ''): string[] {
  if (isRecord(a) && isRecord(b)) {
    const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])].sort();
    return keys.flatMap((key) => differences(a[key], b[key], path === '' ? key : `${path}.${key}`));
  }
  if (Array.isArray(a) && Array.isArray(b) && a.length === b.length) {
    return a.flatMap((value, i) => differences(value, b[i], `${path}[${String(i)}]`));
  }
  if (Array.isArray(a) && Array.isArray(b) && path.endsWith('.env')) {
    // Env lists are keyed by name: name the variables that differ.
    const named = (list: unknown[]): Map<string, string> =>
      new Map(list.map((e) => [isRecord(e) ? String(e.name) : '', JSON.stringify(e)]));
    const [x, y] = [named(a), named(b)];
    const names = [...new Set([...x.keys(), ...y.keys()])].filter((n) => x.get(n) !== y.get(n));
    return names.map((n) => `${path}[name=${n}]`);
  }
  return JSON.stringify(a) === JSON.stringify(b) ? [] : [path];
}

function goChild(kind: string): KubeObject {
  const child = goChildren.find((c) => c.kind === kind);
  if (child === undefined) throw new Error(`no ${kind} among the Go manager's children`);
  return child;
}

interface StatefulSetView {
  apiVersion: string;
  kind: string;
  metadata: { generation?: number; managedFields?: unknown };
  spec: { template: unknown };
  status?: {
    observedGeneration?: number;
    updatedReplicas?: number;
    readyReplicas?: number;
    currentRevision?: string;
    updateRevision?: string;
  };
}

beforeAll(async () => {
  const started = Date.now();
  owner = await startNodeOwner();
  kube = new NodeKube(owner.kubeconfig);
  figures.add(`plane with node up in ${String(Date.now() - started)} ms`);
  resolveNodeNames(owner);
  kc = new k8s.KubeConfig();
  kc.loadFromFile(owner.kubeconfig);
  client = clientFor(kc);
  await kube.prepare();

  // The Go manager's state, built as it builds it: the resource, its finalizer, then every
  // child by server-side apply as `nats-manager` with force.
  const created = await client.create({
    apiVersion: 'operator.kyma-project.io/v1alpha1',
    kind: 'NATS',
    metadata: { name: NAME, namespace: NS },
    spec: {
      cluster: { size: SIZE },
      jetStream: { memStorage: { enabled: true, size: '1Gi' }, fileStorage: { size: '1Gi' } },
    },
  });
  await client.patch(
    childRef(created),
    { metadata: { finalizers: [GO_FINALIZER] } },
    { type: 'merge', fieldManager: GO_FIELD_MANAGER },
  );
  goChildren = goManagerChildren({
    name: NAME,
    namespace: NS,
    uid: String(created.metadata.uid),
    images: DEFAULT_IMAGES,
    clusterDomain: owner.node.clusterDomain,
    password: 'G'.repeat(20) + 'o'.repeat(20) + 'M'.repeat(20),
    size: SIZE,
  });
  for (const child of goChildren) {
    await client.apply(child, { fieldManager: GO_FIELD_MANAGER, force: true });
  }
  const ready = await eventually(
    `${String(SIZE)} Go-manager pods Ready`,
    async () => {
      const list = await pods();
      return list.length === SIZE && list.every(isReady) ? list : undefined;
    },
    240_000,
  );
  figures.add(
    `Go-manager-shaped cluster: ${String(SIZE)} pods Ready in ${String(Date.now() - started)} ms`,
  );
  const now = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
  const condition = (type: string, reason: string): unknown => ({
    type,
    status: 'True',
    reason,
    message: '',
    lastTransitionTime: now,
  });
  const resource = await natsResource();
  if (resource === undefined) throw new Error('the NATS resource is gone');
  await client.status({
    ...resource,
    status: {
      state: 'Ready',
      url: `nats://${NAME}.${NS}.svc.cluster.local:4222`,
      availabilityZonesUsed: 3,
      conditions: [
        condition('StatefulSet', 'Available'),
        condition('Available', 'Deployed'),
        condition('AvailabilityZones', 'Deployed'),
      ],
    },
  });

  await eventually(
    'a JetStream meta leader',
    async () => {
      const views = await Promise.all(
        ready.map(async (pod) => {
          const res = await fetch(`http://${pod.status.podIP ?? ''}:8222/jsz`, {
            signal: AbortSignal.timeout(3_000),
          }).catch(() => undefined);
          return (await res?.json().catch(() => undefined)) as
            { meta_cluster?: { leader?: string } } | undefined;
        }),
      );
      return views.every((v) => v?.meta_cluster?.leader !== undefined) ? true : undefined;
    },
    90_000,
  );
  nc = await connect({
    servers: `nats://${NAME}.${NS}.svc.${owner.node.clusterDomain}:4222`,
    maxReconnectAttempts: -1,
  });
  jsm = await jetstreamManager(nc);
  js = jetstream(nc);
  await eventually(
    'an R3 stream',
    async () =>
      jsm.streams
        .add({
          name: STREAM,
          subjects: [`${STREAM}.>`],
          num_replicas: 3,
          storage: StorageType.File,
        })
        .then(() => true)
        .catch(() => undefined),
    60_000,
  );
  for (let i = 0; i < MESSAGES; i++) await js.publish(`${STREAM}.created`, `go-${String(i)}`);
  expect((await jsm.streams.info(STREAM)).state.messages).toBe(MESSAGES);
}, 420_000);

afterAll(async () => {
  await nc?.close().catch(() => undefined);
  if (manager?.exitCode === null) manager.kill('SIGKILL');
  // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- unset if beforeAll failed early
  if (owner !== undefined) await stopNodeOwner(owner, 60_000);
  figures.print();
}, 90_000);

/** One look at what the route names and the headless Service offer. */
interface Sample {
  readonly at: number;
  /** Ready addresses or not (publishNotReadyAddresses): every pod the Service selects. */
  readonly endpoints: number;
  /** Route names that did not resolve through the cluster DNS. */
  readonly unresolved: readonly string[];
  /** Pods not Ready, or missing (a restart in progress). */
  readonly notReady: readonly string[];
  /** Pods present that the Service does not list. */
  readonly unlisted: readonly string[];
}

/** `original`: uids of the Go manager's pods; each must stay listed until it is deleted. */
function startSampler(original: ReadonlySet<string>): { stop: () => Promise<Sample[]> } {
  const resolver = new Resolver({ timeout: 1_000, tries: 1 });
  resolver.setServers([owner.node.clusterDns]);
  const names = Array.from(
    { length: SIZE },
    (_, i) => `${NAME}-${String(i)}.${NAME}.${NS}.svc.${owner.node.clusterDomain}`,
  );
  const samples: Sample[] = [];
  const state = { running: true };
  const loop = (async () => {
    while (state.running) {
      const at = Date.now();
      const [slices, podList, resolved] = await Promise.all([
        client.list<{ endpoints?: { addresses: string[]; targetRef?: { name?: string } }[] }>(
          `/apis/discovery.k8s.io/v1/namespaces/${NS}/endpointslices`,
          { labelSelector: `kubernetes.io/service-name=${NAME}`, timeoutMs: 2_000 },
        ),
        pods(),
        Promise.all(
          names.map(async (name) =>
            resolver.resolve4(name).then(
              (addresses) => (addresses.length > 0 ? undefined : name),
              () => name,
            ),
          ),
        ),
      ]).catch(() => [undefined, undefined, undefined] as const);
      if (slices !== undefined) {
        const listed = new Set(
          (slices.items ?? []).flatMap((s) => (s.endpoints ?? []).map((e) => e.targetRef?.name)),
        );
        const present = podList.filter((p) => p.status.podIP !== undefined);
        samples.push({
          at,
          endpoints: listed.size,
          unresolved: resolved.filter((n): n is string => n !== undefined),
          notReady: Array.from({ length: SIZE }, (_, i) => `${NAME}-${String(i)}`).filter(
            (name) => !podList.some((p) => p.metadata.name === name && isReady(p)),
          ),
          unlisted: present
            .filter(
              (p) => original.has(p.metadata.uid) && p.metadata.deletionTimestamp === undefined,
            )
            .map((p) => p.metadata.name)
            .filter((name) => !listed.has(name)),
        });
      }
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, 250 - (Date.now() - at))));
    }
  })();
  return {
    stop: async () => {
      state.running = false;
      await loop;
      return samples;
    },
  };
}

/** Publishes one message every 100 ms, each retried for RETRY_WINDOW_MS. */
function startPublisher(): { stop: () => Promise<{ acked: string[]; failed: string[] }> } {
  const acked: string[] = [];
  const failed: string[] = [];
  const state = { running: true };
  const loop = (async () => {
    for (let i = 0; state.running; i++) {
      const body = `takeover-${String(i)}`;
      const deadline = Date.now() + RETRY_WINDOW_MS;
      for (;;) {
        try {
          await js.publish(`${STREAM}.takeover`, body, { msgID: body, timeout: 2_000 });
          acked.push(body);
          break;
        } catch {
          if (Date.now() > deadline) {
            failed.push(body);
            break;
          }
          await new Promise((resolve) => setTimeout(resolve, 200));
        }
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  })();
  return {
    stop: async () => {
      state.running = false;
      await loop;
      return { acked, failed };
    },
  };
}

describe('taking over a running Go-manager cluster', () => {
  it('keeps the claims and the data, restarts only what a rendered difference needs, one at a time, and owns every field', async () => {
    const before = await pods();
    const claimsBefore = await client.list(`/api/v1/namespaces/${NS}/persistentvolumeclaims`);
    const claimUids = (claimsBefore.items ?? []).map((c) => c.metadata.uid).sort();
    expect(claimUids).toHaveLength(SIZE);
    const goSts = goChild('StatefulSet') as KubeObject & { spec: { template: unknown } };

    const sampler = startSampler(new Set(before.map((p) => p.metadata.uid)));
    const publisher = startPublisher();
    const started = Date.now();
    manager = await startManagerOnNode(owner, { onOutput: (text) => (managerOutput += text) });
    const ready = await eventually(
      'state Ready with the StatefulSet rolled out',
      async () => {
        const nats = await client.get<
          KubeObject & {
            metadata: { generation?: number };
            status?: { state?: string; observedGeneration?: number };
          }
        >({
          apiVersion: 'operator.kyma-project.io/v1alpha1',
          kind: 'NATS',
          namespace: NS,
          name: NAME,
        });
        const sts = await client.get<StatefulSetView>(childRef(goSts));
        // Every pod at the latest revision and Ready. Not currentRevision: the manager rolls the
        // pods itself (the StatefulSet updates OnDelete), and there the controller never moves it.
        const rolled =
          sts?.status?.observedGeneration === sts?.metadata.generation &&
          sts?.status?.updatedReplicas === SIZE &&
          sts.status.readyReplicas === SIZE;
        // Our status (the Go manager's has no observedGeneration), on children that are ours.
        const ours =
          nats?.status?.observedGeneration === nats?.metadata.generation &&
          sts !== undefined &&
          !managedFieldsOf(sts).some((e) => e.manager === GO_FIELD_MANAGER);
        return nats?.status?.state === 'Ready' && rolled && ours ? nats : undefined;
      },
      300_000,
    );
    figures.add(`manager started -> Ready, rolled out: ${String(Date.now() - started)} ms`);
    // A little longer, so that the samples cover the cluster after the last restart too.
    await new Promise((resolve) => setTimeout(resolve, 3_000));
    const samples = await sampler.stop();
    const published = await publisher.stop();
    expect(ready).toBeDefined();

    // What our rendering changed in the pod template: each one is why the pods rolled.
    const ourSts = await client.get<StatefulSetView>(childRef(goSts));
    const templateDiffs = differences(
      goSts.spec.template,
      stripDefaults(ourSts?.spec.template, goSts.spec.template),
    );
    figures.add(
      `pod-template differences that roll the pods: ${templateDiffs.join(', ') || 'none'}`,
    );
    const after = await pods();
    const restarted = before.filter(
      (pod) => !after.some((p) => p.metadata.uid === pod.metadata.uid),
    );
    figures.add(`pods replaced: ${String(restarted.length)} of ${String(SIZE)}`);
    if (templateDiffs.length === 0) {
      expect(restarted).toEqual([]);
    } else {
      expect(restarted).toHaveLength(SIZE);
    }
    // No container restarted in place.
    for (const pod of after) {
      expect(pod.status.containerStatuses?.every((c) => c.restartCount === 0)).toBe(true);
    }

    // One at a time: never two pods away at once; the Service never lists fewer than the pods
    // that are there, and at most the one restarting pod's name stops resolving.
    const maxNotReady = Math.max(...samples.map((s) => s.notReady.length));
    const minEndpoints = Math.min(...samples.map((s) => s.endpoints));
    const unresolvedSamples = samples.filter((s) => s.unresolved.length > 0);
    figures.add(
      `${String(samples.length)} samples over ${String(Math.round((samples.at(-1)?.at ?? 0) - (samples[0]?.at ?? 0)))} ms: ` +
        `at most ${String(maxNotReady)} pod(s) not Ready, endpoints min ${String(minEndpoints)}, ` +
        `${String(unresolvedSamples.length)} sample(s) with an unresolved route name`,
    );
    expect(maxNotReady).toBeLessThanOrEqual(1);
    expect(samples.every((s) => s.unlisted.length === 0)).toBe(true);
    expect(samples.every((s) => s.unresolved.length <= 1)).toBe(true);
    expect(samples.every((s) => s.endpoints >= SIZE - 1)).toBe(true);
    // A name stops resolving only around the replacement of its own pod.
    const away = new Map<string, number>();
    for (const sample of unresolvedSamples) {
      for (const name of sample.unresolved) away.set(name, (away.get(name) ?? 0) + 1);
    }
    figures.add(
      `route names unresolved (samples of ~250 ms): ${[...away].map(([n, c]) => `${n.split('.')[0] ?? n} ${String(c)}`).join(', ') || 'none'}`,
    );
    for (const name of away.keys()) {
      expect(restarted.map((p) => p.metadata.name)).toContain(name.split('.')[0]);
    }
    // Until the first pod goes, the takeover's own writes cut nothing off.
    const firstAway = samples.findIndex((s) => s.notReady.length > 0);
    const untilRoll = firstAway < 0 ? samples : samples.slice(0, firstAway);
    expect(untilRoll.every((s) => s.endpoints === SIZE && s.unresolved.length === 0)).toBe(true);

    // Every claim is the same claim; every message is there, the Go manager's and ours.
    const claimsAfter = await client.list(`/api/v1/namespaces/${NS}/persistentvolumeclaims`);
    expect((claimsAfter.items ?? []).map((c) => c.metadata.uid).sort()).toEqual(claimUids);
    figures.add(
      `publishes during the takeover: ${String(published.acked.length)} acked, ` +
        `${String(published.failed.length)} failed beyond a ${String(RETRY_WINDOW_MS)} ms retry window`,
    );
    expect(published.failed).toEqual([]);
    const info = await eventually(
      'the stream current on every replica',
      async () => {
        const i = await jsm.streams.info(STREAM).catch(() => undefined);
        return i?.cluster?.replicas?.length === 2 && i.cluster.replicas.every((r) => r.current)
          ? i
          : undefined;
      },
      60_000,
    );
    expect(info.state.messages).toBe(MESSAGES + published.acked.length);
    await jsm.consumers.add(STREAM, { durable_name: 'check' });
    const consumer = await js.consumers.get(STREAM, 'check');
    const bodies: string[] = [];
    while (bodies.length < info.state.messages) {
      const batch = await consumer.fetch({ max_messages: 200, expires: 2_000 });
      for await (const message of batch) bodies.push(message.string());
    }
    expect(bodies.slice(0, MESSAGES)).toEqual(
      Array.from({ length: MESSAGES }, (_, i) => `go-${String(i)}`),
    );
    expect(new Set(bodies.slice(MESSAGES))).toEqual(new Set(published.acked));

    // Field ownership: no entry of the Go manager is left on any child, ours applies each, and
    // our next apply, without force, meets no conflict.
    const secret = await client.get(childRef(goChild('Secret')));
    const password = systemAccountPasswordFrom(secret);
    expect(password).toBe('G'.repeat(20) + 'o'.repeat(20) + 'M'.repeat(20));
    const rendered = renderNats(natsRenderInput(ready as never), {
      istioPresent: false,
      systemAccountPassword: password ?? '',
      images: DEFAULT_IMAGES,
      clusterDomain: owner.node.clusterDomain,
    });
    for (const object of rendered) {
      const live = await client.get(childRef(object));
      const entries = managedFieldsOf(live);
      expect({
        kind: object.kind,
        go: entries.filter((e) => e.manager === GO_FIELD_MANAGER),
      }).toEqual({
        kind: object.kind,
        go: [],
      });
      expect(entries.filter((e) => e.manager === FIELD_MANAGER).map((e) => e.operation)).toEqual([
        'Apply',
      ]);
      await expect(
        client.apply(object, { fieldManager: FIELD_MANAGER, force: false, dryRun: true }),
      ).resolves.toBeDefined();
    }
    expect(managerOutput).toContain('taken over from the legacy field manager');
    const events = await kube.kubectl([
      'get',
      'events',
      '-n',
      NS,
      '--field-selector',
      'reason=TakenOver',
      '-o',
      'jsonpath={.items[*].message}',
    ]);
    for (const object of rendered) {
      expect(events).toContain(`Took over ${object.kind} ${object.metadata.name ?? ''} from`);
    }
  }, 420_000);
});

function managedFieldsOf(object: { metadata: object } | undefined): ManagedEntry[] {
  const entries: unknown =
    object === undefined ? undefined : Reflect.get(object.metadata, 'managedFields');
  return Array.isArray(entries) ? (entries as ManagedEntry[]) : [];
}

/** `live` without what the API server defaulted: only the keys `reference` or ours render. */
function stripDefaults(live: unknown, reference: unknown): unknown {
  // Defaults the API server adds to both sides equally; compare what was rendered: keep the
  // keys present in the reference, and any key of ours that is not a known default.
  if (isRecord(live) && isRecord(reference)) {
    return Object.fromEntries(
      Object.entries(live)
        .filter(([key]) => key in reference || !SERVER_DEFAULTS.has(key))
        .map(([key, value]) => [key, stripDefaults(value, reference[key])]),
    );
  }
  if (Array.isArray(live) && Array.isArray(reference)) {
    return live.map((value, i) => stripDefaults(value, reference[i]));
  }
  return live;
}

const SERVER_DEFAULTS: ReadonlySet<string> = new Set([
  'creationTimestamp',
  'dnsPolicy',
  'restartPolicy',
  'schedulerName',
  'terminationMessagePath',
  'terminationMessagePolicy',
  'imagePullPolicy',
  'defaultMode',
  'scheme',
  'priority',
  'enableServiceLinks',
  'preemptionPolicy',
  'apiVersion',
]);
