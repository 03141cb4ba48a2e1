// What the API server answers for NATS writes with the webhooks ABSENT (the CRD's schema and CEL
// rules alone) and PRESENT (our mutating and validating webhooks in front, served in-process and
// registered for this suite's namespace only), CREATE and UPDATE: zero sizes mean unset and can
// be replaced, no immutable field leaves a resource that can only be deleted, every error of
// every layer comes in one answer, names and annotations that cannot work are refused, the
// provider's minimum holds, and the Go manager's messages and kubectl lines work.
import { randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { createCertificateAuthority, issueCertificate } from '../../certs/x509.ts';
import { NATS_API_VERSION, NATS_KIND, type Nats } from '../../src/api/nats.ts';
import {
  KubeApiError,
  clientFor,
  createObject,
  requestJson,
  resourcePath,
  type KubeObject,
} from '../../src/kube/api.ts';
import { readProvider } from '../../src/kube/shoot-info.ts';
import { loadWebhookConfigurations } from '../../src/manager/webhook-configurations.ts';
import { natsRenderInput, renderNats } from '../../src/render/render.ts';
import { DEFAULT_IMAGES } from '../../src/render/context.ts';
import {
  createAdmissionApp,
  startWebhookServer,
  type WebhookServer,
} from '../../webhooks/server.ts';
import {
  createTestNamespace,
  deleteTestNamespace,
  eventually,
  kubectl,
  testKubeConfig,
} from '../support/kube.ts';

const SERVED = 'eventing-nats';
type Mode = 'absent' | 'present';
const MODES: readonly Mode[] = ['absent', 'present'];

interface Stored {
  metadata: { name: string; uid: string };
  spec: Record<string, unknown> & { jetStream: Record<string, Record<string, unknown>> };
}

describe('NATS admission, webhooks absent and present', () => {
  const kc = testKubeConfig();
  const namespaces: Record<Mode, string> = { absent: '', present: '' };
  const suffix = randomBytes(3).toString('hex');
  const configurationName = `nats-admission-layers-${suffix}`;
  let server: WebhookServer | undefined;
  let provider: string | undefined;

  beforeAll(async () => {
    namespaces.absent = await createTestNamespace(kc, 'layers-absent');
    namespaces.present = await createTestNamespace(kc, 'layers-present');

    const ca = createCertificateAuthority('nats-admission-layers-ca', 1);
    const serving = issueCertificate(ca, {
      commonName: 'nats-admission-layers',
      ipAddresses: ['127.0.0.1'],
      usage: 'server',
      validDays: 1,
    });
    const app = createAdmissionApp({
      natsName: SERVED,
      natsNamespace: namespaces.present,
      managerUsername: 'system:serviceaccount:kyma-system:nats-manager',
      breakGlassUsers: [],
      breakGlassGroups: [],
      provider: () => provider,
    });
    server = await startWebhookServer({
      app,
      host: '127.0.0.1',
      port: 0,
      certificates: {
        current: () => ({ ...serving, caPem: ca.certPem }),
        onChange: () => () => undefined,
      },
    });
    const port = (server.server.address() as AddressInfo).port;
    const caBundle = Buffer.from(ca.certPem).toString('base64');
    // The NATS entries of deploy/webhooks, for this suite's namespace only, and Fail: an answer
    // that did not come from the webhook must not pass for one.
    const [mutating, validating] = loadWebhookConfigurations();
    const natsEntries = (configuration: typeof mutating, path: string): unknown[] =>
      (configuration?.webhooks ?? [])
        .filter((webhook) => webhook.clientConfig.service?.path === path)
        .map((webhook) => ({
          ...webhook,
          failurePolicy: 'Fail',
          clientConfig: { url: `https://127.0.0.1:${String(port)}${path}`, caBundle },
          namespaceSelector: {
            matchLabels: { 'kubernetes.io/metadata.name': namespaces.present },
          },
        }));
    for (const [configuration, path, kind] of [
      [mutating, '/mutate-nats', 'MutatingWebhookConfiguration'],
      [validating, '/validate-nats', 'ValidatingWebhookConfiguration'],
    ] as const) {
      await createObject(kc, {
        apiVersion: 'admissionregistration.k8s.io/v1',
        kind,
        metadata: { name: configurationName },
        webhooks: natsEntries(configuration, path),
      });
    }
    // The API server picks new configurations up from a watch: wait until they answer.
    await eventually('the webhooks to answer', async () => {
      const message = await refusal(create('present', 'not-served', {}, 'All')).catch(
        () => undefined,
      );
      return message?.includes('serves only one NATS resource') === true ? true : undefined;
    });
  }, 60_000);

  afterAll(async () => {
    for (const kind of ['mutatingwebhookconfigurations', 'validatingwebhookconfigurations']) {
      await requestJson(kc, {
        method: 'DELETE',
        path: `/apis/admissionregistration.k8s.io/v1/${kind}/${configurationName}`,
      }).catch(() => undefined);
    }
    await server?.close();
    for (const namespace of Object.values(namespaces)) {
      if (namespace !== '') await deleteTestNamespace(kc, namespace);
    }
  });

  const path = (mode: Mode, name?: string): string =>
    resourcePath(NATS_API_VERSION, NATS_KIND, namespaces[mode], name);

  function create(mode: Mode, name: string, spec: unknown, dryRun?: 'All'): Promise<Stored> {
    return requestJson(kc, {
      method: 'POST',
      path: path(mode),
      query: { dryRun },
      body: {
        apiVersion: NATS_API_VERSION,
        kind: NATS_KIND,
        metadata: { name, namespace: namespaces[mode] },
        spec,
      },
    }) as Promise<Stored>;
  }

  function patch(mode: Mode, name: string, spec: unknown): Promise<Stored> {
    return requestJson(kc, {
      method: 'PATCH',
      path: path(mode, name),
      body: { spec },
      contentType: 'application/merge-patch+json',
    }) as Promise<Stored>;
  }

  async function remove(mode: Mode, name: string): Promise<void> {
    await requestJson(kc, { method: 'DELETE', path: path(mode, name) });
    await eventually(`${name} to be gone`, async () => {
      try {
        await requestJson(kc, { method: 'GET', path: path(mode, name) });
        return undefined;
      } catch (error) {
        return error instanceof KubeApiError && error.status === 404 ? true : undefined;
      }
    });
  }

  async function refusal(attempt: Promise<unknown>): Promise<string> {
    try {
      await attempt;
    } catch (error) {
      if (error instanceof KubeApiError && (error.status === 422 || error.status === 400)) {
        return error.message;
      }
      throw error;
    }
    throw new Error('the API server accepted what it should have refused');
  }

  /** Each case gets the served name afresh: with the webhooks present no other is admitted. */
  async function withResource<T>(
    mode: Mode,
    spec: unknown,
    body: (name: string, created: Stored) => Promise<T>,
  ): Promise<T> {
    const created = await create(mode, SERVED, spec);
    try {
      return await body(SERVED, created);
    } finally {
      await remove(mode, SERVED);
    }
  }

  /** What the manager would render for a stored resource, accepted by the API server. */
  async function renderAccepted(mode: Mode, stored: Stored): Promise<KubeObject[]> {
    const nats = { ...stored, apiVersion: NATS_API_VERSION, kind: NATS_KIND } as unknown as Nats;
    const children = renderNats(natsRenderInput(nats), {
      istioPresent: false,
      systemAccountPassword: 'p',
      images: DEFAULT_IMAGES,
      clusterDomain: 'cluster.local',
      ...(provider === undefined ? {} : { provider }),
    });
    for (const child of children) {
      await createObject(
        kc,
        { ...child, metadata: { ...child.metadata, namespace: namespaces[mode] } },
        { dryRun: true },
      );
    }
    return children;
  }

  const claimSize = (children: KubeObject[]): unknown =>
    (
      children.find((c) => c.kind === 'StatefulSet') as unknown as {
        spec: {
          volumeClaimTemplates: { spec: { resources: { requests: { storage: string } } } }[];
        };
      }
    ).spec.volumeClaimTemplates[0]?.spec.resources.requests.storage;

  const natsConf = (children: KubeObject[]): string =>
    (children.find((c) => c.kind === 'ConfigMap') as unknown as { data: Record<string, string> })
      .data['nats.conf'] ?? '';

  describe.each(MODES)('webhooks %s', (mode) => {
    it('takes a zero file-storage size as unset: stored as sent, rendered 1Gi, replaceable once, then only raised', async () => {
      for (const zero of ['0', 0, '0Gi']) {
        await withResource(
          mode,
          { jetStream: { fileStorage: { size: zero } } },
          async (name, created) => {
            expect(created.spec.jetStream.fileStorage?.size).toBe(zero);
            const children = await renderAccepted(mode, created);
            expect(claimSize(children)).toBe('1Gi');
            expect(natsConf(children)).toContain('max_file_store: 805306368'); // 1Gi less 256Mi headroom
            const sized = await patch(mode, name, { jetStream: { fileStorage: { size: '5Gi' } } });
            expect(sized.spec.jetStream.fileStorage?.size).toBe('5Gi');
            // Raised: the rules and CEL allow it (this suite's webhook reads no StorageClass;
            // test/e2e/admission.test.ts has the manager's, which does).
            const grown = await patch(mode, name, { jetStream: { fileStorage: { size: '6Gi' } } });
            expect(grown.spec.jetStream.fileStorage?.size).toBe('6Gi');
            for (const lower of ['5Gi', '0']) {
              expect(
                await refusal(patch(mode, name, { jetStream: { fileStorage: { size: lower } } })),
              ).toContain(
                'fileStorage is immutable once it was set: its size can grow, but not be lowered, as a volume claim cannot shrink',
              );
            }
            expect(
              await refusal(patch(mode, name, { jetStream: { fileStorage: { size: null } } })),
            ).toContain('fileStorage is immutable once it was set');
          },
        );
      }
    });

    // Clients built on the Go manager's API types send unset quantities as "0" and unset
    // sections as {}.
    it('accepts a spec as clients built on the Go types send it, and renders the defaults', async () => {
      const goClientSpec = {
        cluster: { size: 3 },
        jetStream: {
          memStorage: { enabled: true, size: '0' },
          fileStorage: { size: '0', storageClassName: 'default' },
        },
        logging: {},
        labels: {},
        annotations: {},
      };
      await withResource(mode, goClientSpec, async (name, created) => {
        expect(created.spec.jetStream).toEqual(goClientSpec.jetStream);
        expect(created.spec.logging).toEqual({ debug: false, trace: false });
        const children = await renderAccepted(mode, created);
        expect(claimSize(children)).toBe('1Gi');
        expect(natsConf(children)).toContain('max_memory_store: 1073741824');
        expect(natsConf(children)).toContain('max_file_store: 805306368'); // 1Gi less 256Mi headroom
        const sized = await patch(mode, name, { jetStream: { fileStorage: { size: '3Gi' } } });
        expect(claimSize(await renderAccepted(mode, sized))).toBe('3Gi');
      });
    });

    it('persists no file-storage size by defaulting, so that one can be set later', async () => {
      await withResource(mode, {}, async (name, created) => {
        expect(created.spec.jetStream.fileStorage).toEqual({ storageClassName: 'default' });
        const read = (await requestJson(kc, { method: 'GET', path: path(mode, name) })) as Stored;
        expect(read.spec.jetStream.fileStorage).toEqual({ storageClassName: 'default' });
        // An unrelated update still persists none.
        const scaled = await patch(mode, name, { cluster: { size: 5 } });
        expect(scaled.spec.jetStream.fileStorage).toEqual({ storageClassName: 'default' });
        const sized = await patch(mode, name, { jetStream: { fileStorage: { size: '2Gi' } } });
        expect(sized.spec.jetStream.fileStorage).toEqual({
          storageClassName: 'default',
          size: '2Gi',
        });
        expect(claimSize(await renderAccepted(mode, sized))).toBe('2Gi');
      });
    });

    it('takes memStorage {size: "0"} as the Go manager does: enabled, rendered with 1Gi', async () => {
      await withResource(mode, { jetStream: { memStorage: { size: '0' } } }, async (_, created) => {
        expect(created.spec.jetStream.memStorage).toEqual({ enabled: true, size: '0' });
        expect(natsConf(await renderAccepted(mode, created))).toContain(
          'max_memory_store: 1073741824',
        );
      });
      // Its CRD compares with the integer 0: that one is refused, with its message.
      expect(
        await refusal(create(mode, SERVED, { jetStream: { memStorage: { size: 0 } } })),
      ).toContain('memStorage can only be enabled if size is not 0');
    });

    it('refuses storage class names no claim could carry, and keeps a valid one immutable', async () => {
      expect(
        await refusal(
          create(mode, SERVED, { jetStream: { fileStorage: { storageClassName: 'Fast_SSD' } } }),
        ),
      ).toContain('spec.jetStream.fileStorage.storageClassName');
      await withResource(
        mode,
        { jetStream: { fileStorage: { storageClassName: 'fast.example.com' } } },
        async (name, created) => {
          await renderAccepted(mode, created);
          expect(
            await refusal(
              patch(mode, name, { jetStream: { fileStorage: { storageClassName: 'slow' } } }),
            ),
          ).toContain('fileStorage is immutable once it was set');
        },
      );
    });

    it("refuses with the Go manager's messages", async () => {
      expect(await refusal(create(mode, SERVED, { cluster: { size: 2 } }))).toContain(
        'size only accepts odd numbers',
      );
      expect(await refusal(create(mode, SERVED, { cluster: { size: 0 } }))).toContain(
        'should be greater than or equal to 1',
      );
      await withResource(mode, { cluster: { size: 3 } }, async (name) => {
        expect(await refusal(patch(mode, name, { cluster: { size: 1 } }))).toContain(
          'cannot be set to 1 if size was greater than 1',
        );
      });
    });

    it('refuses label and annotation keys no child could carry', async () => {
      for (const field of ['labels', 'annotations']) {
        for (const key of ['bad key', 'UPPER.example.com/x', 'a/b/c', `x/${'n'.repeat(64)}`]) {
          expect(await refusal(create(mode, SERVED, { [field]: { [key]: 'v' } }))).toContain(
            `spec.${field}`,
          );
        }
        await withResource(mode, { [field]: { 'example.com/ok': 'v', plain: 'v' } }, () =>
          Promise.resolve(),
        );
      }
    });

    it('refuses a label value no child could carry, and a cluster too big for nats.conf', async () => {
      expect(await refusal(create(mode, SERVED, { labels: { team: 'x'.repeat(64) } }))).toMatch(
        /spec\.labels(\.|\[)team/,
      );
      expect(await refusal(create(mode, SERVED, { cluster: { size: 1001 } }))).toContain(
        'spec.cluster.size',
      );
    });

    it('answers hostile quantities well under a second', async () => {
      const timed = async (value: string): Promise<number> => {
        const started = performance.now();
        await refusal(create(mode, SERVED, { jetStream: { fileStorage: { size: value } } }));
        return performance.now() - started;
      };
      for (const value of ['1e2147483647', '9'.repeat(100_000), '1e-2147483647']) {
        // An expensive input is slow every time; a busy shared machine only now and then.
        const first = await timed(value);
        const ms = first < 1_000 ? first : Math.min(first, await timed(value));
        expect({ value: value.slice(0, 20), fast: ms < 1_000 }).toEqual({
          value: value.slice(0, 20),
          fast: true,
        });
      }
    });
  });

  describe('webhooks present only', () => {
    it('reports the errors of every layer in one answer', async () => {
      const message = await refusal(
        create('present', 'other', {
          cluster: { size: 4 }, // a CEL rule
          jetStream: { fileStorage: { size: '1GB' } }, // the schema
          labels: { 'bad key': 'x' }, // the webhook only
        }),
      );
      for (const part of [
        'metadata.name: Forbidden: the NATS Manager serves only one NATS resource',
        'spec.cluster.size: Invalid value: 4: size only accepts odd numbers',
        'spec.jetStream.fileStorage.size: Invalid value: "1GB": must be a Kubernetes quantity',
        'spec.labels: Invalid value: "bad key"',
      ]) {
        expect(message).toContain(part);
      }
      // Without the webhooks the API server stops at its own layers and never sees the rest.
      const crdOnly = await refusal(
        create('absent', 'other', {
          cluster: { size: 4 },
          jetStream: { fileStorage: { size: '1GB' } },
          labels: { 'bad key': 'x' },
        }),
      );
      expect(crdOnly).toContain('size only accepts odd numbers');
      expect(crdOnly).not.toContain('serves only one NATS resource');
    });

    it('refuses a name whose pods could not be created, with the exact limit', async () => {
      const name = `nats-${'a'.repeat(48)}`;
      const message = await refusal(create('present', name, {}));
      expect(message).toContain('controller-revision-hash label');
      expect(message).toContain('at most 52 characters when it contains "nats", else 47');
    });

    it('refuses annotations that would make a child too large', async () => {
      const message = await refusal(
        create('present', SERVED, { annotations: { 'example.com/blob': 'x'.repeat(262_144) } }),
      );
      expect(message).toContain('spec.annotations');
      expect(message).toContain('at most 262144 (256KiB)');
    });

    it('on alicloud defaults file storage to 20Gi and refuses less, as shoot-info says', async () => {
      const configMapPath = '/api/v1/namespaces/kube-system/configmaps/shoot-info';
      await createObject(kc, {
        apiVersion: 'v1',
        kind: 'ConfigMap',
        metadata: { name: 'shoot-info', namespace: 'kube-system' },
        data: { provider: 'alicloud' },
      });
      try {
        provider = await readProvider(clientFor(kc));
        expect(provider).toBe('alicloud');
        expect(
          await refusal(
            create('present', SERVED, { jetStream: { fileStorage: { size: '10Gi' } } }),
          ),
        ).toContain('must be at least 20Gi on alicloud');
        await withResource('present', {}, async (_, created) => {
          expect(claimSize(await renderAccepted('present', created))).toBe('20Gi');
        });
        await withResource(
          'present',
          { jetStream: { fileStorage: { size: '0' } } },
          async (_, created) => {
            expect(claimSize(await renderAccepted('present', created))).toBe('20Gi');
          },
        );
      } finally {
        provider = undefined;
        await requestJson(kc, { method: 'DELETE', path: configMapPath });
      }
      expect(await readProvider(clientFor(kc))).toBeUndefined();
    });
  });

  // The StatefulSet controller itself: the limit the admission refusal states is the real one,
  // and pods carry the label the Go manager's troubleshooting selects on.
  describe('the rendered StatefulSet on the real controller', () => {
    beforeAll(async () => {
      await createObject(kc, {
        apiVersion: 'scheduling.k8s.io/v1',
        kind: 'PriorityClass',
        metadata: { name: 'nats-manager-priority-class' },
        value: 2_000_000,
      }).catch((error: unknown) => {
        if (!(error instanceof KubeApiError && error.status === 409)) throw error;
      });
    });

    async function applyStatefulSet(name: string, attempt = 0): Promise<void> {
      const nats = {
        apiVersion: NATS_API_VERSION,
        kind: NATS_KIND,
        metadata: { name, namespace: namespaces.absent, uid: 'uid' },
        spec: { cluster: { size: 1 } },
      } as Nats;
      const statefulSet = renderNats(natsRenderInput(nats), {
        istioPresent: false,
        systemAccountPassword: 'p',
        images: DEFAULT_IMAGES,
        clusterDomain: 'cluster.local',
      }).find((child) => child.kind === 'StatefulSet');
      if (statefulSet === undefined) throw new Error('no StatefulSet');
      // No owner: the NATS resource of the uid does not exist, and the collector would take it.
      const metadata = Object.fromEntries(
        Object.entries(statefulSet.metadata).filter(([key]) => key !== 'ownerReferences'),
      );
      const spec = statefulSet.spec as { template: { metadata?: { annotations?: object } } };
      // A different template gives a different revision hash.
      const template = {
        ...spec.template,
        metadata: {
          ...spec.template.metadata,
          annotations: { ...spec.template.metadata?.annotations, 'test/attempt': String(attempt) },
        },
      };
      await createObject(kc, { ...statefulSet, metadata, spec: { ...spec, template } });
    }

    /** The name of the StatefulSet's revision, which is also its pods' label value. */
    async function revisionOf(name: string): Promise<string> {
      return eventually('the ControllerRevision', async () => {
        const { stdout } = await kubectl([
          'get',
          'controllerrevisions',
          '-n',
          namespaces.absent,
          '-o',
          'jsonpath={range .items[*]}{.metadata.name}{"\\n"}{end}',
        ]);
        return stdout
          .split('\n')
          .find((revision) => new RegExp(`^${name}-[a-z0-9]+$`).test(revision));
      });
    }

    async function failedCreate(name: string): Promise<string> {
      return eventually('the FailedCreate event', async () => {
        const { stdout } = await kubectl([
          'get',
          'events',
          '-n',
          namespaces.absent,
          '--field-selector',
          `involvedObject.name=${name},reason=FailedCreate`,
          '-o',
          'json',
        ]);
        const { items } = JSON.parse(stdout) as { items: { message?: string }[] };
        return items[0]?.message;
      });
    }

    async function podOf(name: string): Promise<string> {
      return eventually('the pod', async () => {
        const { stdout } = await kubectl([
          'get',
          'pods',
          '-n',
          namespaces.absent,
          '-l',
          `nats_cluster=${name}`,
          '-o',
          'name',
        ]);
        return stdout.trim() === '' ? undefined : stdout.trim();
      });
    }

    it('creates the pods of a 52-character name, which kubectl finds by nats_cluster', async () => {
      const name = `nats-${'a'.repeat(47)}`;
      await applyStatefulSet(name);
      expect(await podOf(name)).toBe(`pod/${name}-0`);
      // Whatever the hash, the label fits: 52 + "-" + at most 10.
      expect((await revisionOf(name)).length).toBeLessThanOrEqual(63);
    });

    // The hash is a 32-bit number written in decimal digits (then safe-encoded): 10 characters
    // for three in four templates, 9 or fewer for the rest. A 53-character name fails whenever
    // it is 10, so the refusal at 53 is the worst case, not a guess; try templates until one is.
    it('cannot create the pods of a 53-character name once the revision hash has 10 characters', async () => {
      const outcomes: string[] = [];
      for (const letter of 'bcdefghijk') {
        const name = `nats-${letter.repeat(48)}`;
        await applyStatefulSet(name, outcomes.length);
        const revision = await revisionOf(name);
        if (revision.length <= 63) {
          // A shorter hash: the label fits, and the controller does create the pod.
          expect(await podOf(name)).toBe(`pod/${name}-0`);
          outcomes.push(`${revision} fits`);
          continue;
        }
        expect(revision.length).toBe(53 + 1 + 10);
        expect(await failedCreate(name)).toContain(
          `metadata.labels: Invalid value: "${revision}": must be no more than 63`,
        );
        return;
      }
      throw new Error(`no 10-character hash in ten templates: ${outcomes.join(', ')}`);
    });
  });
});
