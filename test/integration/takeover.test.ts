// The takeover of the Go manager's children against a real API server (no node, no pods needed):
// a child that cannot be taken over stops every write and the status says what and why; once the
// cause is gone, every child is taken over, and no `nats-manager` entry is left in managedFields.
import { NATS_FINALIZER } from '../../src/api/nats.ts';
import type { Logger } from '../../src/base/log.ts';
import type { KubeObject } from '../../src/base/object.ts';
import { createNatsController, type NatsController } from '../../src/controller/controller.ts';
import { apiEventRecorder } from '../../src/controller/events.ts';
import { FIELD_MANAGER, LEGACY_FIELD_MANAGER } from '../../src/controller/takeover.ts';
import { clientFor } from '../../src/kube/api.ts';
import type { KubeClient } from '../../src/kube/client.ts';
import { DEFAULT_IMAGES } from '../../src/render/context.ts';
import { GO_FIELD_MANAGER, GO_FINALIZER, goManagerChildren } from '../support/go-manager-shape.ts';
import {
  createTestNamespace,
  deleteTestNamespace,
  eventually,
  kubectl,
  testKubeConfig,
} from '../support/kube.ts';

const NAME = 'eventing-nats';
const kc = testKubeConfig();
const silent: Logger = { info: () => undefined, error: () => undefined, with: () => silent };
let client: KubeClient;
let namespace: string;
let controller: NatsController | undefined;
let children: KubeObject[];

interface NatsView {
  apiVersion: string;
  kind: string;
  metadata: { uid?: string; finalizers?: string[]; generation?: number };
  status?: {
    state?: string;
    observedGeneration?: number;
    conditions?: { type: string; status: string; message: string }[];
  };
}

function ref(object: KubeObject): {
  apiVersion: string;
  kind: string;
  namespace: string;
  name: string;
} {
  return {
    apiVersion: object.apiVersion,
    kind: object.kind,
    namespace,
    name: object.metadata.name ?? '',
  };
}

const NATS_REF = (): { apiVersion: string; kind: string; namespace: string; name: string } => ({
  apiVersion: 'operator.kyma-project.io/v1alpha1',
  kind: 'NATS',
  namespace,
  name: NAME,
});

/** What a write of the object, as opposed to of its status, would change. */
function writable(object: KubeObject | undefined): unknown {
  if (object === undefined) return undefined;
  const { managedFields } = object.metadata;
  const entries = Array.isArray(managedFields)
    ? (managedFields as { subresource?: string }[]).filter((e) => e.subresource === undefined)
    : managedFields;
  return {
    ...object,
    status: undefined,
    metadata: { ...object.metadata, resourceVersion: undefined, managedFields: entries },
  };
}

function managers(object: KubeObject | undefined): string[] {
  const entries = object?.metadata.managedFields;
  return Array.isArray(entries)
    ? (entries as { manager?: string; subresource?: string }[])
        .filter((e) => e.subresource === undefined)
        .map((e) => e.manager ?? '')
    : [];
}

beforeAll(async () => {
  client = clientFor(kc);
  namespace = await createTestNamespace(kc, 'takeover');
  const nats = await client.create({
    ...NATS_REF(),
    metadata: { name: NAME, namespace },
    spec: { cluster: { size: 3 }, jetStream: { fileStorage: { size: '1Gi' } } },
  });
  await client.patch(
    NATS_REF(),
    { metadata: { finalizers: [GO_FINALIZER] } },
    { type: 'merge', fieldManager: GO_FIELD_MANAGER },
  );
  children = goManagerChildren({
    name: NAME,
    namespace,
    uid: String(nats.metadata.uid),
    images: DEFAULT_IMAGES,
    clusterDomain: 'cluster.local',
    password: 'x'.repeat(60),
    size: 3,
  });
});

afterAll(async () => {
  await controller?.stop();
  await deleteTestNamespace(kc, namespace);
});

function startController(): NatsController {
  const started = createNatsController({
    client,
    settings: {
      natsName: NAME,
      natsNamespace: namespace,
      images: DEFAULT_IMAGES,
      clusterDomain: 'cluster.local',
      recheckMs: 300,
    },
    natsWatchNamespace: namespace,
    log: silent,
    record: apiEventRecorder(client, 'takeover-test', silent),
    checkCustomerData: () => Promise.resolve({ kind: 'none' }),
    metrics: {
      recordReconcile: () => undefined,
      recordWatchRestart: () => undefined,
      recordWrite: () => undefined,
    },
  });
  return started;
}

test('a claim template that differs stops the takeover before any write, and the status says why', async () => {
  for (const child of children) {
    const applied =
      child.kind === 'StatefulSet'
        ? withClaimLabels(child, { 'app.kubernetes.io/instance': 'eventing' })
        : child;
    await client.apply(applied, { fieldManager: GO_FIELD_MANAGER, force: true });
  }
  const before = await Promise.all(children.map(async (c) => client.get(ref(c))));
  controller = startController();
  await controller.start();
  controller.run();
  const refused = await eventually(
    'state Error',
    async () => {
      const nats = await client.get<NatsView>(NATS_REF());
      return nats?.status?.state === 'Error' ? nats : undefined;
    },
    30_000,
  );
  const available = refused.status?.conditions?.find((c) => c.type === 'Available');
  expect(available?.status).toBe('False');
  expect(available?.message).toContain(
    `Cannot take over the children nats-manager (the Go NATS manager) applied, so nothing was written: StatefulSet ${namespace}/eventing-nats: spec.volumeClaimTemplates[0] ("eventing-nats-js-pvc").metadata.labels is {"app.kubernetes.io/instance":"eventing"}`,
  );
  expect(available?.message).toContain('a StatefulSet accepts no change there');
  // Rechecked a few times: still nothing written.
  await new Promise((resolve) => setTimeout(resolve, 1_500));
  const after = await Promise.all(children.map(async (c) => client.get(ref(c))));
  // Compared without status: the StatefulSet controller keeps writing the StatefulSet's.
  expect(after.map(writable)).toEqual(before.map(writable));
  for (const object of after) expect(managers(object)).toEqual([LEGACY_FIELD_MANAGER]);
  expect(
    await client.get({
      apiVersion: 'networking.istio.io/v1',
      kind: 'DestinationRule',
      namespace,
      name: NAME,
    }),
  ).toBeUndefined();
  const nats = await client.get<NatsView>(NATS_REF());
  expect(nats?.metadata.finalizers).toEqual([GO_FINALIZER]);
  const events = await client.list<{ reason?: string; message?: string }>(
    `/api/v1/namespaces/${namespace}/events`,
  );
  expect(events.items?.filter((e) => e.reason === 'TakeoverRefused')).toHaveLength(1);
});

test('once the cause is gone, every child is taken over and only our Apply entry owns it', async () => {
  // The StatefulSet as the Go manager renders it, re-created without its pods (orphaned).
  const sts = children.find((c) => c.kind === 'StatefulSet');
  if (sts === undefined) throw new Error('no StatefulSet');
  // Paused meanwhile: with the refused StatefulSet gone, the manager would create its own before
  // the Go-shaped one is back, and there would be nothing of the Go manager's to take over.
  if (controller === undefined) throw new Error('no controller');
  await controller.pause();
  await kubectl(['delete', 'statefulset', NAME, '-n', namespace, '--cascade=orphan']);
  // The garbage collector removes the orphan finalizer, once its caches synced after the
  // plane started: that can take most of a minute on a busy machine.
  await eventually(
    'the StatefulSet gone',
    async () => ((await client.get(ref(sts))) === undefined ? true : undefined),
    90_000,
  );
  await client.apply(sts, { fieldManager: GO_FIELD_MANAGER, force: true });
  controller.run();
  await eventually(
    'every child without a nats-manager entry, and our status',
    async () => {
      const nats = await client.get<NatsView>(NATS_REF());
      const live = await Promise.all(children.map(async (c) => client.get(ref(c))));
      return nats?.status?.state !== 'Error' &&
        nats?.status?.observedGeneration === nats?.metadata.generation &&
        live.every((o) => !managers(o).includes(LEGACY_FIELD_MANAGER))
        ? true
        : undefined;
    },
    30_000,
  );
  for (const child of children) {
    const live = await client.get(ref(child));
    expect({ kind: child.kind, managers: managers(live) }).toEqual({
      kind: child.kind,
      managers: [FIELD_MANAGER],
    });
    // Nothing the Go manager set outside our rendering is left (the Service's ports were
    // applied without appProtocol; ours have it, and the PUT made them exactly ours).
    if (child.kind === 'Service') {
      const ports = (live as { spec?: { ports?: { appProtocol?: string }[] } }).spec?.ports;
      expect(ports?.every((p) => p.appProtocol !== undefined)).toBe(true);
    }
  }
  const nats = await client.get<NatsView>(NATS_REF());
  // The Go manager's finalizer is ours too: not added twice.
  expect(nats?.metadata.finalizers).toEqual([NATS_FINALIZER]);
  const events = await client.list<{ reason?: string; message?: string }>(
    `/api/v1/namespaces/${namespace}/events`,
  );
  const takenOver = (events.items ?? []).filter((e) => e.reason === 'TakenOver');
  expect(takenOver.map((e) => e.message?.split(' ')[2]).sort()).toEqual(
    children.map((c) => c.kind).sort(),
  );
}, 180_000);

function withClaimLabels(sts: KubeObject, labels: Record<string, string>): KubeObject {
  const copy = structuredClone(sts) as KubeObject & {
    spec: { volumeClaimTemplates: { metadata: { labels?: Record<string, string> } }[] };
  };
  for (const template of copy.spec.volumeClaimTemplates) template.metadata.labels = labels;
  return copy;
}
