// The reconcile loop against the real local plane (kube-apiserver, etcd, and the
// kube-controller-manager's StatefulSet and garbage collector controllers), without the
// webhooks: what the loop alone makes of a NATS resource, of out-of-band edits and deletes, of
// spec changes, and of a deletion while a real nats-server still holds a customer stream.
//
// The tests run in order on one NATS resource, as its life would go. Istio's DestinationRule
// CRD is installed by the integration setup, so the DestinationRule is one of the children.
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { NATS_FINALIZER, type Nats } from '../../src/api/nats.ts';
import { createNatsController, type NatsController } from '../../src/controller/controller.ts';
import { apiEventRecorder } from '../../src/controller/events.ts';
import { clientFor, requestJson, type KubeObject } from '../../src/kube/api.ts';
import { ensureBinaries } from '../../src/localplane/binaries.ts';
import type { Logger } from '../../src/base/log.ts';
import { checkCustomerData } from '../../src/nats/customer-data.ts';
import { DEFAULT_IMAGES } from '../../src/render/context.ts';
import { NATS_CONF_KEY, RESOLVER_CONF_KEY } from '../../src/render/nats-conf.ts';
import { instanceValue } from '../../src/render/labels.ts';
import { objectNames } from '../../src/render/names.ts';
import { systemAccountPasswordFrom } from '../../src/render/secret.ts';
import {
  createTestNamespace,
  deleteTestNamespace,
  eventually,
  kubectl,
  testKubeConfig,
} from '../support/kube.ts';
import {
  startLoopbackCluster,
  waitForMetaLeader,
  type LoopbackCluster,
} from '../support/nats-cluster.ts';
import { createZoneNodes, runPods } from '../support/pods.ts';

const NAME = 'eventing-nats';
const PRIORITY_CLASS = new URL('../../deploy/manager/priority-class.yaml', import.meta.url)
  .pathname;
const names = objectNames(NAME);
const kc = testKubeConfig();
const silent: Logger = { info: () => undefined, error: () => undefined, with: () => silent };
// No NATS listens here: until the deletion test starts one, the check finds NATS unreachable.
let natsUrl = 'nats://127.0.0.1:1';
const writes: string[] = [];
let reconciles = 0;
let namespace: string;
let controller: NatsController;
let natsCluster: LoopbackCluster | undefined;

interface Child {
  readonly kind: string;
  readonly path: (ns: string) => string;
  readonly name: string;
}

const CHILDREN: readonly Child[] = [
  { kind: 'ConfigMap', path: (ns) => `/api/v1/namespaces/${ns}/configmaps`, name: names.configMap },
  { kind: 'Secret', path: (ns) => `/api/v1/namespaces/${ns}/secrets`, name: names.secret },
  { kind: 'Service', path: (ns) => `/api/v1/namespaces/${ns}/services`, name: names.service },
  {
    kind: 'StatefulSet',
    path: (ns) => `/apis/apps/v1/namespaces/${ns}/statefulsets`,
    name: names.statefulSet,
  },
  {
    kind: 'PodDisruptionBudget',
    path: (ns) => `/apis/policy/v1/namespaces/${ns}/poddisruptionbudgets`,
    name: names.podDisruptionBudget,
  },
  {
    kind: 'DestinationRule',
    path: (ns) => `/apis/networking.istio.io/v1/namespaces/${ns}/destinationrules`,
    name: names.destinationRule,
  },
];

function childOf(kind: string): Child {
  const found = CHILDREN.find((c) => c.kind === kind);
  if (found === undefined) throw new Error(`no child ${kind}`);
  return found;
}

async function get<T = KubeObject>(path: string): Promise<T | undefined> {
  try {
    return (await requestJson(kc, { method: 'GET', path })) as T;
  } catch (error) {
    if ((error as { status?: number }).status === 404) return undefined;
    throw error;
  }
}

async function getChild(child: Child): Promise<KubeObject | undefined> {
  return get(`${child.path(namespace)}/${child.name}`);
}

async function patch(path: string, body: unknown): Promise<KubeObject> {
  return (await requestJson(kc, {
    method: 'PATCH',
    path,
    body,
    contentType: 'application/merge-patch+json',
  })) as KubeObject;
}

function natsPath(name = NAME): string {
  return `/apis/operator.kyma-project.io/v1alpha1/namespaces/${namespace}/nats/${name}`;
}

async function getNats(name = NAME): Promise<Nats | undefined> {
  return get<Nats>(natsPath(name));
}

async function natsWhere(what: string, test: (nats: Nats) => boolean, timeoutMs = 30_000) {
  return eventually(
    what,
    async () => {
      const nats = await getNats();
      return nats !== undefined && test(nats) ? nats : undefined;
    },
    timeoutMs,
  );
}

function condition(nats: Nats, type: string) {
  return nats.status?.conditions?.find((c) => c.type === type);
}

function ownedByNats(object: KubeObject, uid: string): boolean {
  const refs = (object.metadata.ownerReferences ?? []) as { uid?: string; controller?: boolean }[];
  return refs.some((ref) => ref.uid === uid && ref.controller === true);
}

async function applyNats(spec: unknown, name = NAME): Promise<void> {
  await kubectl(['apply', '--server-side', '--field-manager=test-user', '-f', '-'], {
    input: JSON.stringify({
      apiVersion: 'operator.kyma-project.io/v1alpha1',
      kind: 'NATS',
      metadata: { name, namespace },
      spec,
    }),
  });
}

async function eventReasons(): Promise<string[]> {
  const list = (await requestJson(kc, {
    method: 'GET',
    path: `/api/v1/namespaces/${namespace}/events`,
  })) as { items: { reason?: string }[] };
  return list.items.map((e) => e.reason ?? '');
}

/** Events are recorded right after the write they tell of: wait for one, do not race it. */
async function eventRecorded(reason: string): Promise<void> {
  await eventually(`a ${reason} event`, async () =>
    (await eventReasons()).includes(reason) ? true : undefined,
  );
}

/** Reverted within the timeout, and how long it took. */
async function timed(what: string, probe: () => Promise<boolean>): Promise<number> {
  const started = Date.now();
  await eventually(what, async () => ((await probe()) ? true : undefined), 15_000);
  return Date.now() - started;
}

const SPEC = { cluster: { size: 3 }, jetStream: { fileStorage: { size: '1Gi' } } };

beforeAll(async () => {
  // The pods' PriorityClass comes with deploy/; without it the StatefulSet gets no pods.
  await kubectl(['apply', '-f', PRIORITY_CLASS]);
  namespace = await createTestNamespace(kc, 'reconcile');
  controller = createNatsController({
    client: clientFor(kc),
    settings: {
      natsName: NAME,
      natsNamespace: namespace,
      images: DEFAULT_IMAGES,
      clusterDomain: 'cluster.local',
      recheckMs: 300,
    },
    natsWatchNamespace: namespace,
    log: silent,
    record: apiEventRecorder(clientFor(kc), 'reconcile-test', silent),
    checkCustomerData: (url) => checkCustomerData(url, { timeoutMs: 2_000 }),
    natsUrl: () => natsUrl,
    metrics: {
      recordReconcile: () => {
        reconciles += 1;
      },
      recordWatchRestart: () => undefined,
      recordWrite: (kind, verb) => writes.push(`${verb} ${kind}`),
    },
  });
  await controller.start();
  controller.run();
});

afterAll(async () => {
  await controller.stop();
  await natsCluster?.stop();
  await deleteTestNamespace(kc, namespace);
});

test('a new NATS resource gets its finalizer, every child, owned by it, and Processing', async () => {
  await applyNats(SPEC);
  const nats = await natsWhere('status Processing', (n) => n.status?.state === 'Processing');
  const uid = nats.metadata?.uid ?? '';
  expect(nats.metadata?.finalizers).toContain(NATS_FINALIZER);
  // The Go manager's reasons while the StatefulSet rolls out.
  expect(condition(nats, 'Available')).toMatchObject({
    status: 'False',
    reason: 'Deploying',
    observedGeneration: 1,
  });
  expect(condition(nats, 'StatefulSet')).toMatchObject({ status: 'False', reason: 'Pending' });
  expect(condition(nats, 'AvailabilityZones')).toMatchObject({
    status: 'False',
    reason: 'Pending',
  });
  for (const child of CHILDREN) {
    const object = await eventually(`${child.kind} created`, () => getChild(child));
    expect(ownedByNats(object, uid)).toBe(true);
    expect(object.metadata.labels).toMatchObject({
      'app.kubernetes.io/managed-by': 'nats-manager',
    });
  }
});

test('Ready once the StatefulSet has rolled out on pods in three zones', async () => {
  const nodes = await createZoneNodes(kc, namespace, ['a', 'b', 'c']);
  await runPods(kc, namespace, 3, nodes);
  const nats = await natsWhere('status Ready', (n) => n.status?.state === 'Ready');
  expect(condition(nats, 'Available')).toMatchObject({ status: 'True', reason: 'Deployed' });
  expect(condition(nats, 'StatefulSet')).toMatchObject({ status: 'True' });
  expect(condition(nats, 'AvailabilityZones')).toMatchObject({ status: 'True' });
  expect(nats.status?.availabilityZonesUsed).toBe(3);
  expect(nats.status?.url).toBe(`nats://${names.service}.${namespace}.svc.cluster.local:4222`);
  const { stdout } = await kubectl([
    'wait',
    '-n',
    namespace,
    '--for=condition=Available',
    `nats/${NAME}`,
    '--timeout=20s',
  ]);
  expect(stdout).toContain('condition met');
  await eventRecorded('Created');
  await eventRecorded('Ready');
});

test('a converged resource is left alone: no write while idle, none when reconciled again', async () => {
  const before = await Promise.all(CHILDREN.map((c) => getChild(c)));
  const writesBefore = writes.length;
  const reconcilesBefore = reconciles;
  await new Promise((resolve) => setTimeout(resolve, 2_000));
  // A metadata-only change of the NATS resource makes the loop reconcile it once more.
  await patch(natsPath(), { metadata: { annotations: { 'example.com/touched': 'yes' } } });
  await eventually('another reconcile', () => (reconciles > reconcilesBefore ? true : undefined));
  await new Promise((resolve) => setTimeout(resolve, 1_000));
  expect(writes.slice(writesBefore)).toEqual([]);
  const after = await Promise.all(CHILDREN.map((c) => getChild(c)));
  expect(after.map((o) => o?.metadata.resourceVersion)).toEqual(
    before.map((o) => o?.metadata.resourceVersion),
  );
});

test('out-of-band edits of every child are put back', async () => {
  const timings: Record<string, number> = {};
  const statefulSet = childOf('StatefulSet');
  await patch(`${statefulSet.path(namespace)}/${statefulSet.name}`, { spec: { replicas: 5 } });
  timings.statefulSetReplicas = await timed('replicas restored', async () => {
    const sts = (await getChild(statefulSet)) as { spec?: { replicas?: number } } | undefined;
    return sts?.spec?.replicas === 3;
  });

  const configMap = childOf('ConfigMap');
  const original = (await getChild(configMap)) as { data?: Record<string, string> } | undefined;
  await patch(`${configMap.path(namespace)}/${configMap.name}`, {
    data: { [NATS_CONF_KEY]: 'port: 1234\n' },
  });
  timings.configMapData = await timed('nats.conf restored', async () => {
    const now = (await getChild(configMap)) as { data?: Record<string, string> } | undefined;
    return now?.data?.[NATS_CONF_KEY] === original?.data?.[NATS_CONF_KEY];
  });

  // Taking our label off hides the object from the label-selected cache: seen as a delete.
  const service = childOf('Service');
  await patch(`${service.path(namespace)}/${service.name}`, {
    metadata: { labels: { 'app.kubernetes.io/managed-by': null } },
  });
  timings.serviceLabel = await timed('managed-by label restored', async () => {
    const now = await getChild(service);
    return (
      now?.metadata.labels !== undefined &&
      (now.metadata.labels as Record<string, string>)['app.kubernetes.io/managed-by'] ===
        'nats-manager'
    );
  });

  const pdb = childOf('PodDisruptionBudget');
  await patch(`${pdb.path(namespace)}/${pdb.name}`, { spec: { maxUnavailable: 2 } });
  timings.pdbMaxUnavailable = await timed('maxUnavailable restored', async () => {
    const now = (await getChild(pdb)) as { spec?: { maxUnavailable?: number } } | undefined;
    return now?.spec?.maxUnavailable === 1;
  });

  const secret = childOf('Secret');
  const password = systemAccountPasswordFrom(await getChild(secret));
  await patch(`${secret.path(namespace)}/${secret.name}`, {
    metadata: { labels: { 'app.kubernetes.io/instance': 'someone-else' } },
  });
  timings.secretLabel = await timed('instance label restored', async () => {
    const now = await getChild(secret);
    return (
      (now?.metadata.labels as Record<string, string> | undefined)?.[
        'app.kubernetes.io/instance'
      ] === instanceValue(NAME)
    );
  });
  expect(systemAccountPasswordFrom(await getChild(secret))).toBe(password);

  process.stdout.write(`[reconcile] edit reverted after (ms): ${JSON.stringify(timings)}\n`);
  for (const ms of Object.values(timings)) expect(ms).toBeLessThan(15_000);
  await eventRecorded('Restored');
});

async function eventMessages(reason: string): Promise<string[]> {
  const list = (await requestJson(kc, {
    method: 'GET',
    path: `/api/v1/namespaces/${namespace}/events`,
  })) as { items: { reason?: string; message?: string }[] };
  return list.items.filter((e) => e.reason === reason).map((e) => e.message ?? '');
}

test('a Restored event names the field manager that changed the child, and how', async () => {
  const pdb = childOf('PodDisruptionBudget');
  // kubectl's own field manager for a patch, then one a script names itself.
  await kubectl([
    'patch',
    '-n',
    namespace,
    'poddisruptionbudget',
    pdb.name,
    '--type=merge',
    '-p',
    JSON.stringify({ spec: { maxUnavailable: 2 } }),
  ]);
  const patched = await eventually('a Restored event naming kubectl-patch', async () =>
    (await eventMessages('Restored')).find((m) => m.includes('by kubectl-patch')),
  );
  expect(patched).toMatch(
    new RegExp(
      `^Restored PodDisruptionBudget ${pdb.name}: spec\\.maxUnavailable was changed outside ` +
        'the NATS resource by kubectl-patch \\(Update at \\d{4}-\\d\\d-\\d\\dT[\\d:]+Z\\)\\.$',
    ),
  );

  const service = childOf('Service');
  await kubectl([
    'label',
    '-n',
    namespace,
    'service',
    service.name,
    'example.com/added=by-hand',
    '--field-manager=ops-script',
  ]);
  const labelled = await eventually('a Restored event naming ops-script', async () =>
    (await eventMessages('Restored')).find((m) => m.includes('by ops-script')),
  );
  expect(labelled).toContain(
    `Restored Service ${service.name}: metadata.labels.example.com/added was changed outside ` +
      'the NATS resource by ops-script (Update at ',
  );
  await timed('the added label removed', async () => {
    const now = await getChild(service);
    return (
      (now?.metadata.labels as Record<string, string> | undefined)?.['example.com/added'] ===
      undefined
    );
  });
});

interface Edit {
  readonly name: string;
  readonly kind: string;
  /** A JSON patch (RFC 6902) built from the child as it is; or a merge patch. */
  readonly jsonPatch?: (object: KubeObject) => unknown[];
  readonly mergePatch?: unknown;
}

const EXTRA_ENV = { name: 'EXTRA', value: 'added by hand' };

// Every kind of out-of-band edit a user can make to a child: changed, added and removed fields,
// keyed list entries, labels, annotations, ownership. Each must be put back in full.
const EDITS: readonly Edit[] = [
  {
    name: 'ConfigMap nats.conf changed',
    kind: 'ConfigMap',
    mergePatch: { data: { [NATS_CONF_KEY]: 'port: 1\n' } },
  },
  { name: 'ConfigMap key added', kind: 'ConfigMap', mergePatch: { data: { extra: 'x' } } },
  {
    name: 'ConfigMap label added',
    kind: 'ConfigMap',
    mergePatch: { metadata: { labels: { extra: 'x' } } },
  },
  {
    name: 'ConfigMap annotation added',
    kind: 'ConfigMap',
    mergePatch: { metadata: { annotations: { 'example.com/x': 'y' } } },
  },
  {
    name: 'ConfigMap ownerReference removed',
    kind: 'ConfigMap',
    jsonPatch: () => [{ op: 'remove', path: '/metadata/ownerReferences' }],
  },
  {
    name: 'Secret key added',
    kind: 'Secret',
    mergePatch: { data: { extra: Buffer.from('x').toString('base64') } },
  },
  {
    name: 'Secret label changed',
    kind: 'Secret',
    mergePatch: { metadata: { labels: { 'app.kubernetes.io/instance': 'other' } } },
  },
  {
    name: 'Service port number changed',
    kind: 'Service',
    jsonPatch: () => [{ op: 'replace', path: '/spec/ports/0/port', value: 4223 }],
  },
  {
    name: 'Service port added',
    kind: 'Service',
    jsonPatch: () => [
      { op: 'add', path: '/spec/ports/-', value: { name: 'extra', port: 9999, protocol: 'TCP' } },
    ],
  },
  {
    name: 'Service selector label added',
    kind: 'Service',
    mergePatch: { spec: { selector: { extra: 'x' } } },
  },
  {
    name: 'StatefulSet replicas changed',
    kind: 'StatefulSet',
    mergePatch: { spec: { replicas: 4 } },
  },
  {
    name: 'StatefulSet env var added',
    kind: 'StatefulSet',
    jsonPatch: () => [
      { op: 'add', path: '/spec/template/spec/containers/0/env/-', value: EXTRA_ENV },
    ],
  },
  {
    name: 'StatefulSet image changed',
    kind: 'StatefulSet',
    jsonPatch: () => [
      { op: 'replace', path: '/spec/template/spec/containers/0/image', value: 'nats:0.0.1' },
    ],
  },
  {
    name: 'StatefulSet containerPort changed',
    kind: 'StatefulSet',
    jsonPatch: () => [
      {
        op: 'replace',
        path: '/spec/template/spec/containers/0/ports/0/containerPort',
        value: 4223,
      },
    ],
  },
  {
    name: 'StatefulSet volume added',
    kind: 'StatefulSet',
    jsonPatch: () => [
      { op: 'add', path: '/spec/template/spec/volumes/-', value: { name: 'extra', emptyDir: {} } },
    ],
  },
  {
    name: 'StatefulSet pod annotation added',
    kind: 'StatefulSet',
    mergePatch: { spec: { template: { metadata: { annotations: { 'example.com/x': 'y' } } } } },
  },
  {
    name: 'PodDisruptionBudget maxUnavailable changed',
    kind: 'PodDisruptionBudget',
    mergePatch: { spec: { maxUnavailable: 2 } },
  },
  {
    name: 'PodDisruptionBudget label added',
    kind: 'PodDisruptionBudget',
    mergePatch: { metadata: { labels: { extra: 'x' } } },
  },
  {
    name: 'DestinationRule TLS mode changed',
    kind: 'DestinationRule',
    mergePatch: { spec: { trafficPolicy: { tls: { mode: 'ISTIO_MUTUAL' } } } },
  },
];

/** A child as we compare it: without what the API server maintains and the controllers' status. */
function comparable(object: KubeObject | undefined): unknown {
  if (object === undefined) return undefined;
  const metadata = { ...object.metadata };
  delete metadata.resourceVersion;
  delete metadata.managedFields;
  delete metadata.generation;
  return { ...object, metadata, status: undefined };
}

test('full-state restore: every kind of out-of-band edit is put back, added fields included', async () => {
  const timings: Record<string, number> = {};
  const notRestored: string[] = [];
  for (const edit of EDITS) {
    const child = childOf(edit.kind);
    const before = await getChild(child);
    const path = `${child.path(namespace)}/${child.name}`;
    await requestJson(kc, {
      method: 'PATCH',
      path,
      body: before === undefined ? undefined : (edit.jsonPatch?.(before) ?? edit.mergePatch),
      contentType:
        edit.jsonPatch === undefined
          ? 'application/merge-patch+json'
          : 'application/json-patch+json',
    });
    const started = Date.now();
    try {
      await eventually(
        edit.name,
        async () =>
          JSON.stringify(comparable(await getChild(child))) === JSON.stringify(comparable(before))
            ? true
            : undefined,
        10_000,
      );
      timings[edit.name] = Date.now() - started;
    } catch {
      notRestored.push(`${edit.name}: ${JSON.stringify(comparable(await getChild(child)))}`);
    }
  }
  const sorted = Object.values(timings).sort((a, b) => a - b);
  process.stdout.write(
    `[reconcile] full-state restore of ${String(EDITS.length)} edit kinds (ms): ` +
      `p50 ${String(sorted[Math.floor(sorted.length / 2)] ?? 0)}, max ${String(sorted.at(-1) ?? 0)}: ` +
      `${JSON.stringify(timings)}\n`,
  );
  expect(notRestored).toEqual([]);
  expect(EDITS.length).toBeGreaterThanOrEqual(15);
  // Restored for good: no write loops between the manager and what it restored.
  const writesAfter = writes.length;
  await new Promise((resolve) => setTimeout(resolve, 2_000));
  expect(writes.slice(writesAfter)).toEqual([]);
}, 240_000);

test('every deleted child comes back', async () => {
  const timings: Record<string, number> = {};
  for (const child of CHILDREN) {
    const before = await getChild(child);
    await requestJson(kc, { method: 'DELETE', path: `${child.path(namespace)}/${child.name}` });
    timings[child.kind] = await timed(`${child.kind} recreated`, async () => {
      const now = await getChild(child);
      return now !== undefined && now.metadata.uid !== before?.metadata.uid;
    });
  }
  process.stdout.write(
    `[reconcile] deleted child recreated after (ms): ${JSON.stringify(timings)}\n`,
  );
  for (const ms of Object.values(timings)) expect(ms).toBeLessThan(15_000);
});

test('spec changes flow to the children, and a label taken out of the spec leaves them', async () => {
  const secret = childOf('Secret');
  const password = systemAccountPasswordFrom(await getChild(secret));
  expect(password).toBeDefined();
  await applyNats({
    ...SPEC,
    cluster: { size: 5 },
    logging: { debug: true, trace: true },
    resources: { limits: { cpu: '2', memory: '2Gi' }, requests: { cpu: '500m', memory: '1Gi' } },
    labels: { team: 'payments' },
  });
  const statefulSet = childOf('StatefulSet');
  await eventually('StatefulSet follows the spec', async () => {
    const sts = (await getChild(statefulSet)) as {
      spec?: {
        replicas?: number;
        template?: { spec?: { containers?: { name: string; resources?: unknown }[] } };
      };
    };
    const nats = sts.spec?.template?.spec?.containers?.find((c) => c.name === 'nats');
    return sts.spec?.replicas === 5 &&
      JSON.stringify(nats?.resources) ===
        JSON.stringify({
          limits: { cpu: '2', memory: '2Gi' },
          requests: { cpu: '500m', memory: '1Gi' },
        })
      ? true
      : undefined;
  });
  await eventually('nats.conf has debug and trace', async () => {
    const cm = (await getChild(childOf('ConfigMap'))) as { data?: Record<string, string> };
    const conf = cm.data?.[NATS_CONF_KEY] ?? '';
    return /debug:\s*true/.test(conf) && /trace:\s*true/.test(conf) ? true : undefined;
  });
  for (const child of CHILDREN) {
    await eventually(`${child.kind} labelled team=payments`, async () => {
      const labels = (await getChild(child))?.metadata.labels as Record<string, string> | undefined;
      return labels?.team === 'payments' ? true : undefined;
    });
  }
  expect(systemAccountPasswordFrom(await getChild(secret))).toBe(password);

  await applyNats({ ...SPEC, cluster: { size: 5 } });
  for (const child of CHILDREN) {
    await eventually(`team label gone from ${child.kind}`, async () => {
      const labels = (await getChild(child))?.metadata.labels as Record<string, string> | undefined;
      return labels !== undefined && !('team' in labels) ? true : undefined;
    });
  }
  expect(systemAccountPasswordFrom(await getChild(secret))).toBe(password);
});

test('a child the API server refuses turns the state to Error with its reason, until it is accepted', async () => {
  // A ValidatingAdmissionPolicy stands for anything that refuses a write: quota, policy engines.
  const policy = `no-seven-${namespace}`;
  await requestJson(kc, {
    method: 'POST',
    path: '/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicies',
    body: {
      apiVersion: 'admissionregistration.k8s.io/v1',
      kind: 'ValidatingAdmissionPolicy',
      metadata: { name: policy },
      spec: {
        failurePolicy: 'Fail',
        matchConstraints: {
          resourceRules: [
            {
              apiGroups: ['apps'],
              apiVersions: ['v1'],
              operations: ['CREATE', 'UPDATE'],
              resources: ['statefulsets'],
            },
          ],
        },
        validations: [
          {
            expression: 'object.spec.replicas != 7',
            message: 'seven replicas are not allowed here',
          },
        ],
      },
    },
  });
  const bindingPath = '/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicybindings';
  await requestJson(kc, {
    method: 'POST',
    path: bindingPath,
    body: {
      apiVersion: 'admissionregistration.k8s.io/v1',
      kind: 'ValidatingAdmissionPolicyBinding',
      metadata: { name: policy },
      spec: {
        policyName: policy,
        validationActions: ['Deny'],
        matchResources: {
          namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': namespace } },
        },
      },
    },
  });
  try {
    const statefulSet = childOf('StatefulSet');
    // The policy is in force once a dry run of the same change is refused.
    await eventually('the policy in force', async () => {
      try {
        await requestJson(kc, {
          method: 'PATCH',
          path: `${statefulSet.path(namespace)}/${statefulSet.name}`,
          query: { dryRun: 'All' },
          body: { spec: { replicas: 7 } },
          contentType: 'application/merge-patch+json',
        });
        return undefined;
      } catch {
        return true;
      }
    });
    await applyNats({ ...SPEC, cluster: { size: 7 } });
    const failed = await natsWhere('state Error', (n) => n.status?.state === 'Error');
    expect(condition(failed, 'StatefulSet')).toMatchObject({
      status: 'False',
      reason: 'FailedToSyncResources',
    });
    expect(condition(failed, 'StatefulSet')?.message).toContain(
      'seven replicas are not allowed here',
    );
  } finally {
    await requestJson(kc, { method: 'DELETE', path: `${bindingPath}/${policy}` });
    await requestJson(kc, {
      method: 'DELETE',
      path: `/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicies/${policy}`,
    });
  }
  // Retried with backoff: once the API server accepts it, the change goes through.
  await eventually(
    'seven replicas',
    async () => {
      const sts = (await getChild(childOf('StatefulSet'))) as { spec?: { replicas?: number } };
      return sts.spec?.replicas === 7 ? true : undefined;
    },
    60_000,
  );
  await natsWhere('state Processing', (n) => n.status?.state === 'Processing');
  // Back to five, the size the deletion test's NATS servers are started for.
  await applyNats({ ...SPEC, cluster: { size: 5 } });
  await eventually('five replicas', async () => {
    const sts = (await getChild(childOf('StatefulSet'))) as { spec?: { replicas?: number } };
    return sts.spec?.replicas === 5 ? true : undefined;
  });
}, 120_000);

test('one child the API server refuses blocks no other: a StatefulSet deleted meanwhile comes back', async () => {
  // Services refused in this namespace, as a quota or policy engine would.
  const policy = `no-services-${namespace}`;
  const admissionPath = '/apis/admissionregistration.k8s.io/v1';
  await requestJson(kc, {
    method: 'POST',
    path: `${admissionPath}/validatingadmissionpolicies`,
    body: {
      apiVersion: 'admissionregistration.k8s.io/v1',
      kind: 'ValidatingAdmissionPolicy',
      metadata: { name: policy },
      spec: {
        failurePolicy: 'Fail',
        matchConstraints: {
          resourceRules: [
            {
              apiGroups: [''],
              apiVersions: ['v1'],
              operations: ['CREATE'],
              resources: ['services'],
            },
          ],
        },
        validations: [{ expression: 'false', message: 'no new services here' }],
      },
    },
  });
  await requestJson(kc, {
    method: 'POST',
    path: `${admissionPath}/validatingadmissionpolicybindings`,
    body: {
      apiVersion: 'admissionregistration.k8s.io/v1',
      kind: 'ValidatingAdmissionPolicyBinding',
      metadata: { name: policy },
      spec: {
        policyName: policy,
        validationActions: ['Deny'],
        matchResources: {
          namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': namespace } },
        },
      },
    },
  });
  const service = childOf('Service');
  const statefulSet = childOf('StatefulSet');
  try {
    await eventually('the policy in force', async () => {
      try {
        await requestJson(kc, {
          method: 'POST',
          path: service.path(namespace),
          query: { dryRun: 'All' },
          body: {
            apiVersion: 'v1',
            kind: 'Service',
            metadata: { name: 'probe' },
            spec: { ports: [{ port: 1 }] },
          },
        });
        return undefined;
      } catch {
        return true;
      }
    });
    await requestJson(kc, { method: 'DELETE', path: `${service.path(namespace)}/${service.name}` });
    const failed = await natsWhere('state Error', (n) => n.status?.state === 'Error');
    expect(condition(failed, 'StatefulSet')?.message).toContain('no new services here');
    const before = await getChild(statefulSet);
    await requestJson(kc, {
      method: 'DELETE',
      path: `${statefulSet.path(namespace)}/${statefulSet.name}`,
    });
    // The Service keeps failing, yet the StatefulSet is reconciled on its own.
    await eventually('the StatefulSet recreated', async () => {
      const now = await getChild(statefulSet);
      return now !== undefined && now.metadata.uid !== before?.metadata.uid ? true : undefined;
    });
    expect(await getChild(service)).toBeUndefined();
  } finally {
    await requestJson(kc, {
      method: 'DELETE',
      path: `${admissionPath}/validatingadmissionpolicybindings/${policy}`,
    });
    await requestJson(kc, {
      method: 'DELETE',
      path: `${admissionPath}/validatingadmissionpolicies/${policy}`,
    });
  }
  // Retried with backoff: the Service comes back once it is accepted.
  await eventually('the Service back', () => getChild(service), 60_000);
}, 120_000);

test('a second NATS resource ends in Error/Forbidden, with no finalizer and no children', async () => {
  await applyNats(SPEC, 'second');
  const second = await eventually('second NATS refused', async () => {
    const nats = await getNats('second');
    return nats?.status?.state === 'Error' ? nats : undefined;
  });
  // The Go manager's message, which its users and tests match, comes first.
  const goMessage =
    `Only a single NATS CR with name: ${NAME} and namespace: ${namespace} is allowed to be ` +
    'created in a Kyma cluster.';
  for (const type of ['StatefulSet', 'Available']) {
    expect(condition(second, type)).toMatchObject({ status: 'False', reason: 'Forbidden' });
    expect(condition(second, type)?.message.startsWith(goMessage)).toBe(true);
  }
  await eventRecorded('Forbidden');
  expect((await eventMessages('Forbidden')).some((m) => m.startsWith(goMessage))).toBe(true);
  expect(second.metadata?.finalizers ?? []).toEqual([]);
  expect(await get(`${childOf('StatefulSet').path(namespace)}/second`)).toBeUndefined();
  expect(await get(`${childOf('ConfigMap').path(namespace)}/second-config`)).toBeUndefined();
  await kubectl(['delete', '-n', namespace, 'nats/second', '--wait=true', '--timeout=20s']);
});

test('deletion waits while a real nats-server holds a customer stream, then cleans up', async () => {
  // The servers run the nats.conf and resolver.conf the manager wrote into the cluster.
  const configMap = (await getChild(childOf('ConfigMap'))) as unknown as {
    data: Record<string, string>;
  };
  const secret = (await getChild(childOf('Secret'))) as unknown as { data: Record<string, string> };
  const { 'nats-server': natsServer } = await ensureBinaries(['nats-server']);
  natsCluster = await startLoopbackCluster({
    natsServer,
    natsConf: configMap.data[NATS_CONF_KEY] ?? '',
    resolverConf: Buffer.from(secret.data[RESOLVER_CONF_KEY] ?? '', 'base64').toString('utf8'),
    names: [0, 1, 2, 3, 4].map((i) => `${names.statefulSet}-${String(i)}`),
  });
  await waitForMetaLeader(natsCluster.servers, 30_000);
  const [first] = natsCluster.servers;
  natsUrl = `nats://127.0.0.1:${String(first?.clientPort)}`;
  const nc = await connect({ servers: natsUrl });
  const jsm = await jetstreamManager(nc);
  await jsm.streams.add({ name: 'orders', subjects: ['orders.>'], num_replicas: 3 });

  await kubectl(['delete', '-n', namespace, `nats/${NAME}`, '--wait=false']);
  const blocked = await natsWhere('deletion blocked', (n) => n.status?.state === 'Warning');
  expect(condition(blocked, 'Deleted')).toMatchObject({
    status: 'False',
    reason: 'DeletionError',
    message: 'Cannot delete NATS cluster as customer stream exists',
  });
  expect(blocked.metadata?.finalizers).toContain(NATS_FINALIZER);
  await eventRecorded('DeletionBlocked');

  await jsm.streams.delete('orders');
  await nc.close();
  await eventually('NATS resource gone', async () =>
    (await getNats()) === undefined ? true : undefined,
  );
  const claims = (await requestJson(kc, {
    method: 'GET',
    path: `/api/v1/namespaces/${namespace}/persistentvolumeclaims`,
  })) as { items: KubeObject[] };
  // kube-apiserver puts kubernetes.io/pvc-protection on every claim; with no controller here to
  // lift it, a deleted claim stays as terminating: deleted is what we check.
  expect(claims.items.length).toBeGreaterThan(0);
  for (const claim of claims.items) expect(claim.metadata.deletionTimestamp).toBeDefined();
  // The children go by garbage collection.
  await eventually(
    'StatefulSet collected',
    async () => ((await getChild(childOf('StatefulSet'))) === undefined ? true : undefined),
    90_000,
  );
}, 150_000);

test('an object squatting a child name is reported, not taken over, feeds no NATS server, and the loop converges once it goes', async () => {
  const configMap = childOf('ConfigMap');
  // The last NATS resource's children must be gone first: they are not owned by the next one.
  await eventually(
    'the old children collected',
    async () => {
      const left = await Promise.all(CHILDREN.map((child) => getChild(child)));
      return left.every((object) => object === undefined) ? true : undefined;
    },
    90_000,
  );
  await requestJson(kc, {
    method: 'POST',
    path: configMap.path(namespace),
    body: {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: configMap.name, namespace },
      data: { mine: 'do not touch' },
    },
  });
  await applyNats(SPEC);
  const nats = await natsWhere('state Error', (n) => n.status?.state === 'Error');
  expect(condition(nats, 'StatefulSet')?.message).toContain(
    `ConfigMap ${namespace}/${configMap.name} already exists and is not owned by this NATS resource`,
  );
  const squatter = (await getChild(configMap)) as KubeObject & { data?: Record<string, string> };
  expect(squatter.data).toEqual({ mine: 'do not touch' });
  expect(squatter.metadata.ownerReferences).toBeUndefined();
  await eventRecorded('NameConflict');
  expect(condition(nats, 'StatefulSet')?.message).toContain(
    'StatefulSet not applied while ConfigMap is not ours',
  );
  // The children that do not read the squatted ConfigMap are there meanwhile; the StatefulSet,
  // whose servers would run the squatter's nats.conf, is not.
  await eventually('the other children', async () => {
    const others = await Promise.all(
      ['Secret', 'Service', 'PodDisruptionBudget'].map((kind) => getChild(childOf(kind))),
    );
    return others.every((object) => object !== undefined) ? true : undefined;
  });
  expect(await getChild(childOf('StatefulSet'))).toBeUndefined();

  await requestJson(kc, {
    method: 'DELETE',
    path: `${configMap.path(namespace)}/${configMap.name}`,
  });
  await natsWhere('state Processing', (n) => n.status?.state === 'Processing');
  const ours = await eventually('our ConfigMap', () => getChild(configMap));
  expect(ownedByNats(ours, (await getNats())?.metadata?.uid ?? '')).toBe(true);
  await eventually('the StatefulSet', () => getChild(childOf('StatefulSet')));
}, 120_000);
