// Re-created servers of removed JetStream peers (src/controller/rejoin.ts), on a manual clock: by
// when nats-server re-admits them, what the JetStream condition and its Events say meanwhile,
// that rolling restarts do not wait for them, and what stays in the record of removals.
import {
  decideRejoin,
  formatRemovedPeers,
  parseRemovedPeers,
  PEER_REJOIN_MS,
  REJOIN_GRACE_MS,
  withRemoval,
  type RemovedPeers,
} from '../../src/controller/rejoin.ts';
import {
  healthEvents,
  healthWarns,
  JETSTREAM_CONDITION,
  jetStreamConditions,
  JetStreamReason,
} from '../../src/controller/jetstream-health.ts';
import { decideRollout, type RolloutPod } from '../../src/controller/rollout.ts';
import type { NatsStatus } from '../../src/api/nats.ts';
import type { ServerHealth } from '../../src/nats/monitoring.ts';
import { manualClock } from '../support/manual-clock.ts';

const START = Date.parse('2026-12-02T03:50:00Z');
const name = (ordinal: number): string => `eventing-nats-${String(ordinal)}`;

function pod(ordinal: number, startedAt: number, overrides: Partial<RolloutPod> = {}): RolloutPod {
  return {
    name: name(ordinal),
    uid: `uid-${String(ordinal)}-${String(startedAt)}`,
    revision: 'rev-1',
    terminating: false,
    ready: true,
    startedAt: new Date(startedAt).toISOString(),
    ...overrides,
  };
}

/** Every server's answers; `peers` are the meta group's members, `leader` among them. */
function servers(
  running: readonly number[],
  peers: readonly number[],
  leader = 0,
): Map<string, ServerHealth> {
  return new Map(
    running.map((ordinal) => {
      const health: ServerHealth = {
        pod: name(ordinal),
        reachable: true,
        jetStreamEnabled: true,
        healthy: true,
        metaLeader: name(leader),
        metaClusterSize: peers.length,
        ...(ordinal === leader
          ? {
              metaReplicas: peers
                .filter((p) => p !== leader)
                .map((p) => ({ name: name(p), current: true, lag: 0, offline: false })),
            }
          : {}),
        ledStreams: [],
        storageUsed: 0,
        storageMax: 1024 * 1024 * 1024,
      };
      return [name(ordinal), health] as const;
    }),
  );
}

/** -4 removed at START, -3 20 s later, as a 5 -> 3 scale-down does. */
function removals(): RemovedPeers {
  return withRemoval(
    withRemoval(new Map(), name(4), new Date(START)),
    name(3),
    new Date(START + 20_000),
  );
}

describe('the record of removed peers', () => {
  test('round-trips through the annotation, sorted; unreadable values count as none', () => {
    const text = formatRemovedPeers(removals());
    expect(text).toBe(
      '{"eventing-nats-3":"2026-12-02T03:50:20.000Z","eventing-nats-4":"2026-12-02T03:50:00.000Z"}',
    );
    expect(parseRemovedPeers(text)).toEqual(removals());
    expect(formatRemovedPeers(new Map())).toBeUndefined();
    expect(parseRemovedPeers(undefined).size).toBe(0);
    expect(parseRemovedPeers('not json').size).toBe(0);
    expect(parseRemovedPeers('["eventing-nats-3"]').size).toBe(0);
    expect([...parseRemovedPeers('{"a":"2026-12-02T03:50:00Z","b":"soon","c":1}').keys()]).toEqual([
      'a',
    ]);
  });
});

describe('decideRejoin over a 5 -> 3 -> 5', () => {
  const staying = [0, 1, 2].map((o) => pod(o, START - 3_600_000));

  test('while the departing servers still run, nothing rejoins and the record stays', () => {
    // -4 was removed and still runs (its pod predates the removal); -3 is being removed.
    const decision = decideRejoin({
      removed: removals(),
      pods: [...staying, pod(3, START - 3_600_000), pod(4, START - 3_600_000)],
      servers: servers([0, 1, 2, 3, 4], [0, 1, 2, 3]),
      now: new Date(START + 21_000),
    });
    expect(decision).toEqual({ rejoining: [] });
  });

  test('re-created inside the window: reported with the time nats-server admits each, then admitted', async () => {
    const clock = manualClock(START + 60_000);
    const recreated = [pod(3, clock.now()), pod(4, clock.now())];
    await clock.advance(20_000);
    const waiting = decideRejoin({
      removed: removals(),
      pods: [...staying, ...recreated],
      servers: servers([0, 1, 2, 3, 4], [0, 1, 2]),
      now: new Date(clock.now()),
    });
    expect(waiting.record).toBeUndefined();
    expect(waiting.rejoining).toEqual([
      {
        server: name(3),
        removedAt: new Date(START + 20_000),
        rejoinsBy: new Date(START + 20_000 + PEER_REJOIN_MS),
        overdue: false,
      },
      {
        server: name(4),
        removedAt: new Date(START),
        rejoinsBy: new Date(START + PEER_REJOIN_MS),
        overdue: false,
      },
    ]);

    // The status says so; the state stays Ready (no warning); an Event says it once.
    const previous: NatsStatus = {
      state: 'Ready',
      conditions: [
        {
          type: JETSTREAM_CONDITION,
          status: 'True',
          reason: JetStreamReason.Enabled,
          message: 'JetStream is enabled on all 3 server(s); the meta leader is eventing-nats-0.',
          lastTransitionTime: '2026-12-02T03:00:00Z',
        },
      ],
    };
    const health = servers([0, 1, 2, 3, 4], [0, 1, 2]);
    const [js] = jetStreamConditions(health, true, previous, waiting.rejoining);
    expect(js).toEqual({
      type: JETSTREAM_CONDITION,
      status: 'False',
      reason: JetStreamReason.PeersRejoining,
      message:
        'JetStream is enabled on all 5 server(s); the meta leader is eventing-nats-0. ' +
        'eventing-nats-3 rejoins JetStream by 03:55:20Z, eventing-nats-4 by 03:55:00Z: ' +
        'nats-server re-admits a removed peer 5 minutes after its removal. Until then they ' +
        'serve clients but hold no stream replicas; the meta group has 3 peers.',
    });
    expect(healthWarns(js === undefined ? [] : [js])).toBe(false);
    const rejoiningStatus: NatsStatus = {
      state: 'Ready',
      conditions: [{ ...js, lastTransitionTime: '2026-12-02T03:51:20Z' } as never],
    };
    expect(healthEvents(previous, rejoiningStatus)).toEqual([
      { type: 'Normal', reason: 'PeersRejoining', message: js?.message },
    ]);
    expect(healthEvents(rejoiningStatus, rejoiningStatus)).toEqual([]);

    // -4's window passes first: nats-server admits it; it leaves the record, -3 still waits.
    await clock.advance(START + PEER_REJOIN_MS + 1_000 - clock.now());
    const half = decideRejoin({
      removed: removals(),
      pods: [...staying, ...recreated],
      servers: servers([0, 1, 2, 3, 4], [0, 1, 2, 4]),
      now: new Date(clock.now()),
    });
    expect(half.rejoining.map((r) => r.server)).toEqual([name(3)]);
    expect([...(half.record?.keys() ?? [])]).toEqual([name(3)]);
    const [one] = jetStreamConditions(
      servers([0, 1, 2, 3, 4], [0, 1, 2, 4]),
      true,
      rejoiningStatus,
      half.rejoining,
    );
    expect(one?.message).toContain(
      'eventing-nats-3 rejoins JetStream by 03:55:20Z: nats-server re-admits a removed peer 5 ' +
        'minutes after its removal. Until then it serves clients but holds no stream replicas; ' +
        'the meta group has 4 peers.',
    );

    // Then -3: the record empties and the condition clears, with an Event.
    await clock.advance(20_000);
    const done = decideRejoin({
      removed: half.record ?? new Map(),
      pods: [...staying, ...recreated],
      servers: servers([0, 1, 2, 3, 4], [0, 1, 2, 3, 4]),
      now: new Date(clock.now()),
    });
    expect(done).toEqual({ rejoining: [], record: new Map() });
    const [enabled] = jetStreamConditions(
      servers([0, 1, 2, 3, 4], [0, 1, 2, 3, 4]),
      true,
      rejoiningStatus,
      done.rejoining,
    );
    expect(enabled?.reason).toBe(JetStreamReason.Enabled);
    expect(
      healthEvents(rejoiningStatus, {
        state: 'Ready',
        conditions: [{ ...enabled, lastTransitionTime: '2026-12-02T03:55:21Z' } as never],
      }),
    ).toEqual([{ type: 'Normal', reason: 'PeersRejoined', message: enabled?.message }]);
  });

  test('admitted at once (nats-server sometimes does): no report, the record empties', () => {
    const decision = decideRejoin({
      removed: removals(),
      pods: [...staying, pod(3, START + 60_000), pod(4, START + 60_000)],
      servers: servers([0, 1, 2, 3, 4], [0, 1, 2, 3, 4]),
      now: new Date(START + 90_000),
    });
    expect(decision).toEqual({ rejoining: [], record: new Map() });
  });

  test('still outside the group a minute past its time: overdue, a Warning and the state Warning', () => {
    const now = START + 20_000 + PEER_REJOIN_MS + REJOIN_GRACE_MS;
    const decision = decideRejoin({
      removed: removals(),
      pods: [...staying, pod(3, START + 60_000), pod(4, START + 60_000)],
      servers: servers([0, 1, 2, 3, 4], [0, 1, 2, 4]),
      now: new Date(now),
    });
    expect(decision.rejoining).toEqual([
      expect.objectContaining({ server: name(3), overdue: true }) as unknown,
    ]);
    const [js] = jetStreamConditions(
      servers([0, 1, 2, 3, 4], [0, 1, 2, 4]),
      true,
      undefined,
      decision.rejoining,
    );
    expect(js?.reason).toBe(JetStreamReason.RejoinOverdue);
    expect(js?.message).toContain(
      'eventing-nats-3 (due 03:55:20Z) is still not in the JetStream meta group.',
    );
    expect(healthWarns(js === undefined ? [] : [js])).toBe(true);
    const events = healthEvents(undefined, {
      conditions: [{ ...js, lastTransitionTime: '2026-12-02T03:56:20Z' } as never],
    });
    expect(events).toEqual([{ type: 'Warning', reason: 'RejoinOverdue', message: js?.message }]);
  });

  test('a pod not Ready yet, or no meta leader answering: nothing reported, the record kept', () => {
    const notReady = decideRejoin({
      removed: removals(),
      pods: [...staying, pod(3, START + 60_000, { ready: false }), pod(4, START + 60_000)],
      servers: servers([0, 1, 2, 4], [0, 1, 2]),
      now: new Date(START + 70_000),
    });
    expect(notReady.rejoining.map((r) => r.server)).toEqual([name(4)]);
    expect(notReady.record).toBeUndefined();
    const leaderless = decideRejoin({
      removed: removals(),
      pods: [...staying, pod(3, START + 60_000), pod(4, START + 60_000)],
      servers: new Map(
        [...servers([0, 1, 2, 3, 4], [0, 1, 2])].map(([n, h]) => [
          n,
          { ...h, metaLeader: undefined, metaReplicas: undefined } as ServerHealth,
        ]),
      ),
      now: new Date(START + 70_000),
    });
    expect(leaderless).toEqual({ rejoining: [] });
  });

  test('no scale-up: the record is kept through the window and dropped after it', () => {
    const inside = decideRejoin({
      removed: removals(),
      pods: staying,
      servers: servers([0, 1, 2], [0, 1, 2]),
      now: new Date(START + PEER_REJOIN_MS - 1),
    });
    expect(inside).toEqual({ rejoining: [] });
    const between = decideRejoin({
      removed: removals(),
      pods: staying,
      servers: servers([0, 1, 2], [0, 1, 2]),
      now: new Date(START + PEER_REJOIN_MS),
    });
    expect([...(between.record?.keys() ?? [])]).toEqual([name(3)]);
    const after = decideRejoin({
      removed: removals(),
      pods: staying,
      servers: undefined,
      now: new Date(START + 20_000 + PEER_REJOIN_MS),
    });
    expect(after).toEqual({ rejoining: [], record: new Map() });
  });
});

describe('rolling restarts with servers rejoining', () => {
  test('the rejoining servers are not waited for; the staying ones still are', () => {
    const pods = [
      pod(0, START - 3_600_000),
      pod(1, START - 3_600_000),
      pod(2, START - 3_600_000),
      pod(3, START + 60_000, { revision: 'rev-2' }),
      pod(4, START + 60_000, { revision: 'rev-2' }),
    ];
    const health = servers([0, 1, 2, 3, 4], [0, 1, 2]);
    const statefulSet = {
      metadata: { generation: 3 },
      spec: { replicas: 5 },
      status: { observedGeneration: 3, updateRevision: 'rev-2' },
    };
    const now = new Date(START + 120_000);
    // Without knowing they rejoin, the meta leader not listing them holds the rollout.
    expect(decideRollout({ statefulSet, pods, servers: health, now })).toMatchObject({
      kind: 'wait',
      message: expect.stringContaining(
        'waiting for eventing-nats-4 to be current (the meta leader eventing-nats-0 does not see it current',
      ) as unknown,
    });
    // Knowing it, a follower goes first.
    const rejoining = [name(3), name(4)];
    expect(decideRollout({ statefulSet, pods, servers: health, now, rejoining })).toMatchObject({
      kind: 'restart',
      pod: name(2),
    });
    // A rejoining server's own answers still count.
    const down = new Map(health);
    down.set(name(3), { pod: name(3), reachable: false, error: 'connection refused' });
    expect(decideRollout({ statefulSet, pods, servers: down, now, rejoining })).toMatchObject({
      kind: 'wait',
      pod: name(3),
    });
  });
});
