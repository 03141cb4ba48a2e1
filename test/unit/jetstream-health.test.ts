// JetStream's health in the status and its Warning Events (src/controller/jetstream-health.ts),
// and how the status (status.ts) and the plan's settle step (plan.ts) carry them: conditions from
// every server's monitoring answers, Warning state while JetStream is disabled, one Event per
// crossing of 80% and 90%, none on repeats, and nothing to write when nothing changed.
import type { NatsStatus } from '../../src/api/nats.ts';
import {
  healthEvents,
  jetStreamConditions,
  storageLevel,
} from '../../src/controller/jetstream-health.ts';
import { computeNatsStatus, statusChanged, type StatusInput } from '../../src/controller/status.ts';
import type { ServerHealth } from '../../src/nats/monitoring.ts';

const MAX = 1000;

function server(
  name: string,
  overrides: Partial<Extract<ServerHealth, { reachable: true }>> = {},
): ServerHealth {
  return {
    pod: name,
    reachable: true,
    jetStreamEnabled: true,
    healthy: true,
    metaLeader: 'eventing-nats-1',
    ledStreams: [],
    storageUsed: 10,
    storageMax: MAX,
    ...overrides,
  };
}

function cluster(...servers: ServerHealth[]): Map<string, ServerHealth> {
  return new Map(servers.map((s) => [s.pod, s]));
}

function healthy(used: [number, number, number] = [10, 10, 10]): Map<string, ServerHealth> {
  return cluster(...used.map((u, i) => server(`eventing-nats-${String(i)}`, { storageUsed: u })));
}

const READY_STS = {
  metadata: { generation: 1 },
  spec: { replicas: 3, updateStrategy: { type: 'OnDelete' } },
  status: {
    observedGeneration: 1,
    replicas: 3,
    readyReplicas: 3,
    updatedReplicas: 3,
    currentRevision: 'old',
    updateRevision: 'new',
  },
};

function status(
  servers: Map<string, ServerHealth> | undefined,
  previous?: NatsStatus,
  extra: Partial<StatusInput> = {},
): NatsStatus {
  return computeNatsStatus({
    nats: { name: 'eventing-nats', namespace: 'kyma-system', generation: 1, deleting: false },
    previous,
    now: new Date('2026-12-02T01:00:00Z'),
    clusterDomain: 'cluster.local',
    outcome: { kind: 'applied' },
    statefulSet: READY_STS,
    zones: ['a', 'b', 'c'],
    size: 3,
    ...(servers === undefined ? {} : { servers }),
    ...extra,
  });
}

function condition(s: NatsStatus, type: string) {
  return s.conditions?.find((c) => c.type === type);
}

describe('JetStream conditions from the servers', () => {
  it('all enabled with one meta leader: True, naming the leader; the store per server in whole percent', () => {
    const [js, storage] = jetStreamConditions(healthy([10, 805, 0]), true, undefined);
    expect(js).toEqual({
      type: 'JetStream',
      status: 'True',
      reason: 'Enabled',
      message: 'JetStream is enabled on all 3 server(s); the meta leader is eventing-nats-1.',
    });
    expect(storage).toEqual({
      type: 'JetStreamStorage',
      status: 'False',
      reason: 'StorageHigh',
      message:
        "File storage used of each server's 0 MiB store: eventing-nats-0 1%, eventing-nats-1 80%, eventing-nats-2 0%.",
    });
  });

  it('a disabled server, a missing meta leader, disagreeing leaders, an unreachable server', () => {
    const disabled = cluster(
      server('eventing-nats-0'),
      server('eventing-nats-1', { jetStreamEnabled: false }),
    );
    expect(jetStreamConditions(disabled, true, undefined)[0]).toMatchObject({
      status: 'False',
      reason: 'Disabled',
      message: expect.stringContaining('JetStream is disabled on eventing-nats-1') as string,
    });
    const noLeader = server('eventing-nats-0', { metaLeader: undefined });
    expect(
      jetStreamConditions(cluster(noLeader, server('eventing-nats-1')), true, undefined)[0],
    ).toMatchObject({
      status: 'False',
      reason: 'NoMetaLeader',
      message:
        'No JetStream meta leader known to eventing-nats-0: the JetStream API is unavailable there.',
    });
    const split = cluster(
      server('eventing-nats-0', { metaLeader: 'eventing-nats-0' }),
      server('eventing-nats-1'),
    );
    expect(jetStreamConditions(split, true, undefined)[0]).toMatchObject({
      reason: 'NoMetaLeader',
    });
    const unreachable = cluster(server('eventing-nats-0'), {
      pod: 'eventing-nats-1',
      reachable: false,
      error: 'no answer within 2000 ms',
    });
    const [js, storage] = jetStreamConditions(unreachable, true, undefined);
    expect(js).toMatchObject({ status: 'Unknown', reason: 'Unknown' });
    expect(storage?.message).toContain('Not reported by eventing-nats-1.');
  });

  it('a single server needs no meta leader', () => {
    const alone = server('eventing-nats-0', { metaLeader: undefined });
    expect(jetStreamConditions(cluster(alone), false, undefined)[0]).toMatchObject({
      status: 'True',
      message: 'JetStream is enabled on all 1 server(s).',
    });
  });

  it.each([
    [0, 0, 0],
    [79, 0, 0],
    [80, 0, 1],
    [89, 0, 1],
    [90, 0, 2],
    [100, 0, 2],
    // Held until 5 points below the threshold it rose past.
    [76, 1, 1],
    [74, 1, 0],
    [86, 2, 2],
    [84, 2, 1],
    [70, 2, 0],
  ] as const)('storage at %i%% from level %i is level %i', (pct, from, to) => {
    expect(storageLevel(pct, from)).toBe(to);
  });
});

describe('JetStream health in the status and its events', () => {
  it('Ready with both conditions; an unchanged poll writes nothing', () => {
    const first = status(healthy());
    expect(first.state).toBe('Ready');
    expect(condition(first, 'JetStream')?.status).toBe('True');
    expect(condition(first, 'JetStreamStorage')?.reason).toBe('StorageNormal');
    expect(statusChanged(first, status(healthy(), first))).toBe(false);
    // A few more bytes within the same whole percent: still nothing to write.
    expect(statusChanged(first, status(healthy([11, 12, 13]), first))).toBe(false);
    expect(healthEvents(first, status(healthy(), first))).toEqual([]);
  });

  it('JetStream disabling itself: Warning state, one Warning Event, none on the next poll', () => {
    const before = status(healthy());
    const servers = healthy();
    servers.set('eventing-nats-2', server('eventing-nats-2', { jetStreamEnabled: false }));
    const after = status(servers, before);
    expect(after.state).toBe('Warning');
    const events = healthEvents(before, after);
    expect(events).toEqual([
      {
        type: 'Warning',
        reason: 'JetStreamDisabled',
        message: expect.stringContaining('JetStream is disabled on eventing-nats-2') as string,
      },
    ]);
    expect(healthEvents(after, status(servers, after))).toEqual([]);
    // Back, then disabled again: a new Event.
    const back = status(healthy(), after);
    expect(back.state).toBe('Ready');
    expect(healthEvents(back, status(servers, back))).toHaveLength(1);
  });

  it('no meta leader (a forming cluster): the condition says so, the state stays Ready, no Event', () => {
    const before = status(healthy());
    const servers = cluster(
      ...['eventing-nats-0', 'eventing-nats-1', 'eventing-nats-2'].map((n) =>
        server(n, { metaLeader: undefined }),
      ),
    );
    const after = status(servers, before);
    expect(after.state).toBe('Ready');
    expect(condition(after, 'JetStream')).toMatchObject({
      status: 'False',
      reason: 'NoMetaLeader',
    });
    expect(healthEvents(before, after)).toEqual([]);
  });

  it('storage crossing 80% then 90%: one Event each, none while it stays, none on the way down', () => {
    const low = status(healthy([500, 10, 10]));
    const high = status(healthy([810, 10, 10]), low);
    expect(high.state).toBe('Ready');
    expect(healthEvents(low, high)).toEqual([
      {
        type: 'Warning',
        reason: 'StorageHigh',
        message: expect.stringMatching(
          /^JetStream file storage crossed 80%: .*eventing-nats-0 81%/,
        ) as string,
      },
    ]);
    const higher = status(healthy([850, 10, 10]), high);
    expect(healthEvents(high, higher)).toEqual([]);
    const critical = status(healthy([905, 10, 10]), higher);
    expect(critical.state).toBe('Warning');
    expect(healthEvents(higher, critical).map((e) => e.reason)).toEqual(['StorageCritical']);
    // Wobbling around 90%: held Critical, no new Event.
    const wobble = status(healthy([880, 10, 10]), critical);
    expect(condition(wobble, 'JetStreamStorage')?.reason).toBe('StorageCritical');
    const again = status(healthy([901, 10, 10]), wobble);
    expect(healthEvents(wobble, again)).toEqual([]);
    const down = status(healthy([100, 10, 10]), again);
    expect(condition(down, 'JetStreamStorage')?.reason).toBe('StorageNormal');
    expect(healthEvents(again, down)).toEqual([]);
    // Straight from normal to critical: the 90% Event.
    expect(healthEvents(down, status(healthy([950, 10, 10]), down)).map((e) => e.reason)).toEqual([
      'StorageCritical',
    ]);
  });

  it('keeps the last JetStream conditions while pods roll or when no server was asked', () => {
    const ready = status(healthy());
    const rolling = status(undefined, ready, {
      rollout: { message: 'Rolling out one pod at a time: restarting eventing-nats-2.' },
    });
    expect(rolling.state).toBe('Processing');
    expect(condition(rolling, 'StatefulSet')).toMatchObject({
      status: 'False',
      reason: 'Pending',
      message: 'Rolling out one pod at a time: restarting eventing-nats-2.',
    });
    expect(condition(rolling, 'Available')?.reason).toBe('Deploying');
    expect(condition(rolling, 'AvailabilityZones')?.reason).toBe('Pending');
    expect(condition(rolling, 'JetStream')).toEqual(condition(ready, 'JetStream'));
    const notAsked = status(undefined, ready);
    expect(condition(notAsked, 'JetStreamStorage')).toEqual(condition(ready, 'JetStreamStorage'));
    // A storage level reached is not lost to a poll where no server reported.
    const high = status(healthy([850, 10, 10]), ready);
    const blip = status(
      cluster({ pod: 'eventing-nats-0', reachable: false, error: 'timeout' }),
      high,
    );
    expect(condition(blip, 'JetStreamStorage')?.reason).toBe('StorageHigh');
    expect(healthEvents(blip, status(healthy([850, 10, 10]), blip))).toEqual([]);
  });

  it('with OnDelete, all pods updated and ready is Ready though currentRevision stays behind', () => {
    expect(status(undefined).state).toBe('Ready');
    const rolling = {
      ...READY_STS,
      spec: { replicas: 3 },
    };
    expect(status(undefined, undefined, { statefulSet: rolling }).state).toBe('Processing');
  });
});
