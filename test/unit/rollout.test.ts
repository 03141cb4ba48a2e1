// The rollout decision (src/controller/rollout.ts) over many states of a 3-pod (and 1- and
// 5-pod) cluster: at most one server is ever out of service because of the manager, the next
// pod goes only once every server is current, and the status message names the pod.
import { readFileSync } from 'node:fs';
import {
  decideRollout,
  notCurrentBecause,
  type RolloutDecision,
  type RolloutInput,
  type RolloutPod,
} from '../../src/controller/rollout.ts';
import { parseJsz, type ReplicaView, type ServerHealth } from '../../src/nats/monitoring.ts';

const NEW = 'eventing-nats-new';
const OLD = 'eventing-nats-old';
const NOW = new Date('2026-12-02T01:00:00Z');

function pod(ordinal: number, overrides: Partial<RolloutPod> = {}): RolloutPod {
  return {
    name: `eventing-nats-${String(ordinal)}`,
    uid: `uid-${String(ordinal)}`,
    revision: OLD,
    terminating: false,
    ready: true,
    startedAt: '2026-12-02T00:59:30Z',
    ...overrides,
  };
}

function replica(name: string, current = true): ReplicaView {
  return { name, current, lag: current ? 0 : 42, offline: false };
}

/** A healthy cluster's answers: meta leader `leader`, stream `orders` led by `streamLeader`. */
function servers(
  size: number,
  options: {
    leader?: string;
    streamLeader?: string;
    change?: (name: string, health: ServerHealth) => ServerHealth;
  } = {},
): Map<string, ServerHealth> {
  const names = Array.from({ length: size }, (_, i) => `eventing-nats-${String(i)}`);
  const leader = options.leader ?? names[0] ?? '';
  const streamLeader = options.streamLeader ?? names[1] ?? names[0] ?? '';
  const map = new Map<string, ServerHealth>();
  for (const name of names) {
    const others = names.filter((n) => n !== name).map((n) => replica(n));
    const health: ServerHealth = {
      pod: name,
      reachable: true,
      jetStreamEnabled: true,
      healthy: true,
      ...(size > 1 ? { metaLeader: leader, metaClusterSize: size } : {}),
      ...(name === leader && size > 1 ? { metaReplicas: others } : {}),
      ledStreams:
        name === streamLeader && size > 1
          ? [{ account: '$G', name: 'orders', replicas: others.slice(0, 2) }]
          : [],
      storageUsed: 1024,
      storageMax: 805306368,
    };
    map.set(name, options.change?.(name, health) ?? health);
  }
  return map;
}

function sts(replicas: number, overrides: { generation?: number; observed?: number } = {}) {
  return {
    metadata: { generation: overrides.generation ?? 2 },
    spec: { replicas },
    status: { observedGeneration: overrides.observed ?? 2, updateRevision: NEW },
  };
}

function decide(partial: Partial<RolloutInput> & Pick<RolloutInput, 'pods'>): RolloutDecision {
  return decideRollout({
    statefulSet: sts(partial.pods.length),
    servers: servers(partial.pods.length),
    now: NOW,
    ...partial,
  });
}

describe('the rollout decision', () => {
  it('does nothing when every pod runs the latest revision', () => {
    const pods = [0, 1, 2].map((i) => pod(i, { revision: NEW }));
    expect(decide({ pods })).toEqual({ kind: 'none' });
  });

  it('does nothing before the StatefulSet controller has seen the latest spec, or without a revision', () => {
    const pods = [0, 1, 2].map((i) => pod(i));
    expect(decide({ pods, statefulSet: sts(3, { generation: 3, observed: 2 }) })).toEqual({
      kind: 'none',
    });
    expect(decide({ pods, statefulSet: undefined })).toEqual({ kind: 'none' });
    expect(decide({ pods, statefulSet: { spec: { replicas: 3 }, status: {} } })).toEqual({
      kind: 'none',
    });
  });

  it('restarts the highest-ordinal follower first, and the meta leader last', () => {
    const pods = [0, 1, 2].map((i) => pod(i));
    const first = decide({ pods, servers: servers(3, { leader: 'eventing-nats-2' }) });
    expect(first).toMatchObject({ kind: 'restart', pod: 'eventing-nats-1', uid: 'uid-1' });
    expect(first.kind === 'restart' && first.message).toBe(
      'Rolling out one pod at a time (0/3 pods at the latest revision): restarting eventing-nats-1.',
    );
    const onlyLeaderLeft = [pod(0, { revision: NEW }), pod(1, { revision: NEW }), pod(2)];
    expect(
      decide({ pods: onlyLeaderLeft, servers: servers(3, { leader: 'eventing-nats-2' }) }),
    ).toMatchObject({ kind: 'restart', pod: 'eventing-nats-2' });
  });

  it('waits while the restarted pod terminates or is being re-created, naming it', () => {
    const terminating = [pod(0), pod(1), pod(2, { terminating: true })];
    expect(decide({ pods: terminating })).toEqual({
      kind: 'wait',
      pod: 'eventing-nats-2',
      message:
        'Rolling out one pod at a time (0/3 pods at the latest revision): waiting for eventing-nats-2 to stop.',
      overdue: false,
    });
    const missing = [pod(0), pod(2)];
    expect(
      decideRollout({ statefulSet: sts(3), pods: missing, servers: servers(3), now: NOW }),
    ).toMatchObject({ kind: 'wait', pod: 'eventing-nats-1' });
  });

  const notYetCurrent: [string, (name: string, h: ServerHealth) => ServerHealth, string][] = [
    [
      'its monitoring does not answer',
      (name, h) =>
        name === 'eventing-nats-2' ? { pod: name, reachable: false, error: 'ECONNREFUSED' } : h,
      'its monitoring did not answer (ECONNREFUSED)',
    ],
    [
      'JetStream is not enabled yet',
      (name, h) =>
        name === 'eventing-nats-2' && h.reachable ? { ...h, jetStreamEnabled: false } : h,
      'JetStream is not enabled on it',
    ],
    [
      'its full health check fails',
      (name, h) =>
        name === 'eventing-nats-2' && h.reachable
          ? { ...h, healthy: false, healthError: 'JetStream stream orders is not current' }
          : h,
      'its health check fails: JetStream stream orders is not current',
    ],
    [
      'it knows no meta leader',
      (name, h) =>
        name === 'eventing-nats-2' && h.reachable ? { ...h, metaLeader: undefined } : h,
      'it knows no JetStream meta leader',
    ],
    [
      'the meta leader does not see it current',
      (name, h) =>
        name === 'eventing-nats-0' && h.reachable
          ? {
              ...h,
              metaReplicas: [replica('eventing-nats-1'), replica('eventing-nats-2', false)],
            }
          : h,
      'the meta leader eventing-nats-0 does not see it current',
    ],
    [
      'a stream has not caught up on it',
      (name, h) =>
        name === 'eventing-nats-1' && h.reachable
          ? {
              ...h,
              ledStreams: [
                {
                  account: '$G',
                  name: 'orders',
                  replicas: [replica('eventing-nats-0'), replica('eventing-nats-2', false)],
                },
              ],
            }
          : h,
      'stream orders (leader eventing-nats-1) has not caught up on it (lag 42)',
    ],
  ];

  it.each(notYetCurrent)(
    'waits for the restarted pod when %s, and names why',
    (_what, change, because) => {
      const pods = [pod(0), pod(1), pod(2, { revision: NEW })];
      const decision = decide({ pods, servers: servers(3, { change }) });
      expect(decision).toEqual({
        kind: 'wait',
        pod: 'eventing-nats-2',
        message:
          'Rolling out one pod at a time (1/3 pods at the latest revision): waiting for ' +
          `eventing-nats-2 to be current (${because}).`,
        overdue: false,
      });
    },
  );

  it('waits while the restarted pod is not Ready, and then once it is, goes on', () => {
    const notReady = [pod(0), pod(1), pod(2, { revision: NEW, ready: false })];
    expect(decide({ pods: notReady })).toMatchObject({ kind: 'wait', pod: 'eventing-nats-2' });
    const ready = [pod(0), pod(1), pod(2, { revision: NEW })];
    expect(decide({ pods: ready })).toMatchObject({ kind: 'restart', pod: 'eventing-nats-1' });
  });

  it('restarts nothing while two servers are not current, whichever revision they run', () => {
    const change = (name: string, h: ServerHealth): ServerHealth =>
      name === 'eventing-nats-0' ? h : { pod: name, reachable: false, error: 'timeout' };
    const pods = [pod(0), pod(1), pod(2, { revision: NEW })];
    const decision = decide({ pods, servers: servers(3, { change }) });
    expect(decision.kind).toBe('wait');
    expect(decision.kind === 'wait' && decision.message).toContain(
      'also not current: eventing-nats-1',
    );
    // Both old: still no restart, a second server down would cost the quorum.
    const old = [pod(0), pod(1), pod(2)];
    expect(decide({ pods: old, servers: servers(3, { change }) }).kind).toBe('wait');
  });

  it('restarts an outdated pod that is the only one not current (it is out of service anyway)', () => {
    const pods = [pod(0), pod(1, { ready: false }), pod(2, { revision: NEW })];
    const decision = decide({ pods });
    expect(decision).toMatchObject({ kind: 'restart', pod: 'eventing-nats-1', uid: 'uid-1' });
    expect(decision.kind === 'restart' && decision.message).toContain(
      'which is not current anyway (the pod is not Ready)',
    );
  });

  it('says when the restarted server is overdue, and still restarts nothing', () => {
    const change = (name: string, h: ServerHealth): ServerHealth =>
      name === 'eventing-nats-2' && h.reachable ? { ...h, healthy: false, healthError: 'x' } : h;
    const late = [pod(0), pod(1), pod(2, { revision: NEW, startedAt: '2026-12-02T00:45:00Z' })];
    const decision = decide({ pods: late, servers: servers(3, { change }) });
    expect(decision).toMatchObject({ kind: 'wait', pod: 'eventing-nats-2', overdue: true });
    expect(decision.kind === 'wait' && decision.message).toContain(
      'It has not been current for 900 s, past the 10 min deadline',
    );
    const early = [pod(0), pod(1), pod(2, { revision: NEW, startedAt: '2026-12-02T00:59:00Z' })];
    expect(decide({ pods: early, servers: servers(3, { change }) })).toMatchObject({
      overdue: false,
    });
  });

  it('a single server has no quorum to keep: it is restarted at once, only JetStream and health asked', () => {
    expect(decide({ pods: [pod(0)] })).toMatchObject({ kind: 'restart', pod: 'eventing-nats-0' });
    const restarted = [pod(0, { revision: NEW })];
    expect(decide({ pods: restarted })).toEqual({ kind: 'none' });
  });

  it('walks a 5-pod cluster through a whole rollout, never two servers down', () => {
    let pods = [0, 1, 2, 3, 4].map((i) => pod(i));
    const order: string[] = [];
    for (let step = 0; step < 20; step++) {
      const decision = decideRollout({
        statefulSet: sts(5),
        pods,
        servers: servers(5, { leader: 'eventing-nats-3' }),
        now: NOW,
      });
      if (decision.kind === 'none') break;
      expect(decision.kind).toBe('restart');
      if (decision.kind !== 'restart') break;
      order.push(decision.pod);
      // Terminating: the next look waits.
      pods = pods.map((p) => (p.name === decision.pod ? { ...p, terminating: true } : p));
      expect(decideRollout({ statefulSet: sts(5), pods, servers: servers(5), now: NOW }).kind).toBe(
        'wait',
      );
      // Re-created at the new revision, Ready and current.
      pods = pods.map((p) =>
        p.name === decision.pod ? { ...p, terminating: false, revision: NEW, uid: 'new' } : p,
      );
    }
    expect(order).toEqual([
      'eventing-nats-4',
      'eventing-nats-2',
      'eventing-nats-1',
      'eventing-nats-0',
      'eventing-nats-3',
    ]);
  });
});

describe('whether a server is current, on real /jsz answers', () => {
  const fixture = JSON.parse(
    readFileSync(new URL('../fixtures/jsz-three-servers.json', import.meta.url), 'utf8'),
  ) as Record<string, unknown>;

  function fromFixture(): Map<string, ServerHealth> {
    const map = new Map<string, ServerHealth>();
    for (const name of ['eventing-nats-0', 'eventing-nats-1', 'eventing-nats-2']) {
      const view = parseJsz(fixture[name]);
      map.set(name, {
        pod: name,
        reachable: true,
        jetStreamEnabled: !view.disabled,
        healthy: true,
        ...(view.metaLeader === undefined ? {} : { metaLeader: view.metaLeader }),
        ...(view.metaLeader === name && view.metaReplicas !== undefined
          ? { metaReplicas: view.metaReplicas }
          : {}),
        ledStreams: view.streams.filter((s) => s.leader === name),
        ...(view.storageUsed === undefined ? {} : { storageUsed: view.storageUsed }),
        ...(view.storageMax === undefined ? {} : { storageMax: view.storageMax }),
      });
    }
    return map;
  }

  it('reads the meta leader, the stream leader and the store from the answers', () => {
    const leaderView = parseJsz(fixture['eventing-nats-2']);
    expect(leaderView.metaLeader).toBe('eventing-nats-2');
    expect(leaderView.metaReplicas?.map((r) => [r.name, r.current])).toEqual([
      ['eventing-nats-0', true],
      ['eventing-nats-1', true],
    ]);
    const streamLeader = parseJsz(fixture['eventing-nats-1']);
    expect(streamLeader.streams).toEqual([
      expect.objectContaining({ name: 'orders', account: '$G', leader: 'eventing-nats-1' }),
    ]);
    expect(streamLeader.storageMax).toBe(805306368);
    expect(streamLeader.storageUsed).toBe(2150);
    expect(parseJsz('not json')).toEqual({ disabled: true, streams: [] });
  });

  it('every server of the healthy cluster is current; a follower view (stale by design) is not trusted', () => {
    const health = fromFixture();
    // eventing-nats-0's own view lists eventing-nats-2 as not current: only leaders are asked.
    for (const i of [0, 1, 2]) {
      expect(notCurrentBecause(pod(i), health, true)).toBeUndefined();
    }
  });
});
