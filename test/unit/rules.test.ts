import fc from 'fast-check';
import { defaultNatsSpec } from '../../src/api/defaults.ts';
import {
  fieldErrorBody,
  formatFieldError,
  validateNatsChange,
  type NatsFieldError,
  type ServedNats,
} from '../../src/api/rules.ts';

const served: ServedNats = { natsName: 'eventing-nats', natsNamespace: 'kyma-system' };
const metadata = { name: 'eventing-nats', namespace: 'kyma-system' };

const nats = (spec?: unknown, meta: object = metadata): Record<string, unknown> => ({
  apiVersion: 'operator.kyma-project.io/v1alpha1',
  kind: 'NATS',
  metadata: meta,
  ...(spec === undefined ? {} : { spec }),
});

const create = (spec?: unknown) => validateNatsChange('CREATE', nats(spec), null, served);
const update = (oldSpec: unknown, spec: unknown) =>
  validateNatsChange('UPDATE', nats(spec), nats(oldSpec), served);
const messages = (errors: readonly NatsFieldError[]): string[] => errors.map((e) => e.message);

describe('formatFieldError', () => {
  it('prints each error type as Kubernetes does', () => {
    const path = 'spec.x';
    expect(formatFieldError({ type: 'FieldValueInvalid', path, value: 2, detail: 'odd' })).toBe(
      'spec.x: Invalid value: 2: odd',
    );
    expect(formatFieldError({ type: 'FieldValueInvalid', path, value: '2', detail: 'd' })).toBe(
      'spec.x: Invalid value: "2": d',
    );
    expect(formatFieldError({ type: 'FieldValueInvalid', path, value: null, detail: 'd' })).toBe(
      'spec.x: Invalid value: "null": d',
    );
    expect(formatFieldError({ type: 'FieldValueInvalid', path, value: { a: 1 }, detail: '' })).toBe(
      'spec.x: Invalid value: {"a":1}',
    );
    expect(formatFieldError({ type: 'FieldValueRequired', path, detail: '' })).toBe(
      'spec.x: Required value',
    );
    expect(formatFieldError({ type: 'FieldValueForbidden', path, detail: 'no' })).toBe(
      'spec.x: Forbidden: no',
    );
    expect(
      formatFieldError({
        type: 'FieldValueNotSupported',
        path,
        value: 'c',
        detail: 'supported values: "a", "b"',
      }),
    ).toBe('spec.x: Unsupported value: "c": supported values: "a", "b"');
  });

  it('leaves the path out of the body, as a StatusCause carries it', () => {
    expect(fieldErrorBody({ type: 'FieldValueInvalid', value: true, detail: 'd' })).toBe(
      'Invalid value: true: d',
    );
  });
});

describe('validateNatsChange', () => {
  it('accepts the served NATS resource with an empty, absent or fully defaulted spec', () => {
    for (const spec of [undefined, {}, defaultNatsSpec({})]) {
      expect(create(spec)).toEqual({ errors: [], warnings: [] });
    }
  });

  describe('the single-instance rule', () => {
    it('refuses to create any other NATS resource', () => {
      const other = validateNatsChange(
        'CREATE',
        nats({}, { name: 'second', namespace: 'kyma-system' }),
        null,
        served,
      );
      expect(messages(other.errors)).toEqual([
        'metadata.name: Forbidden: the NATS Manager serves only one NATS resource, ' +
          'kyma-system/eventing-nats; any other would never be reconciled. Only a single NATS ' +
          'CR with name: eventing-nats and namespace: kyma-system is allowed to be created in a ' +
          'Kyma cluster.',
      ]);
      const elsewhere = validateNatsChange(
        'CREATE',
        nats({}, { name: 'eventing-nats', namespace: 'default' }),
        null,
        served,
      );
      expect(elsewhere.errors.map((e) => e.path)).toEqual(['metadata.namespace']);
    });

    it('follows the configured name and namespace', () => {
      const custom = { natsName: 'my-nats', natsNamespace: 'team' };
      const object = nats({}, { name: 'my-nats', namespace: 'team' });
      expect(validateNatsChange('CREATE', object, null, custom).errors).toEqual([]);
      expect(validateNatsChange('CREATE', nats({}), null, custom).errors).toHaveLength(1);
    });

    it('lets an existing other resource be updated and deleted (it may only be cleaned up)', () => {
      const other = nats({}, { name: 'second', namespace: 'default' });
      expect(validateNatsChange('UPDATE', other, other, served).errors).toEqual([]);
      expect(validateNatsChange('DELETE', null, other, served).errors).toEqual([]);
    });
  });

  describe('cluster size', () => {
    it('only accepts odd numbers', () => {
      expect(messages(create({ cluster: { size: 2 } }).errors)).toEqual([
        'spec.cluster.size: Invalid value: 2: size only accepts odd numbers',
      ]);
      expect(create({ cluster: { size: 5 } }).errors).toEqual([]);
    });

    it('reports the schema minimum and the oddness of a size below 1 together', () => {
      expect(messages(create({ cluster: { size: 0 } }).errors)).toEqual([
        'spec.cluster.size: Invalid value: 0: should be greater than or equal to 1',
        'spec.cluster.size: Invalid value: 0: size only accepts odd numbers',
      ]);
    });

    it('cannot go from more than one server down to one', () => {
      expect(messages(update({ cluster: { size: 3 } }, { cluster: { size: 1 } }).errors)).toEqual([
        'spec.cluster.size: Invalid value: 1: size cannot be set to 1 if size was greater than 1',
      ]);
      // An old resource without a size has the default, 3.
      expect(update({}, { cluster: { size: 1 } }).errors).toHaveLength(1);
      expect(update({ cluster: { size: 1 } }, { cluster: { size: 3 } }).errors).toEqual([]);
      expect(update({ cluster: { size: 5 } }, { cluster: { size: 3 } }).errors).toEqual([]);
      expect(update({ cluster: { size: 1 } }, { cluster: { size: 1 } }).errors).toEqual([]);
    });
  });

  describe('memory storage', () => {
    // The Go manager's rule: the integer 0 is refused, the string "0" its clients send for an
    // unset size is accepted and means the default.
    it('refuses the integer 0 when enabled, and takes a zero quantity string as unset', () => {
      expect(messages(create({ jetStream: { memStorage: { size: 0 } } }).errors)).toEqual([
        'spec.jetStream.memStorage.size: Invalid value: 0: memStorage can only be enabled if ' +
          'size is not 0',
      ]);
      expect(create({ jetStream: { memStorage: { size: '0' } } }).errors).toEqual([]);
      expect(create({ jetStream: { memStorage: { size: '0Gi' } } }).errors).toEqual([]);
      expect(create({ jetStream: { memStorage: { size: '-1Gi' } } }).errors).toHaveLength(1);
      expect(create({ jetStream: { memStorage: { enabled: false, size: 0 } } }).errors).toEqual([]);
      // Absent, the size is the schema default.
      expect(create({ jetStream: { memStorage: { enabled: true } } }).errors).toEqual([]);
    });

    it('cannot exceed what nats-server holds in an int64', () => {
      expect(messages(create({ jetStream: { memStorage: { size: '10E' } } }).errors)[0]).toMatch(
        /^spec.jetStream.memStorage.size: Invalid value: "10E": must be at most/,
      );
    });
  });

  describe('file storage', () => {
    it('keeps storageClassName once set', () => {
      const fast = { jetStream: { fileStorage: { storageClassName: 'fast' } } };
      expect(
        messages(update(fast, { jetStream: { fileStorage: { storageClassName: 'slow' } } }).errors),
      ).toEqual([
        'spec.jetStream.fileStorage.storageClassName: Invalid value: "slow": ' +
          'fileStorage is immutable once it was set: storageClassName cannot change (it is "fast")',
      ]);
      expect(update(fast, fast).errors).toEqual([]);
      // An old resource without one has "default", as the apiserver stores it.
      expect(update({}, fast).errors).toHaveLength(1);
    });

    it('lets a set size grow but never shrink, comparing values rather than spellings', () => {
      const size = (value: unknown) => ({ jetStream: { fileStorage: { size: value } } });
      expect(update(size('1Gi'), size('2Gi')).errors).toEqual([]);
      expect(messages(update(size('2Gi'), size('1Gi')).errors)).toEqual([
        'spec.jetStream.fileStorage.size: Invalid value: "1Gi": ' +
          'fileStorage is immutable once it was set: its size can grow, but not be lowered, as a volume claim cannot shrink (it is 2Gi)',
      ]);
      expect(update(size('1Gi'), size(1073741824)).errors).toEqual([]);
      expect(update(size('1Gi'), size('1024Mi')).errors).toEqual([]);
      expect(update(size('1Gi'), size('1023Mi')).errors).toHaveLength(1);
    });

    // Upstream refused this until it fixed the rule: a resource created without a size may get
    // one later.
    it('lets a size be set later on a resource created without one', () => {
      expect(update({}, { jetStream: { fileStorage: { size: '5Gi' } } }).errors).toEqual([]);
      expect(
        update({ jetStream: { fileStorage: {} } }, { jetStream: { fileStorage: { size: '5Gi' } } })
          .errors,
      ).toEqual([]);
    });

    it('refuses removing the size', () => {
      expect(messages(update({ jetStream: { fileStorage: { size: '5Gi' } } }, {}).errors)).toEqual([
        'spec.jetStream.fileStorage.size: Required value: ' +
          'fileStorage is immutable once it was set: size cannot be removed (it is 5Gi)',
      ]);
    });

    it('takes a zero size as unset: accepted, and a real size may follow', () => {
      for (const zero of [0, '0', '0Gi', '0.0']) {
        const spec = { jetStream: { fileStorage: { size: zero } } };
        expect(create(spec).errors).toEqual([]);
        expect(update(spec, { jetStream: { fileStorage: { size: '5Gi' } } }).errors).toEqual([]);
        expect(update(spec, { jetStream: { fileStorage: {} } }).errors).toEqual([]);
      }
      // A real size is kept: it cannot turn into zero, which would mean the default.
      const sized = { jetStream: { fileStorage: { size: '5Gi' } } };
      expect(messages(update(sized, { jetStream: { fileStorage: { size: '0' } } }).errors)).toEqual(
        [
          'spec.jetStream.fileStorage.size: Invalid value: "0": fileStorage is immutable once it was set: its size can grow, but not be lowered, as a volume claim cannot shrink (it is 5Gi)',
        ],
      );
    });

    it('lets a size stored under older rules be replaced by a valid one', () => {
      for (const stored of ['1e99999', '-5Gi', '10E']) {
        const spec = { jetStream: { fileStorage: { size: stored } } };
        expect(update(spec, { jetStream: { fileStorage: { size: '5Gi' } } }).errors).toEqual([]);
      }
    });

    it('refuses a size below the provider minimum on alicloud, and only there', () => {
      const small = { jetStream: { fileStorage: { size: '10Gi' } } };
      const alicloud = { ...served, provider: () => 'alicloud' };
      const verdict = validateNatsChange('CREATE', nats(small), undefined, alicloud);
      expect(messages(verdict.errors)).toEqual([
        'spec.jetStream.fileStorage.size: Invalid value: "10Gi": must be at least 20Gi on ' +
          'alicloud, the smallest volume it provisions (leave it unset or "0" for 20Gi)',
      ]);
      expect(create(small).errors).toEqual([]);
      const unset = validateNatsChange('CREATE', nats({}), undefined, alicloud);
      expect(unset.errors).toEqual([]);
      const big = { jetStream: { fileStorage: { size: '20Gi' } } };
      expect(validateNatsChange('CREATE', nats(big), undefined, alicloud).errors).toEqual([]);
    });
  });

  describe('quantities', () => {
    it('refuses exponents too large to parse cheaply, with the pattern', () => {
      expect(
        messages(create({ resources: { limits: { memory: '1e99999999999' } } }).errors),
      ).toEqual([
        'spec.resources.limits[memory]: Invalid value: "1e99999999999": must be a Kubernetes ' +
          'quantity such as 1Gi, 500m or 1000 (no sign, at most 19 digits, 9 decimals and a ' +
          '2-digit exponent)',
      ]);
    });

    it('reports a value the pattern refuses once, from the schema', () => {
      expect(messages(create({ jetStream: { fileStorage: { size: '1GB' } } }).errors)).toEqual([
        'spec.jetStream.fileStorage.size: Invalid value: "1GB": must be a Kubernetes quantity ' +
          'such as 1Gi, 500m or 1000 (no sign, at most 19 digits, 9 decimals and a 2-digit ' +
          'exponent)',
      ]);
    });

    it('refuses negative resources and requests above limits', () => {
      const { errors } = create({
        resources: { limits: { cpu: '-1' }, requests: { memory: '2Gi' } },
      });
      expect(messages(errors)).toEqual([
        expect.stringMatching(
          /^spec.resources.limits\[cpu\]: Invalid value: "-1": must be a Kubernetes quantity/,
        ),
      ]);
      expect(
        messages(
          create({ resources: { limits: { memory: '1Gi' }, requests: { memory: '2Gi' } } }).errors,
        ),
      ).toEqual([
        'spec.resources.requests[memory]: Invalid value: "2Gi": ' +
          'must be less than or equal to memory limit of 1Gi',
      ]);
    });
  });

  it('reports schema errors with the value and the Kubernetes path', () => {
    expect(messages(create({ cluster: { size: '3' }, labels: { 'a.b/c': 1 } }).errors)).toEqual([
      'spec.cluster.size: Invalid value: "3": must be of type integer',
      'spec.labels[a.b/c]: Invalid value: 1: must be of type string',
    ]);
    expect(messages(create('big').errors)).toEqual([
      'spec: Invalid value: "big": must be of type object',
    ]);
  });

  it('treats null fields as absent, as the apiserver does', () => {
    expect(create({ cluster: null, jetStream: { memStorage: { size: null } } }).errors).toEqual([]);
    expect(create({ labels: { a: null } }).errors).toEqual([]);
    expect(create(null).errors).toEqual([]);
  });

  it('finds the value of a map key that looks like a path', () => {
    const labels = (value: unknown) => ({ labels: { 'a]b.c[0]': value } });
    expect(messages(update(labels('x'), labels(5)).errors)).toEqual([
      expect.stringMatching(/^spec\.labels: Invalid value: "a\]b\.c\[0\]": name part must/),
      'spec.labels[a]b.c[0]]: Invalid value: 5: must be of type string',
    ]);
    expect(update(labels(5), labels(5)).errors).toEqual([]);
  });

  it('reports every violation at once, sorted by path', () => {
    const { errors } = validateNatsChange(
      'CREATE',
      nats(
        {
          cluster: { size: 4 },
          jetStream: { memStorage: { size: 0 }, fileStorage: { size: '1e99999999999' } },
          logging: { debug: 'yes' },
        },
        { name: 'other', namespace: 'default' },
      ),
      null,
      served,
    );
    expect(errors.map((e) => [e.path, e.type])).toEqual([
      ['metadata.name', 'FieldValueForbidden'],
      ['spec.cluster.size', 'FieldValueInvalid'],
      ['spec.jetStream.fileStorage.size', 'FieldValueInvalid'],
      ['spec.jetStream.memStorage.size', 'FieldValueInvalid'],
      ['spec.logging.debug', 'FieldValueInvalid'],
    ]);
  });

  // As the apiserver's validation ratcheting: a rule added later must not lock a stored
  // resource, or even its finalizer could never be removed.
  it('does not refuse an update for a field it leaves unchanged', () => {
    const stored = { jetStream: { fileStorage: { size: 0 } } };
    const before = nats(stored);
    const after = { ...nats(stored), metadata: { ...metadata, finalizers: [] } };
    expect(validateNatsChange('UPDATE', after, before, served).errors).toEqual([]);
    expect(update(stored, { ...stored, cluster: { size: 2 } }).errors).toHaveLength(1);
  });

  it('allows every deletion', () => {
    expect(validateNatsChange('DELETE', null, nats({ cluster: { size: 2 } }), served)).toEqual({
      errors: [],
      warnings: [],
    });
  });

  it('refuses an object that is not one', () => {
    expect(messages(validateNatsChange('CREATE', 'x', null, served).errors)).toEqual([
      'Invalid value: "x": must be a NATS resource object',
    ]);
  });

  describe('warnings', () => {
    it('warns about a single server', () => {
      expect(create({ cluster: { size: 1 } }).warnings).toEqual([
        'spec.cluster.size is 1: a single NATS server keeps no replicas, so JetStream is ' +
          'unavailable whenever it restarts',
      ]);
    });

    it('warns about a memory store above the memory limit', () => {
      const { errors, warnings } = create({ jetStream: { memStorage: { size: '2Gi' } } });
      expect(errors).toEqual([]);
      expect(warnings).toEqual([
        'spec.jetStream.memStorage.size (2Gi) is larger than spec.resources.limits.memory (1Gi): ' +
          'a server whose memory store fills up is OOM-killed',
        expect.stringMatching(/^spec.jetStream.fileStorage.size \(1Gi\) is smaller than/),
      ]);
    });

    it('warns about file storage below the memory store', () => {
      const spec = {
        jetStream: { memStorage: { size: '512Mi' }, fileStorage: { size: '256Mi' } },
      };
      expect(create(spec).warnings).toEqual([
        'spec.jetStream.fileStorage.size (256Mi) is smaller than spec.jetStream.memStorage.size ' +
          '(512Mi), so JetStream gets less room on disk than in memory; raising fileStorage.size ' +
          'later needs a StorageClass that allows volume expansion',
      ]);
      // Disabled, the memory store takes nothing.
      const disabled = { jetStream: { memStorage: { enabled: false, size: '4Gi' } } };
      expect(create(disabled).warnings).toEqual([]);
    });

    it('stays quiet for the defaults and for updates that leave the spec alone', () => {
      expect(create({}).warnings).toEqual([]);
      const single = { cluster: { size: 1 } };
      const before = nats(single);
      const after = { ...nats(single), metadata: { ...metadata, labels: { a: 'b' } } };
      expect(validateNatsChange('UPDATE', after, before, served).warnings).toEqual([]);
      expect(update({}, single).warnings).toHaveLength(1);
    });

    it('keeps every warning short enough for the apiserver not to truncate it', () => {
      const { warnings } = create({
        cluster: { size: 1 },
        jetStream: { memStorage: { size: '1000000000000' }, fileStorage: { size: '1' } },
      });
      expect(warnings).toHaveLength(3);
      for (const warning of warnings) expect(warning.length).toBeLessThanOrEqual(256);
    });
  });
});

// Arbitrary JSON that leans towards the shape of a spec, so the rules are reached.
const quantityArb = fc.oneof(
  fc.constantFrom('0', '1Gi', '-1', '512Mi', '1e99999999999', '1GB', '', '8Ei', '0.5', '100m'),
  fc.integer(),
  fc.double(),
  fc.constant(null),
);
const looseSpecArb = fc.oneof(
  fc.record(
    {
      cluster: fc.oneof(
        fc.record({ size: fc.oneof(fc.integer({ min: -3, max: 9 }), fc.string()) }),
        fc.anything(),
      ),
      jetStream: fc.record(
        {
          memStorage: fc.record(
            { enabled: fc.oneof(fc.boolean(), fc.anything()), size: quantityArb },
            { requiredKeys: [] },
          ),
          fileStorage: fc.record(
            { storageClassName: fc.oneof(fc.string(), fc.anything()), size: quantityArb },
            { requiredKeys: [] },
          ),
        },
        { requiredKeys: [] },
      ),
      resources: fc.record(
        {
          limits: fc.dictionary(fc.constantFrom('cpu', 'memory', 'x'), quantityArb),
          requests: fc.dictionary(fc.constantFrom('cpu', 'memory', 'x'), quantityArb),
        },
        { requiredKeys: [] },
      ),
      labels: fc.anything(),
    },
    { requiredKeys: [] },
  ),
  fc.anything(),
);
const metaArb = fc.oneof(
  fc.constant(metadata),
  fc.record({ name: fc.string(), namespace: fc.string() }),
  fc.anything(),
);
const objectArb = fc.oneof(
  fc.record({ metadata: metaArb, spec: looseSpecArb }, { requiredKeys: [] }),
  fc.anything(),
);

describe('validateNatsChange on generated input', () => {
  it('never throws, and every error is a formatted field error', () => {
    fc.assert(
      fc.property(
        fc.constantFrom('CREATE', 'UPDATE', 'DELETE' as const),
        objectArb,
        objectArb,
        (op, object, oldObject) => {
          const { errors, warnings } = validateNatsChange(op, object, oldObject, served);
          for (const error of errors) {
            expect(error.message).toBe(formatFieldError(error));
            expect(error.path === '' || /^(spec|metadata)\b/.test(error.path)).toBe(true);
          }
          for (const warning of warnings) expect(typeof warning).toBe('string');
        },
      ),
      { numRuns: 3000 },
    );
  });

  it('never refuses an update that changes nothing', () => {
    fc.assert(
      fc.property(objectArb, (object) => {
        expect(validateNatsChange('UPDATE', object, object, served).errors).toEqual(
          typeof object === 'object' && object !== null && !Array.isArray(object)
            ? []
            : [expect.objectContaining({ path: '' })],
        );
      }),
      { numRuns: 2000 },
    );
  });

  it('judges a spec as the apiserver would after defaulting it', () => {
    fc.assert(
      fc.property(looseSpecArb, (spec) => {
        fc.pre(
          spec === undefined || (typeof spec === 'object' && spec !== null && !Array.isArray(spec)),
        );
        // defaultNatsSpec assigns a `__proto__` key as the prototype instead of keeping it.
        fc.pre(spec === undefined || !JSON.stringify(spec).includes('"__proto__"'));
        expect(create(defaultNatsSpec(spec)).errors.map((e) => e.message)).toEqual(
          create(spec).errors.map((e) => e.message),
        );
      }),
      { numRuns: 2000 },
    );
  });

  it('always refuses an even cluster size, at its path', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 500 }), looseSpecArb, (half, spec) => {
        const base = typeof spec === 'object' && spec !== null && !Array.isArray(spec) ? spec : {};
        const { errors } = create({ ...base, cluster: { size: half * 2 } });
        expect(errors.map((e) => e.message)).toContain(
          `spec.cluster.size: Invalid value: ${String(half * 2)}: size only accepts odd numbers`,
        );
      }),
    );
  });
});

describe('labels and annotations copied onto children', () => {
  const served = { natsName: 'eventing-nats', natsNamespace: 'kyma-system' };
  const nats = (spec: unknown): unknown => ({
    apiVersion: 'operator.kyma-project.io/v1alpha1',
    kind: 'NATS',
    metadata: { name: 'eventing-nats', namespace: 'kyma-system' },
    spec,
  });

  it('accepts keys and values the API server accepts', () => {
    const verdict = validateNatsChange(
      'CREATE',
      nats({
        labels: { 'example.com/team': 'a-b_c.1', tier: '' },
        annotations: { 'a.b/c': 'any text at all' },
      }),
      undefined,
      served,
    );
    expect(verdict.errors).toEqual([]);
  });

  it('refuses keys and label values the API server would refuse on every child', () => {
    const verdict = validateNatsChange(
      'CREATE',
      nats({
        labels: { 'bad key': 'x', 'Upper.Case/x': 'y', ok: 'not ok!' },
        annotations: { '-x': 'v' },
      }),
      undefined,
      served,
    );
    expect(verdict.errors.map((e) => e.message)).toEqual([
      expect.stringMatching(/^spec\.annotations: Invalid value: "-x": name part must consist/),
      expect.stringMatching(/^spec\.labels: Invalid value: "bad key": name part must consist/),
      expect.stringMatching(
        /^spec\.labels: Invalid value: "Upper\.Case\/x": prefix part must be a lowercase DNS subdomain/,
      ),
      expect.stringMatching(
        /^spec\.labels\[ok\]: Invalid value: "not ok!": a label value must be empty/,
      ),
    ]);
  });
});
