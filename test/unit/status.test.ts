import fc from 'fast-check';
import type { NatsCondition, NatsStatus } from '../../src/api/nats.ts';
import {
  computeNatsStatus,
  statefulSetReady,
  statusChanged,
  type ObservedStatefulSet,
  type ReconcileOutcome,
  type StatusInput,
} from '../../src/controller/status.ts';

const NOW = new Date('2026-05-01T10:00:00.123Z');
const NOW_TEXT = '2026-05-01T10:00:00Z';
const EARLIER = '2026-04-01T08:00:00Z';

function readySts(replicas = 3): ObservedStatefulSet {
  return {
    metadata: { generation: 2 },
    spec: { replicas },
    status: {
      observedGeneration: 2,
      replicas,
      readyReplicas: replicas,
      currentReplicas: replicas,
      updatedReplicas: replicas,
      availableReplicas: replicas,
      currentRevision: 'nats-abc',
      updateRevision: 'nats-abc',
    },
  };
}

function input(overrides: Partial<StatusInput> = {}): StatusInput {
  return {
    nats: { name: 'eventing-nats', namespace: 'kyma-system', generation: 4, deleting: false },
    previous: undefined,
    now: NOW,
    clusterDomain: 'cluster.local',
    outcome: { kind: 'applied' },
    statefulSet: readySts(),
    zones: ['a', 'b', 'c'],
    size: 3,
    ...overrides,
  };
}

function condition(status: NatsStatus, type: string): NatsCondition | undefined {
  return status.conditions?.find((c) => c.type === type);
}

function summary(status: NatsStatus): Record<string, string> {
  return Object.fromEntries(
    (status.conditions ?? []).map((c) => [c.type, `${c.status}/${c.reason}`]),
  );
}

describe('computeNatsStatus', () => {
  it('reports Ready with the client URL when the StatefulSet is rolled out', () => {
    const status = computeNatsStatus(input());
    expect(status.state).toBe('Ready');
    expect(status.url).toBe('nats://eventing-nats.kyma-system.svc.cluster.local:4222');
    expect(status.availabilityZonesUsed).toBe(3);
    expect(status.observedGeneration).toBe(4);
    expect(summary(status)).toEqual({
      StatefulSet: 'True/Available',
      Available: 'True/Deployed',
      AvailabilityZones: 'True/Deployed',
    });
    for (const c of status.conditions ?? []) {
      expect(c.observedGeneration).toBe(4);
      expect(c.lastTransitionTime).toBe(NOW_TEXT);
    }
  });

  it('uses the real Service name in the URL when the CR name lacks "nats"', () => {
    const status = computeNatsStatus(
      input({ nats: { name: 'queue', namespace: 'ns', generation: 1, deleting: false } }),
    );
    expect(status.url).toBe('nats://queue-nats.ns.svc.cluster.local:4222');
  });

  it('honours the cluster domain in the URL', () => {
    const status = computeNatsStatus(input({ clusterDomain: 'example.org' }));
    expect(status.url).toBe('nats://eventing-nats.kyma-system.svc.example.org:4222');
  });

  it('reports Processing with Pending while the StatefulSet does not exist', () => {
    const status = computeNatsStatus(input({ statefulSet: undefined, zones: [] }));
    expect(status.state).toBe('Processing');
    expect(status.url).toBeUndefined();
    expect(summary(status)).toEqual({
      StatefulSet: 'False/Pending',
      Available: 'False/Deploying',
      AvailabilityZones: 'False/Pending',
    });
  });

  describe('a rollout that has not finished', () => {
    const base = readySts();
    const cases: [string, ObservedStatefulSet][] = [
      ['an old observedGeneration', { ...base, status: { ...base.status, observedGeneration: 1 } }],
      ['fewer ready replicas', { ...base, status: { ...base.status, readyReplicas: 2 } }],
      ['fewer updated replicas', { ...base, status: { ...base.status, updatedReplicas: 1 } }],
      [
        'an update in progress',
        { ...base, status: { ...base.status, updateRevision: 'nats-def' } },
      ],
      ['more replicas than desired', { ...base, status: { ...base.status, replicas: 4 } }],
      ['a scale-up not yet reflected', { ...base, spec: { replicas: 5 } }],
      ['no status yet', { metadata: { generation: 1 }, spec: { replicas: 3 } }],
    ];
    it.each(cases)('is Processing with %s', (_name, sts) => {
      expect(statefulSetReady(sts)).toBe(false);
      const status = computeNatsStatus(input({ statefulSet: sts }));
      expect(status.state).toBe('Processing');
      expect(status.url).toBeUndefined();
      expect(summary(status)).toEqual({
        StatefulSet: 'False/Pending',
        Available: 'False/Deploying',
        AvailabilityZones: 'False/Pending',
      });
    });

    it('says when the StatefulSet controller has not seen the latest spec', () => {
      const status = computeNatsStatus(input({ statefulSet: cases[0]?.[1] }));
      expect(condition(status, 'StatefulSet')?.message).toMatch(/latest spec/);
    });

    it('counts ready and updated replicas in the message', () => {
      const status = computeNatsStatus(input({ statefulSet: cases[1]?.[1] }));
      expect(condition(status, 'StatefulSet')?.message).toMatch(/2\/3 ready, 3\/3 updated/);
    });
  });

  it('is ready without revisions reported', () => {
    const base = readySts();
    const sts = {
      ...base,
      status: { ...base.status, currentRevision: undefined, updateRevision: undefined },
    };
    expect(statefulSetReady(sts)).toBe(true);
  });

  it('reports Error with Forbidden for a second NATS resource', () => {
    const outcome: ReconcileOutcome = { kind: 'forbidden', message: 'only one NATS allowed' };
    const status = computeNatsStatus(input({ outcome, statefulSet: undefined, zones: undefined }));
    expect(status.state).toBe('Error');
    expect(status.url).toBeUndefined();
    expect(summary(status)).toEqual({
      StatefulSet: 'False/Forbidden',
      Available: 'False/Forbidden',
    });
    expect(condition(status, 'Available')?.message).toBe('only one NATS allowed');
  });

  it('reports Error when syncing the resources failed', () => {
    const outcome: ReconcileOutcome = { kind: 'failed', message: 'apply failed: boom' };
    const status = computeNatsStatus(input({ outcome }));
    expect(status.state).toBe('Error');
    expect(summary(status)).toEqual({
      StatefulSet: 'False/FailedToSyncResources',
      Available: 'False/FailedProcessing',
    });
    expect(condition(status, 'StatefulSet')?.message).toBe('apply failed: boom');
  });

  describe('deletion', () => {
    const ready = computeNatsStatus(input({ now: new Date(EARLIER) }));

    it('reports Deleting and keeps the last observations', () => {
      const status = computeNatsStatus(input({ outcome: { kind: 'deleting' }, previous: ready }));
      expect(status.state).toBe('Deleting');
      expect(status.url).toBe(ready.url);
      expect(summary(status)).toEqual(summary(ready));
      expect(condition(status, 'StatefulSet')?.lastTransitionTime).toBe(EARLIER);
    });

    it('reports Deleting for a resource marked for deletion even after an apply', () => {
      const nats = {
        name: 'eventing-nats',
        namespace: 'kyma-system',
        generation: 4,
        deleting: true,
      };
      expect(computeNatsStatus(input({ nats, previous: ready })).state).toBe('Deleting');
    });

    it('reports Warning with DeletionError when customer streams block deletion', () => {
      const message = 'Cannot delete NATS cluster as customer stream exists';
      const outcome: ReconcileOutcome = { kind: 'deletionBlocked', message };
      const status = computeNatsStatus(input({ outcome, previous: ready }));
      expect(status.state).toBe('Warning');
      expect(condition(status, 'Deleted')).toMatchObject({
        status: 'False',
        reason: 'DeletionError',
        message,
        lastTransitionTime: NOW_TEXT,
      });
      expect(condition(status, 'StatefulSet')?.status).toBe('True');
    });

    it('drops the Deleted condition once deletion is no longer blocked', () => {
      const outcome: ReconcileOutcome = { kind: 'deletionBlocked', message: 'blocked' };
      const blocked = computeNatsStatus(input({ outcome, previous: ready }));
      const status = computeNatsStatus(input({ outcome: { kind: 'deleting' }, previous: blocked }));
      expect(condition(status, 'Deleted')).toBeUndefined();
    });
  });

  describe('availability zones', () => {
    it('warns when a ready cluster runs in fewer zones than pods', () => {
      const status = computeNatsStatus(input({ zones: ['a', 'a', 'b'] }));
      expect(status.state).toBe('Warning');
      expect(status.availabilityZonesUsed).toBe(2);
      expect(status.url).toBeDefined();
      expect(condition(status, 'AvailabilityZones')).toMatchObject({
        status: 'False',
        reason: 'NotConfigured',
      });
      expect(condition(status, 'AvailabilityZones')?.message).toMatch(/2 availability zone/);
    });

    it('warns when no pod node carries a zone', () => {
      const status = computeNatsStatus(input({ zones: [] }));
      expect(status.state).toBe('Warning');
      expect(status.availabilityZonesUsed).toBe(0);
    });

    it('stays Ready when the zones are unknown', () => {
      const status = computeNatsStatus(input({ zones: undefined }));
      expect(status.state).toBe('Ready');
      expect(status.availabilityZonesUsed).toBeUndefined();
      expect(summary(status).AvailabilityZones).toBe('False/Unknown');
    });

    it('does not apply to a cluster smaller than three', () => {
      const status = computeNatsStatus(input({ size: 1, statefulSet: readySts(1), zones: ['a'] }));
      expect(status.state).toBe('Ready');
      expect(status.availabilityZonesUsed).toBe(1);
      expect(summary(status).AvailabilityZones).toBe('False/NotConfigured');
    });

    it('is Deployed with five pods in five zones', () => {
      const status = computeNatsStatus(
        input({ size: 5, statefulSet: readySts(5), zones: ['a', 'b', 'c', 'd', 'e'] }),
      );
      expect(status.state).toBe('Ready');
      expect(summary(status).AvailabilityZones).toBe('True/Deployed');
    });

    it('does not turn a rollout into Warning', () => {
      const base = readySts();
      const sts = { ...base, status: { ...base.status, readyReplicas: 1 } };
      const status = computeNatsStatus(input({ statefulSet: sts, zones: ['a'] }));
      expect(status.state).toBe('Processing');
      expect(status.availabilityZonesUsed).toBe(1);
    });
  });

  describe('lastTransitionTime', () => {
    const previous = computeNatsStatus(input({ now: new Date(EARLIER) }));

    it('is kept while a condition keeps its status', () => {
      const status = computeNatsStatus(input({ previous }));
      for (const c of status.conditions ?? []) expect(c.lastTransitionTime).toBe(EARLIER);
    });

    it('is kept when only reason or message change', () => {
      const fewZones = computeNatsStatus(input({ now: new Date(EARLIER), zones: ['a', 'a', 'b'] }));
      const status = computeNatsStatus(input({ previous: fewZones, zones: undefined }));
      expect(condition(status, 'AvailabilityZones')).toMatchObject({
        reason: 'Unknown',
        lastTransitionTime: EARLIER,
      });
    });

    it('moves to now when the status changes', () => {
      const base = readySts();
      const sts = { ...base, status: { ...base.status, readyReplicas: 2 } };
      const status = computeNatsStatus(input({ previous, statefulSet: sts }));
      expect(condition(status, 'StatefulSet')?.lastTransitionTime).toBe(NOW_TEXT);
      expect(condition(status, 'Available')?.lastTransitionTime).toBe(NOW_TEXT);
    });

    it('is now for a condition that did not exist before', () => {
      const outcome: ReconcileOutcome = { kind: 'deletionBlocked', message: 'blocked' };
      const status = computeNatsStatus(input({ previous, outcome }));
      expect(condition(status, 'Deleted')?.lastTransitionTime).toBe(NOW_TEXT);
    });
  });

  it('omits observedGeneration when the CR has no generation', () => {
    const status = computeNatsStatus(
      input({ nats: { name: 'eventing-nats', namespace: 'kyma-system', deleting: false } }),
    );
    expect(status.observedGeneration).toBeUndefined();
    expect(status.conditions?.[0]?.observedGeneration).toBeUndefined();
  });
});

describe('statusChanged', () => {
  const earlier = computeNatsStatus(input({ now: new Date(EARLIER) }));

  it('is true without a previous status', () => {
    expect(statusChanged(undefined, earlier)).toBe(true);
  });

  it('ignores lastTransitionTime', () => {
    const later = computeNatsStatus(input());
    expect(later.conditions?.[0]?.lastTransitionTime).not.toBe(EARLIER);
    expect(statusChanged(earlier, later)).toBe(false);
  });

  it('ignores the order of conditions and of keys', () => {
    const reordered: NatsStatus = {
      conditions: [...(earlier.conditions ?? [])].reverse(),
      observedGeneration: earlier.observedGeneration,
      availabilityZonesUsed: earlier.availabilityZonesUsed,
      url: earlier.url,
      state: earlier.state,
    };
    expect(statusChanged(earlier, reordered)).toBe(false);
  });

  const changes: [string, (s: NatsStatus) => NatsStatus][] = [
    ['state', (s) => ({ ...s, state: 'Warning' })],
    ['url', (s) => ({ ...s, url: 'nats://other:4222' })],
    ['availabilityZonesUsed', (s) => ({ ...s, availabilityZonesUsed: 1 })],
    ['observedGeneration', (s) => ({ ...s, observedGeneration: 5 })],
    [
      'a condition message',
      (s) => ({
        ...s,
        conditions: (s.conditions ?? []).map((c, i) => (i === 0 ? { ...c, message: 'x' } : c)),
      }),
    ],
    [
      'a condition observedGeneration',
      (s) => ({
        ...s,
        conditions: (s.conditions ?? []).map((c) => ({ ...c, observedGeneration: 9 })),
      }),
    ],
    ['a dropped condition', (s) => ({ ...s, conditions: (s.conditions ?? []).slice(1) })],
  ];
  it.each(changes)('notices a change of %s', (_name, change) => {
    expect(statusChanged(earlier, change(earlier))).toBe(true);
  });
});

describe('properties', () => {
  const stsArb: fc.Arbitrary<ObservedStatefulSet | undefined> = fc.option(
    fc.record({
      metadata: fc.record({ generation: fc.nat(5) }),
      spec: fc.record({ replicas: fc.nat(5) }),
      status: fc.record(
        {
          observedGeneration: fc.nat(5),
          replicas: fc.nat(5),
          readyReplicas: fc.nat(5),
          currentReplicas: fc.nat(5),
          updatedReplicas: fc.nat(5),
          availableReplicas: fc.nat(5),
          currentRevision: fc.constantFrom('r1', 'r2'),
          updateRevision: fc.constantFrom('r1', 'r2'),
        },
        { requiredKeys: ['replicas'] },
      ),
    }),
    { nil: undefined },
  );
  const outcomeArb: fc.Arbitrary<ReconcileOutcome> = fc.oneof(
    fc.constant({ kind: 'applied' as const }),
    fc.constant({ kind: 'deleting' as const }),
    fc.record({ kind: fc.constant('forbidden' as const), message: fc.string() }),
    fc.record({ kind: fc.constant('failed' as const), message: fc.string() }),
    fc.record({ kind: fc.constant('deletionBlocked' as const), message: fc.string() }),
  );
  const inputArb: fc.Arbitrary<StatusInput> = fc
    .record({
      name: fc.constantFrom('eventing-nats', 'queue'),
      generation: fc.option(fc.nat(10), { nil: undefined }),
      deleting: fc.boolean(),
      outcome: outcomeArb,
      statefulSet: stsArb,
      zones: fc.option(fc.array(fc.constantFrom('a', 'b', 'c'), { maxLength: 5 }), {
        nil: undefined,
      }),
      size: fc.constantFrom(1, 3, 5),
      seconds: fc.nat(1_000_000),
      hasPrevious: fc.boolean(),
    })
    .map((r) => {
      const base = input({
        nats: {
          name: r.name,
          namespace: 'ns',
          deleting: r.deleting,
          ...(r.generation === undefined ? {} : { generation: r.generation }),
        },
        now: new Date(Date.UTC(2026, 0, 1) + r.seconds * 1000),
        outcome: r.outcome,
        statefulSet: r.statefulSet,
        zones: r.zones,
        size: r.size,
      });
      return r.hasPrevious ? { ...base, previous: computeNatsStatus(input()) } : base;
    });

  it('computeNatsStatus is deterministic', () => {
    fc.assert(
      fc.property(inputArb, (i) => {
        expect(computeNatsStatus(i)).toEqual(computeNatsStatus(i));
      }),
    );
  });

  it('statusChanged(s, s) is false', () => {
    fc.assert(
      fc.property(inputArb, (i) => {
        const s = computeNatsStatus(i);
        expect(statusChanged(s, s)).toBe(false);
        expect(statusChanged(s, structuredClone(s))).toBe(false);
      }),
    );
  });

  it('each condition type appears at most once', () => {
    fc.assert(
      fc.property(inputArb, (i) => {
        const types = (computeNatsStatus(i).conditions ?? []).map((c) => c.type);
        expect(new Set(types).size).toBe(types.length);
      }),
    );
  });
});
