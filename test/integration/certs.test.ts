// Webhook certificates against the real apiserver: replicas sharing one Secret, rotation seen
// across replicas, corrupt content replaced, and the CA bundle written into real webhook
// configurations (which point nowhere and match nothing, so no other suite is affected).
import { randomBytes, X509Certificate } from 'node:crypto';
import { injectCaBundle } from '../../certs/ca-bundle.ts';
import { SECRET_KEYS, servingNames } from '../../certs/plan.ts';
import {
  type SecretCertificateSource,
  type SecretSourceOptions,
  startSecretCertificateSource,
} from '../../certs/secret-source.ts';
import type { ServingCertificate } from '../../certs/source.ts';
import { createCertificateAuthority } from '../../certs/x509.ts';
import {
  clientFor,
  createObject,
  type KubeObject,
  requestJson,
  resourcePath,
} from '../../src/kube/api.ts';
import { jsonLogger } from '../../src/base/log.ts';
import { createKubeClient } from '../../src/kube/client.ts';
import {
  createTestNamespace,
  deleteTestNamespace,
  eventually,
  testKubeConfig,
} from '../support/kube.ts';

const DAY = 86_400_000;
const WEBHOOK_API = 'admissionregistration.k8s.io/v1';

interface Secret {
  metadata: { resourceVersion: string };
  type: string;
  data: Record<string, string>;
}

function decoded(secret: Secret): Record<string, string> {
  return Object.fromEntries(
    Object.entries(secret.data).map(([key, value]) => [
      key,
      Buffer.from(value, 'base64').toString(),
    ]),
  );
}

function expectServesNames(certificate: ServingCertificate): void {
  const cert = new X509Certificate(certificate.certPem);
  expect(cert.checkIssued(new X509Certificate(certificate.caPem))).toBe(true);
  expect(cert.checkHost('nats-manager-webhook.certs.svc')).toBe('nats-manager-webhook.certs.svc');
  expect(cert.checkIP('127.0.0.1')).toBe('127.0.0.1');
}

describe('webhook certificates on the real apiserver', () => {
  const kc = testKubeConfig();
  const names = servingNames('nats-manager-webhook', 'certs');
  let namespace = '';
  const sources: SecretCertificateSource[] = [];

  const secretPath = (name: string): string => resourcePath('v1', 'Secret', namespace, name);
  const readSecret = async (name: string): Promise<Secret> =>
    (await requestJson(kc, { method: 'GET', path: secretPath(name) })) as Secret;

  async function start(
    secretName: string,
    extra: Partial<SecretSourceOptions> = {},
  ): Promise<SecretCertificateSource> {
    const source = await startSecretCertificateSource({
      // A client each, as two replicas have: their own connections, nothing shared.
      client: createKubeClient(kc),
      namespace,
      secretName,
      names,
      resyncIntervalMs: 3_600_000,
      ...extra,
    });
    sources.push(source);
    return source;
  }

  beforeAll(async () => {
    namespace = await createTestNamespace(kc, 'certs');
  });

  afterAll(async () => {
    await Promise.all(sources.map((source) => source.close()));
    await deleteTestNamespace(kc, namespace);
  });

  it('two replicas starting at once converge on one CA', async () => {
    const lines: string[] = [];
    const log = jsonLogger({}, (line) => lines.push(line));
    const [a, b] = await Promise.all([start('converge', { log }), start('converge', { log })]);
    expect(a.current()).toEqual(b.current());
    // Both found no Secret and planned a CA; the one whose create lost took the winner's.
    expect(lines.filter((line) => line.includes('Secret written'))).toHaveLength(1);
    expect(
      lines.filter((line) => line.includes('wrote the certificate Secret first')),
    ).toHaveLength(1);
    expectServesNames(a.current());

    const secret = await readSecret('converge');
    expect(secret.type).toBe('kubernetes.io/tls');
    const data = decoded(secret);
    expect(data[SECRET_KEYS.caCert]).toBe(a.current().caPem);
    expect(data[SECRET_KEYS.cert]).toBe(a.current().certPem);
  }, 120_000);

  it('a renewal by one replica reaches the other through onChange', async () => {
    // One clock for both, as replicas share real time; moved to day 61 of the serving cert.
    let offsetMs = 0;
    const clock = (): Date => new Date(Date.now() + offsetMs);
    const writer = await start('rotation', { clock });
    const watcher = await start('rotation', { clock, resyncIntervalMs: 200 });
    const before = writer.current();
    const seen: ServingCertificate[] = [];
    watcher.onChange((certificate) => seen.push(certificate));

    offsetMs = 61 * DAY;
    await writer.resync();
    const after = writer.current();
    expect(after.certPem).not.toBe(before.certPem);
    expect(after.caPem).toBe(before.caPem);
    await eventually('the other replica to see the renewal', () =>
      seen.at(-1)?.certPem === after.certPem ? true : undefined,
    );
    expect(watcher.current()).toEqual(after);
  }, 120_000);

  it('replaces corrupt Secret content and says why', async () => {
    await createObject(kc, {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: 'corrupt', namespace },
      type: 'Opaque',
      data: {
        [SECRET_KEYS.caCert]: Buffer.from('-----BEGIN CERTIFICATE-----\ngarbage').toString(
          'base64',
        ),
        [SECRET_KEYS.key]: Buffer.from([0xff, 0xfe, 0x00]).toString('base64'),
      },
    });
    const lines: string[] = [];
    const log = jsonLogger({}, (line) => lines.push(line));
    const source = await start('corrupt', { log });
    expectServesNames(source.current());
    expect(decoded(await readSecret('corrupt'))[SECRET_KEYS.cert]).toBe(source.current().certPem);
    expect(lines.join('')).toContain('CA certificate is not a PEM certificate');

    // Corrupted again while running: the next resync replaces the serving pair and tells listeners.
    const secret = await readSecret('corrupt');
    const serving = source.current();
    const changed = new Promise<ServingCertificate>((resolve) => source.onChange(resolve));
    await requestJson(kc, {
      method: 'PUT',
      path: secretPath('corrupt'),
      body: { ...secret, data: { ...secret.data, [SECRET_KEYS.key]: 'AAAA' } },
    });
    await source.resync();
    const replaced = await changed;
    expect(replaced.certPem).not.toBe(serving.certPem);
    expect(replaced.caPem).toBe(serving.caPem);
    expect(lines.join('')).toContain('serving private key is not a PEM key');
  }, 120_000);

  describe('injectCaBundle', () => {
    const suffix = randomBytes(3).toString('hex');
    const configurations = {
      mutating: [`certs-test-m-${suffix}`],
      validating: [`certs-test-v1-${suffix}`, `certs-test-v2-${suffix}`],
    };
    const paths = [
      ...configurations.mutating.map((name) =>
        resourcePath(WEBHOOK_API, 'MutatingWebhookConfiguration', undefined, name),
      ),
      ...configurations.validating.map((name) =>
        resourcePath(WEBHOOK_API, 'ValidatingWebhookConfiguration', undefined, name),
      ),
    ];

    /** Two webhooks that call a closed port, ignore failures, and select no object. */
    function configuration(kind: string, name: string): KubeObject {
      const webhook = (id: string): Record<string, unknown> => ({
        name: `${id}.certs-test.nats-manager.test`,
        clientConfig: { url: 'https://127.0.0.1:1/x' },
        rules: [
          {
            apiGroups: [''],
            apiVersions: ['v1'],
            operations: ['CREATE'],
            resources: ['configmaps'],
          },
        ],
        objectSelector: { matchLabels: { 'nats-manager.test/never': suffix } },
        failurePolicy: 'Ignore',
        sideEffects: 'None',
        admissionReviewVersions: ['v1'],
        timeoutSeconds: 1,
      });
      return {
        apiVersion: WEBHOOK_API,
        kind,
        metadata: { name },
        webhooks: [webhook('a'), webhook('b')],
      };
    }

    async function read(): Promise<{ bundles: unknown[]; versions: string[] }> {
      const objects = (await Promise.all(
        paths.map((path) => requestJson(kc, { method: 'GET', path })),
      )) as {
        metadata: { resourceVersion: string };
        webhooks: { clientConfig: { caBundle?: string } }[];
      }[];
      return {
        bundles: objects.flatMap((object) => object.webhooks.map((w) => w.clientConfig.caBundle)),
        versions: objects.map((object) => object.metadata.resourceVersion),
      };
    }

    beforeAll(async () => {
      for (const name of configurations.mutating)
        await createObject(kc, configuration('MutatingWebhookConfiguration', name));
      for (const name of configurations.validating)
        await createObject(kc, configuration('ValidatingWebhookConfiguration', name));
    });

    afterAll(async () => {
      await Promise.all(paths.map((path) => requestJson(kc, { method: 'DELETE', path })));
    });

    it('writes the bundle into every webhook, and writes nothing when it is already there', async () => {
      const caPem = createCertificateAuthority('certs-test', 1).certPem;
      const written = await injectCaBundle(clientFor(kc), caPem, configurations);
      expect(written.sort()).toEqual(
        [
          ...configurations.mutating.map((name) => `MutatingWebhookConfiguration/${name}`),
          ...configurations.validating.map((name) => `ValidatingWebhookConfiguration/${name}`),
        ].sort(),
      );
      const first = await read();
      expect(first.bundles).toEqual(Array(6).fill(Buffer.from(caPem).toString('base64')));

      expect(await injectCaBundle(clientFor(kc), caPem, configurations)).toEqual([]);
      expect((await read()).versions).toEqual(first.versions);

      const rotated = `${caPem}${caPem}`;
      expect(await injectCaBundle(clientFor(kc), rotated, configurations)).toHaveLength(3);
      expect((await read()).bundles).toEqual(
        Array(6).fill(Buffer.from(rotated).toString('base64')),
      );
    });

    it('refuses an empty bundle and a configuration that does not exist', async () => {
      await expect(injectCaBundle(clientFor(kc), '  ', configurations)).rejects.toThrow(
        'empty CA bundle',
      );
      await expect(
        injectCaBundle(clientFor(kc), 'x', {
          mutating: [`certs-test-missing-${suffix}`],
          validating: [],
        }),
      ).rejects.toThrow(
        `cannot write the CA bundle into MutatingWebhookConfiguration certs-test-missing-${suffix}`,
      );
    });
  });
});
