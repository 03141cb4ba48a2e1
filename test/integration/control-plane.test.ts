// Smoke tests of the local control plane itself: what every other integration test relies on.
import * as k8s from '@kubernetes/client-node';
import {
  createTestNamespace,
  deleteTestNamespace,
  eventually,
  kubectl,
  testKubeConfig,
} from '../support/kube.ts';

const GROUP = 'smoke.nats-manager.test';
const PLURAL = 'widgets';

const widgetCrd: k8s.V1CustomResourceDefinition = {
  metadata: { name: `${PLURAL}.${GROUP}` },
  spec: {
    group: GROUP,
    scope: 'Namespaced',
    names: { kind: 'Widget', plural: PLURAL, singular: 'widget', listKind: 'WidgetList' },
    versions: [
      {
        name: 'v1',
        served: true,
        storage: true,
        schema: {
          openAPIV3Schema: {
            type: 'object',
            properties: { spec: { type: 'object', properties: { size: { type: 'integer' } } } },
          },
        },
      },
    ],
  },
};

interface Widget {
  apiVersion: string;
  kind: string;
  metadata: k8s.V1ObjectMeta;
  spec: { size: number };
}

function widget(namespace: string, name: string): Widget {
  return {
    apiVersion: `${GROUP}/v1`,
    kind: 'Widget',
    metadata: { name, namespace },
    spec: { size: 3 },
  };
}

function isNotFound(error: unknown): boolean {
  return error instanceof k8s.ApiException && error.code === 404;
}

describe('local control plane', () => {
  const kc = testKubeConfig();
  const core = kc.makeApiClient(k8s.CoreV1Api);
  const custom = kc.makeApiClient(k8s.CustomObjectsApi);
  let namespace = '';

  beforeAll(async () => {
    namespace = await createTestNamespace(kc, 'smoke');
    const ext = kc.makeApiClient(k8s.ApiextensionsV1Api);
    await ext.createCustomResourceDefinition({ body: widgetCrd }).catch((error: unknown) => {
      if (!(error instanceof k8s.ApiException && error.code === 409)) throw error;
    });
    await eventually('the Widget CRD to be established', async () => {
      const crd = await ext.readCustomResourceDefinition({ name: `${PLURAL}.${GROUP}` });
      return crd.status?.conditions?.some((c) => c.type === 'Established' && c.status === 'True')
        ? true
        : undefined;
    });
  });

  afterAll(async () => {
    await deleteTestNamespace(kc, namespace);
  });

  it('serves a real, current kube-apiserver', async () => {
    const version = await kc.makeApiClient(k8s.VersionApi).getCode();
    expect(version.gitVersion).toMatch(/^v1\.36\.\d+$/);
  });

  it('creates and reads a namespace and a custom object', async () => {
    const ns = await core.readNamespace({ name: namespace });
    expect(ns.status?.phase).toBe('Active');

    await custom.createNamespacedCustomObject({
      group: GROUP,
      version: 'v1',
      namespace,
      plural: PLURAL,
      body: widget(namespace, 'first'),
    });
    const read = (await custom.getNamespacedCustomObject({
      group: GROUP,
      version: 'v1',
      namespace,
      plural: PLURAL,
      name: 'first',
    })) as Widget;
    expect(read.spec.size).toBe(3);
    expect(read.metadata.uid).toBeTruthy();
  });

  it('delivers watch events for custom objects', async () => {
    const seen: { type: string; name: string | undefined }[] = [];
    const watch = new k8s.Watch(kc);
    const request = await watch.watch(
      `/apis/${GROUP}/v1/namespaces/${namespace}/${PLURAL}`,
      {},
      (type: string, object: Widget) => {
        seen.push({ type, name: object.metadata.name });
      },
      () => undefined,
    );
    try {
      await custom.createNamespacedCustomObject({
        group: GROUP,
        version: 'v1',
        namespace,
        plural: PLURAL,
        body: widget(namespace, 'watched'),
      });
      await custom.deleteNamespacedCustomObject({
        group: GROUP,
        version: 'v1',
        namespace,
        plural: PLURAL,
        name: 'watched',
      });
      await eventually('ADDED and DELETED events', () => {
        const forWatched = seen.filter((e) => e.name === 'watched').map((e) => e.type);
        return forWatched.includes('ADDED') && forWatched.includes('DELETED') ? true : undefined;
      });
    } finally {
      request.abort();
    }
  });

  it('garbage-collects a ConfigMap when its custom-object owner is deleted', async () => {
    const owner = (await custom.createNamespacedCustomObject({
      group: GROUP,
      version: 'v1',
      namespace,
      plural: PLURAL,
      body: widget(namespace, 'owner'),
    })) as Widget;
    await core.createNamespacedConfigMap({
      namespace,
      body: {
        metadata: {
          name: 'owned',
          ownerReferences: [
            {
              apiVersion: owner.apiVersion,
              kind: owner.kind,
              name: 'owner',
              uid: owner.metadata.uid ?? '',
              controller: true,
              blockOwnerDeletion: true,
            },
          ],
        },
        data: { k: 'v' },
      },
    });
    await custom.deleteNamespacedCustomObject({
      group: GROUP,
      version: 'v1',
      namespace,
      plural: PLURAL,
      name: 'owner',
    });
    // The garbage collector learns about new resource types on its discovery resync (30 s).
    await eventually(
      'the owned ConfigMap to be garbage-collected',
      async () => {
        try {
          await core.readNamespacedConfigMap({ namespace, name: 'owned' });
          return undefined;
        } catch (error) {
          if (isNotFound(error)) return true;
          throw error;
        }
      },
      90_000,
    );
  }, 120_000);

  it('answers kubectl with the written kubeconfig', async () => {
    const { stdout } = await kubectl([
      'get',
      'namespace',
      namespace,
      '-o',
      'jsonpath={.status.phase}',
    ]);
    expect(stdout).toBe('Active');
    const applied = await kubectl(['apply', '-n', namespace, '-f', '-'], {
      input: JSON.stringify(widget(namespace, 'from-kubectl')),
    });
    expect(applied.stdout).toContain('widget.smoke.nats-manager.test/from-kubectl created');
    const { stdout: sizes } = await kubectl([
      'get',
      PLURAL,
      '-n',
      namespace,
      '-o',
      'jsonpath={.items[*].spec.size}',
    ]);
    expect(sizes.split(' ').length).toBeGreaterThan(0);
    expect(sizes).toContain('3');
  });
});
