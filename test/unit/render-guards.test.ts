// The memory and disk guards in the rendered StatefulSet: GOMEMLIMIT from the nats container's
// memory limit. (max_file_store is pinned in render-nats-conf.test.ts.)
import type { V1StatefulSet } from '@kubernetes/client-node';
import { defaultNatsSpec } from '../../src/api/defaults.ts';
import type { NatsSpec } from '../../src/api/nats.ts';
import { DEFAULT_IMAGES, type RenderContext } from '../../src/render/context.ts';
import {
  fileStoreHeadroomBytes,
  goMemLimitBytes,
  maxFileStoreBytes,
} from '../../src/render/guards.ts';
import { GOMEMLIMIT_ENV, NATS_CONTAINER, renderStatefulSet } from '../../src/render/statefulset.ts';

const context: RenderContext = {
  istioPresent: false,
  systemAccountPassword: 'secret',
  images: DEFAULT_IMAGES,
  clusterDomain: 'cluster.local',
};

function goMemLimitOf(spec: NatsSpec): string | undefined {
  const statefulSet = renderStatefulSet(
    { name: 'eventing-nats', namespace: 'kyma-system', uid: 'uid-1', spec: defaultNatsSpec(spec) },
    context,
  ) as V1StatefulSet;
  const nats = statefulSet.spec?.template.spec?.containers.find((c) => c.name === NATS_CONTAINER);
  const env = nats?.env?.filter((e) => e.name === GOMEMLIMIT_ENV) ?? [];
  expect(env.length).toBeLessThanOrEqual(1);
  return env[0]?.value;
}

const MI = 1024n * 1024n;

describe('GOMEMLIMIT of the nats container', () => {
  test('is 80% of the default 1Gi memory limit, in bytes', () => {
    expect(goMemLimitOf({})).toBe('858993459');
  });

  test.each([
    ['2Gi', '1717986918'],
    ['512Mi', '429496729'],
    ['1G', '800000000'],
    ['1.5Gi', '1288490188'],
    [1000, '800'],
  ])('a memory limit of %p gives %s', (memory, bytes) => {
    expect(goMemLimitOf({ resources: { limits: { cpu: '1', memory } } })).toBe(bytes);
  });

  test('is absent without a memory limit (the Go default: no soft limit)', () => {
    expect(goMemLimitOf({ resources: { requests: { memory: '64Mi' } } })).toBeUndefined();
    expect(goMemLimitOf({ resources: { limits: { cpu: '1' } } })).toBeUndefined();
  });

  test('is absent for a limit too small to give a positive figure', () => {
    expect(goMemLimitBytes(1n)).toBeUndefined();
    expect(goMemLimitBytes(undefined)).toBeUndefined();
  });
});

describe('file-store headroom', () => {
  test('is 10% of the claim, at least 256Mi, at most a quarter of the claim', () => {
    expect(fileStoreHeadroomBytes(1024n * MI)).toBe(256n * MI);
    expect(fileStoreHeadroomBytes(20480n * MI)).toBe(2048n * MI);
    expect(fileStoreHeadroomBytes(512n * MI)).toBe(128n * MI);
    expect(fileStoreHeadroomBytes(1n)).toBe(1n); // 10% rounded up
  });

  test('never leaves less than 75% of the claim nor more than 90%', () => {
    for (const claim of [1n, 7n, 100n * MI, 1000n * MI, 3000n * MI, 10n ** 15n]) {
      const store = maxFileStoreBytes(claim);
      expect(store * 100n).toBeGreaterThanOrEqual(claim * 75n - 100n);
      expect(store * 100n).toBeLessThanOrEqual(claim * 90n);
    }
  });
});
