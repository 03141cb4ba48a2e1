// The memos on the admission path: the bounded cache itself, and that a memoised judgement,
// child check and parse answer as the uncached ones do, for each of their inputs.
import { defaultNatsSpec } from '../../src/api/defaults.ts';
import { parseQuantity } from '../../src/api/quantity.ts';
import { LruCache } from '../../src/base/lru.ts';
import { renderedChildErrors } from '../../src/render/limits.ts';
import { judgeNats } from '../../webhooks/nats-verdict.ts';
import { TEST_ADMISSION_CONFIG as config, natsObject } from '../support/admission.ts';

describe('LruCache', () => {
  it('forgets the entry used longest ago once over capacity', () => {
    const cache = new LruCache<string, number>(2);
    cache.set('a', 1);
    cache.set('b', 2);
    expect(cache.get('a')).toBe(1); // a is now the newest used
    cache.set('c', 3);
    expect([cache.get('a'), cache.get('b'), cache.get('c')]).toEqual([1, undefined, 3]);
    expect(cache.size).toBe(2);
  });

  it('computes a missing value once and holds it', () => {
    const cache = new LruCache<string, number>(2);
    let computed = 0;
    const compute = (): number => ++computed;
    expect([cache.getOrCompute('a', compute), cache.getOrCompute('a', compute)]).toEqual([1, 1]);
    expect(computed).toBe(1);
  });

  it('computes every time, and holds nothing, for a string key past its length cap', () => {
    const cache = new LruCache<string, number>(2, { maxKeyLength: 3 });
    let computed = 0;
    const compute = (): number => ++computed;
    expect([cache.getOrCompute('long', compute), cache.getOrCompute('long', compute)]).toEqual([
      1, 2,
    ]);
    expect(cache.size).toBe(0);
    expect(cache.getOrCompute('abc', compute)).toBe(3);
    expect(cache.size).toBe(1);
  });

  it('replaces the value of a key set again, without growing', () => {
    const cache = new LruCache<string, number>(2);
    cache.set('a', 1);
    cache.set('a', 2);
    expect(cache.get('a')).toBe(2);
    expect(cache.size).toBe(1);
  });
});

describe('judgeNats memo', () => {
  const small = natsObject({ jetStream: { fileStorage: { size: '10Gi' } } });

  it('judges again when only the provider differs', () => {
    const elsewhere = judgeNats('CREATE', small, null, config);
    const alicloud = judgeNats('CREATE', small, null, { ...config, provider: () => 'alicloud' });
    expect(elsewhere.errors).toEqual([]);
    expect(alicloud.errors.map((e) => e.path)).toEqual(['spec.jetStream.fileStorage.size']);
    // And the first answer is still the one given for the first input.
    expect(judgeNats('CREATE', structuredClone(small), null, config).errors).toEqual([]);
  });

  it('answers an equal object with an equal verdict, shared and frozen', () => {
    const invalid = natsObject({ cluster: { size: 2 } });
    const first = judgeNats('CREATE', invalid, null, config);
    const second = judgeNats('CREATE', structuredClone(invalid), null, config);
    expect(second).toBe(first);
    expect(first.errors).toHaveLength(1);
    expect(Object.isFrozen(first.errors)).toBe(true);
    expect(Object.isFrozen(first.errors[0])).toBe(true);
  });

  it('leaves the request object as it was given: nothing of it is frozen', () => {
    const object = natsObject({ labels: { 'bad key!': 'x' } });
    const verdict = judgeNats('CREATE', object, null, config);
    expect(verdict.errors.length).toBeGreaterThan(0);
    expect(Object.isFrozen(object)).toBe(false);
    expect(Object.isFrozen((object.spec as { labels: object }).labels)).toBe(false);
  });

  it('tells an UPDATE from a CREATE of the same object', () => {
    const stored = natsObject({ cluster: { size: 2 } });
    expect(judgeNats('CREATE', stored, null, config).errors).toHaveLength(1);
    // An update that does not change the flaw the stored object already has is not refused.
    expect(judgeNats('UPDATE', stored, structuredClone(stored), config).errors).toEqual([]);
  });
});

describe('renderedChildErrors memo', () => {
  it('gives each caller its own list, equal to the first', () => {
    const resource = {
      name: 'n'.repeat(60),
      namespace: 'kyma-system',
      spec: {},
      provider: undefined,
    };
    const spec = defaultNatsSpec({}) as Record<string, unknown>;
    const first = renderedChildErrors({ ...resource, spec });
    const second = renderedChildErrors({ ...resource, spec: structuredClone(spec) });
    expect(first.map((e) => e.path)).toEqual(['metadata.name']);
    expect(second).toEqual(first);
    expect(second).not.toBe(first);
    // Another namespace is another answer, not the memoised one.
    expect(renderedChildErrors({ ...resource, namespace: 'x'.repeat(200), spec })).not.toEqual(
      first,
    );
  });
});

describe('parseQuantity memo', () => {
  it('shares one frozen result per text and still refuses the invalid every time', () => {
    expect(parseQuantity('1Gi')).toBe(parseQuantity('1Gi'));
    expect(Object.isFrozen(parseQuantity('1Gi'))).toBe(true);
    expect(parseQuantity(1024)).toEqual(parseQuantity('1024'));
    expect(() => parseQuantity('1Gx')).toThrow();
    expect(() => parseQuantity('1Gx')).toThrow();
  });
});
