import fc from 'fast-check';
import { dump } from 'js-yaml';
import { defaultNatsSpec } from '../../src/api/defaults.ts';
import type { DefaultedNatsSpec, NatsSpec } from '../../src/api/nats.ts';
import { validateNatsSpec } from '../../src/api/validator.ts';

// The upstream defaults, written out once as the behaviour to match. No file-storage size: the
// Go manager resolves it when rendering and never writes it into the spec.
const UPSTREAM_DEFAULTS: DefaultedNatsSpec = {
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
};

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null) {
    for (const child of Object.values(value)) deepFreeze(child);
    Object.freeze(value);
  }
  return value;
}

const quantityArb = fc.oneof(
  fc.constantFrom('0', '1Gi', '512Mi', '100m', '2G', '1.5Gi'),
  fc.nat({ max: 2 ** 40 }),
);
const resourceMapArb = fc.dictionary(fc.constantFrom('cpu', 'memory'), quantityArb);
const stringMapArb = fc.dictionary(fc.string({ minLength: 1, maxLength: 8 }), fc.string());
// Label values have a syntax of their own (validation.IsValidLabelValue).
const labelMapArb = fc.dictionary(
  fc.string({ minLength: 1, maxLength: 8 }),
  fc.stringMatching(/^(([A-Za-z0-9][-A-Za-z0-9_.]{0,6})?[A-Za-z0-9])?$/),
);

// Any valid partial spec, including explicit false, 0 and empty objects.
const specArb: fc.Arbitrary<NatsSpec> = fc.record(
  {
    cluster: fc.record({ size: fc.constantFrom(1, 3, 5, 7) }, { requiredKeys: [] }),
    jetStream: fc.record(
      {
        memStorage: fc.record({ enabled: fc.boolean(), size: quantityArb }, { requiredKeys: [] }),
        fileStorage: fc.record(
          {
            storageClassName: fc.constantFrom('default', 'fast', 'ssd.example.com', ''),
            size: quantityArb,
          },
          { requiredKeys: [] },
        ),
      },
      { requiredKeys: [] },
    ),
    logging: fc.record({ debug: fc.boolean(), trace: fc.boolean() }, { requiredKeys: [] }),
    resources: fc.record(
      { limits: resourceMapArb, requests: resourceMapArb },
      { requiredKeys: [] },
    ),
    labels: labelMapArb,
    annotations: stringMapArb,
  },
  { requiredKeys: [] },
);

// Every leaf of `given` must appear unchanged in `result`.
function expectLeavesKept(given: unknown, result: unknown): void {
  if (typeof given === 'object' && given !== null) {
    for (const [key, child] of Object.entries(given)) {
      expectLeavesKept(child, (result as Record<string, unknown>)[key]);
    }
  } else {
    expect(result).toBe(given);
  }
}

describe('defaultNatsSpec', () => {
  it.each([{}, undefined, null])('gives every upstream default for %p', (spec) => {
    expect(defaultNatsSpec(spec)).toEqual(UPSTREAM_DEFAULTS);
  });

  it('fills in what a partial spec leaves out', () => {
    expect(
      defaultNatsSpec({ cluster: { size: 5 }, jetStream: { memStorage: { size: '2Gi' } } }),
    ).toEqual({
      ...UPSTREAM_DEFAULTS,
      cluster: { size: 5 },
      jetStream: { ...UPSTREAM_DEFAULTS.jetStream, memStorage: { enabled: true, size: '2Gi' } },
    });
  });

  it('never defaults the file-storage size, so that it can be set later', () => {
    expect(defaultNatsSpec({}).jetStream.fileStorage).toEqual({ storageClassName: 'default' });
    const spec = { jetStream: { fileStorage: { size: '5Gi' } } };
    expect(defaultNatsSpec(spec).jetStream.fileStorage).toEqual({
      storageClassName: 'default',
      size: '5Gi',
    });
  });

  it('keeps explicit false and 0', () => {
    const defaulted = defaultNatsSpec({
      jetStream: { memStorage: { enabled: false, size: 0 }, fileStorage: { size: 0 } },
      logging: { debug: false, trace: true },
    });
    expect(defaulted.jetStream.memStorage).toEqual({ enabled: false, size: 0 });
    expect(defaulted.jetStream.fileStorage.size).toBe(0);
    expect(defaulted.logging).toEqual({ debug: false, trace: true });
  });

  // As upstream: resources default as a whole, so a given limit never meets a default request
  // that could exceed it.
  it('does not default inside resources that are given', () => {
    expect(defaultNatsSpec({ resources: { limits: { memory: '32Mi' } } }).resources).toEqual({
      limits: { memory: '32Mi' },
    });
    expect(defaultNatsSpec({ resources: {} }).resources).toEqual({});
  });

  it('treats null as absent, as the apiserver does for non-nullable fields', () => {
    expect(defaultNatsSpec({ cluster: null, logging: { debug: null } })).toEqual(UPSTREAM_DEFAULTS);
    expect(defaultNatsSpec({ labels: null })).toEqual(UPSTREAM_DEFAULTS);
    expect(defaultNatsSpec({ labels: { a: 'x', b: null } }).labels).toEqual({ a: 'x' });
  });

  it('keeps labels and annotations as given', () => {
    const spec = { labels: { team: 'a' }, annotations: { 'example.com/x': 'y' } };
    expect(defaultNatsSpec(spec)).toEqual({ ...UPSTREAM_DEFAULTS, ...spec });
  });

  it('rejects a spec that is not an object', () => {
    expect(() => defaultNatsSpec('big')).toThrow(TypeError);
    expect(() => defaultNatsSpec([])).toThrow(/got array/);
  });

  it('is idempotent', () => {
    fc.assert(
      fc.property(specArb, (spec) => {
        const once = defaultNatsSpec(spec);
        expect(defaultNatsSpec(once)).toEqual(once);
      }),
    );
  });

  it('never mutates its input and never shares objects with it', () => {
    fc.assert(
      fc.property(specArb, (spec) => {
        const snapshot = structuredClone(spec);
        const defaulted = defaultNatsSpec(deepFreeze(spec));
        expect(spec).toEqual(snapshot);
        // Changing the result must not reach back into the (frozen) input.
        expect(() => {
          defaulted.cluster.size = 9;
          defaulted.jetStream.fileStorage.size = '9Gi';
        }).not.toThrow();
      }),
    );
  });

  it('keeps every value that was set and yields a valid spec', () => {
    fc.assert(
      fc.property(specArb, (spec) => {
        const defaulted = defaultNatsSpec(spec);
        expectLeavesKept(spec, defaulted);
        expect(validateNatsSpec(defaulted)).toEqual([]);
      }),
    );
  });

  it('returns plain objects that serialise like any other', () => {
    expect(dump(defaultNatsSpec({ labels: { a: 'b' } }))).toContain('storageClassName: default');
  });

  it('does not share default objects between calls', () => {
    const first = defaultNatsSpec({});
    first.resources.limits = { cpu: '1' };
    expect(defaultNatsSpec({})).toEqual(UPSTREAM_DEFAULTS);
  });
});

describe('defaultNatsSpec and unusual map keys', () => {
  it('keeps a "__proto__" label as a key, not as a prototype', () => {
    const spec = JSON.parse('{"labels":{"__proto__":"x","team":"a"}}') as unknown;
    const defaulted = defaultNatsSpec(spec);
    expect(Object.keys(defaulted.labels ?? {})).toEqual(['__proto__', 'team']);
    expect(Object.getPrototypeOf(defaulted.labels)).toBe(Object.prototype);
  });
});
