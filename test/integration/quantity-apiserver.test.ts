// Our quantity canonicalisation must agree with the real kube-apiserver's: the apiserver
// serialises every quantity field in canonical form, so a dry-run create shows it. The vehicle is
// an emptyDir's sizeLimit: ResourceList fields (container resources) are first rounded up to
// milli precision by core/v1 defaulting, which would hide sub-milli differences.
import * as k8s from '@kubernetes/client-node';
import fc from 'fast-check';
import { canonicalQuantity, canonicalResourceQuantity } from '../../src/api/quantity.ts';
import { createObject, type KubeObject } from '../../src/kube/api.ts';
import {
  createTestNamespace,
  deleteTestNamespace,
  eventually,
  testKubeConfig,
} from '../support/kube.ts';

const FIXED = ['1Gi', '500M', '1.5Gi', '1e9', '0', '100m', '0.5', '1000M', '1024', '1e3', '2.5e-3'];

// Non-negative quantities of every notation: suffixes binary, decimal, exponent, and none.
const quantityArbitrary = fc
  .tuple(
    fc.nat({ max: 99_999 }),
    fc.option(fc.nat({ max: 999 }), { nil: undefined }),
    fc.constantFrom('', 'm', 'k', 'M', 'G', 'T', 'Ki', 'Mi', 'Gi', 'Ti', 'e3', 'e-2', 'E6'),
  )
  .map(
    ([whole, fraction, suffix]) =>
      `${String(whole)}${fraction === undefined ? '' : `.${String(fraction)}`}${suffix}`,
  );

describe('quantities against the real kube-apiserver', () => {
  const kc = testKubeConfig();
  const core = kc.makeApiClient(k8s.CoreV1Api);
  let namespace = '';

  beforeAll(async () => {
    namespace = await createTestNamespace(kc, 'quantity');
    // Pods are admitted only once the namespace's default service account exists.
    await eventually('the default service account', async () => {
      try {
        await core.readNamespacedServiceAccount({ namespace, name: 'default' });
        return true;
      } catch {
        return undefined;
      }
    });
  });

  afterAll(async () => {
    await deleteTestNamespace(kc, namespace);
  });

  /** What the apiserver stores for a quantity in a container's resources (a ResourceList). */
  async function apiserverResourceCanonical(quantity: string): Promise<string> {
    const pod: KubeObject = {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'resources', namespace },
      spec: {
        containers: [{ name: 'c', image: 'scratch', resources: { limits: { cpu: quantity } } }],
      },
    };
    const created = (await createObject(kc, pod, { dryRun: true })) as unknown as {
      spec: { containers: { resources: { limits: { cpu: string } } }[] };
    };
    const value = created.spec.containers[0]?.resources.limits.cpu;
    if (value === undefined) throw new Error('no cpu limit in the dry-run answer');
    return value;
  }

  async function apiserverCanonical(quantity: string): Promise<string> {
    const pod: KubeObject = {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'quantity', namespace },
      spec: {
        containers: [{ name: 'c', image: 'scratch' }],
        volumes: [{ name: 'v', emptyDir: { sizeLimit: quantity } }],
      },
    };
    const created = (await createObject(kc, pod, { dryRun: true })) as unknown as {
      spec: { volumes: { name: string; emptyDir?: { sizeLimit?: string } }[] };
    };
    // Admission adds the service-account token volume beside ours.
    const value = created.spec.volumes.find((v) => v.name === 'v')?.emptyDir?.sizeLimit;
    if (value === undefined)
      throw new Error(
        `no sizeLimit in the dry-run answer: ${JSON.stringify(created.spec.volumes)}`,
      );
    return value;
  }

  it('canonicalises the documented examples exactly as the apiserver does', async () => {
    for (const quantity of FIXED) {
      expect({ quantity, canonical: canonicalQuantity(quantity) }).toEqual({
        quantity,
        canonical: await apiserverCanonical(quantity),
      });
    }
  });

  it('canonicalises generated quantities exactly as the apiserver does', async () => {
    await fc.assert(
      fc.asyncProperty(quantityArbitrary, async (quantity) => {
        expect(canonicalQuantity(quantity)).toBe(await apiserverCanonical(quantity));
      }),
      { numRuns: 150 },
    );
  });

  it('rounds ResourceList quantities up to milli before canonicalising, as the apiserver does', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(quantityArbitrary, fc.constantFrom(...FIXED, '100u', '1000000n', '0.0001')),
        async (quantity) => {
          expect(canonicalResourceQuantity(quantity)).toBe(
            await apiserverResourceCanonical(quantity),
          );
        },
      ),
      { numRuns: 150 },
    );
  });
});
