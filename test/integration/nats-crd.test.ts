// The CRD's schema and CEL rules are the second line of defence when the webhooks are down: they
// must hold on the real kube-apiserver by themselves. No webhook is installed in this suite.
import { KubeApiError, requestJson, resourcePath } from '../../src/kube/api.ts';
import { defaultNatsSpec } from '../../src/api/defaults.ts';
import { NATS_API_VERSION, NATS_KIND, type NatsSpec } from '../../src/api/nats.ts';
import {
  createTestNamespace,
  deleteTestNamespace,
  kubectl,
  testKubeConfig,
} from '../support/kube.ts';

interface NatsObject {
  metadata: { name: string; generation?: number };
  spec: Record<string, unknown>;
}

describe('NATS CRD on the real apiserver', () => {
  const kc = testKubeConfig();
  let namespace = '';
  let counter = 0;

  beforeAll(async () => {
    namespace = await createTestNamespace(kc, 'nats-crd');
  });

  afterAll(async () => {
    await deleteTestNamespace(kc, namespace);
  });

  const path = (name?: string): string =>
    resourcePath(NATS_API_VERSION, NATS_KIND, namespace, name);

  async function create(spec: unknown): Promise<NatsObject> {
    counter += 1;
    return (await requestJson(kc, {
      method: 'POST',
      path: path(),
      body: {
        apiVersion: NATS_API_VERSION,
        kind: NATS_KIND,
        metadata: { name: `nats-${String(counter)}`, namespace },
        spec,
      },
    })) as NatsObject;
  }

  async function patch(name: string, spec: unknown): Promise<NatsObject> {
    return (await requestJson(kc, {
      method: 'PATCH',
      path: path(name),
      body: { spec },
      contentType: 'application/merge-patch+json',
    })) as NatsObject;
  }

  async function rejection(attempt: Promise<unknown>): Promise<string> {
    try {
      await attempt;
    } catch (error) {
      if (error instanceof KubeApiError && error.status === 422) return error.message;
      throw error;
    }
    throw new Error('the apiserver accepted what it should have refused');
  }

  it('fills every upstream default into an empty spec', async () => {
    const created = await create({});
    expect(created.spec).toEqual({
      cluster: { size: 3 },
      jetStream: {
        memStorage: { enabled: true, size: '1Gi' },
        fileStorage: { storageClassName: 'default' },
      },
      logging: { debug: false, trace: false },
      resources: {
        limits: { cpu: '500m', memory: '1Gi' },
        requests: { cpu: '40m', memory: '64Mi' },
      },
    });
  });

  it.each([
    {},
    { cluster: { size: 5 } },
    { jetStream: { memStorage: { enabled: false } } },
    { jetStream: { memStorage: {}, fileStorage: { storageClassName: 'fast', size: '5Gi' } } },
    { logging: { trace: true }, resources: { limits: { memory: '2Gi' } } },
    { labels: { team: 'a' }, annotations: { note: 'x' } },
  ] satisfies NatsSpec[])('defaults %j exactly as the pure defaulting does', async (spec) => {
    const created = await create(spec);
    expect(created.spec).toEqual(defaultNatsSpec(spec));
  });

  it('refuses even and non-positive sizes', async () => {
    expect(await rejection(create({ cluster: { size: 2 } }))).toContain(
      'spec.cluster.size: Invalid value: 2: size only accepts odd numbers',
    );
    expect(await rejection(create({ cluster: { size: 0 } }))).toContain(
      'spec.cluster.size: Invalid value: 0: spec.cluster.size in body should be greater than or equal to 1',
    );
  });

  it('refuses scaling from more than one server down to one, and allows scaling up', async () => {
    const nats = await create({ cluster: { size: 3 } });
    expect(await rejection(patch(nats.metadata.name, { cluster: { size: 1 } }))).toContain(
      'spec.cluster.size',
    );
    const scaled = await patch(nats.metadata.name, { cluster: { size: 5 } });
    expect(scaled.spec.cluster).toEqual({ size: 5 });
    const single = await create({ cluster: { size: 1 } });
    expect((await patch(single.metadata.name, { cluster: { size: 3 } })).spec.cluster).toEqual({
      size: 3,
    });
  });

  // As the Go manager's CRD: the integer 0 is refused while enabled, the string "0" its clients
  // send for an unset size is accepted (and means the default).
  it('refuses memory storage enabled with the integer 0, and malformed quantities', async () => {
    const refused = await rejection(
      create({ jetStream: { memStorage: { enabled: true, size: 0 } } }),
    );
    expect(refused).toContain('spec.jetStream.memStorage.size');
    expect(refused).toContain('memStorage can only be enabled if size is not 0');
    const unset = await create({ jetStream: { memStorage: { enabled: true, size: '0' } } });
    expect(unset.spec.jetStream).toMatchObject({ memStorage: { enabled: true, size: '0' } });
    expect(await rejection(create({ jetStream: { memStorage: { size: '1Gx' } } }))).toContain(
      'spec.jetStream.memStorage.size',
    );
    const off = await create({ jetStream: { memStorage: { enabled: false, size: '0' } } });
    expect(off.spec.jetStream).toMatchObject({ memStorage: { enabled: false, size: '0' } });
  });

  it('keeps the storage class immutable and the size from shrinking, but lets a size be set later and grow', async () => {
    const nats = await create({});
    // Regression: upstream once refused this because its rule compared the whole fileStorage.
    const sized = await patch(nats.metadata.name, { jetStream: { fileStorage: { size: '2Gi' } } });
    expect(sized.spec.jetStream).toMatchObject({ fileStorage: { size: '2Gi' } });

    // Lowered: refused (a claim cannot shrink). Raised: the CRD cannot see the StorageClass, so
    // it lets it through; the webhook refuses it where the class cannot expand.
    const lowered = await rejection(
      patch(nats.metadata.name, { jetStream: { fileStorage: { size: '1Gi' } } }),
    );
    expect(lowered).toContain('spec.jetStream.fileStorage.size');
    expect(lowered).toContain(
      'fileStorage is immutable once it was set: its size can grow, but not be lowered, as a volume claim cannot shrink',
    );
    expect(
      await rejection(patch(nats.metadata.name, { jetStream: { fileStorage: { size: null } } })),
    ).toContain('spec.jetStream.fileStorage');
    expect(
      await rejection(
        patch(nats.metadata.name, { jetStream: { fileStorage: { storageClassName: 'fast' } } }),
      ),
    ).toContain('spec.jetStream.fileStorage.storageClassName');
    // The same size in another notation is no change.
    const same = await patch(nats.metadata.name, {
      jetStream: { fileStorage: { size: '2048Mi' } },
    });
    expect(same.spec.jetStream).toMatchObject({ fileStorage: { size: '2048Mi' } });
    const grown = await patch(nats.metadata.name, { jetStream: { fileStorage: { size: '3Gi' } } });
    expect(grown.spec.jetStream).toMatchObject({ fileStorage: { size: '3Gi' } });
  });

  it('answers kubectl with the rule message when the webhook is not there', async () => {
    const manifest = JSON.stringify({
      apiVersion: NATS_API_VERSION,
      kind: NATS_KIND,
      metadata: { name: 'from-kubectl', namespace },
      spec: { cluster: { size: 4 } },
    });
    await expect(kubectl(['apply', '-f', '-'], { input: manifest })).rejects.toThrow(
      /size only accepts odd numbers/,
    );
    const { stdout } = await kubectl(['get', 'nats', '-n', namespace, '-o', 'name']);
    expect(stdout).not.toContain('from-kubectl');
  });
});
