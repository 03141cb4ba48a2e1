// The scale-down step decision over many states: what it removes, when it waits, when it cuts the
// StatefulSet and which claims it deletes. test/integration/nats-peer-removal.test.ts drives the
// same function against five real servers.
import fc from 'fast-check';
import type { ObjectRef } from '../../src/base/object.ts';
import {
  decideScaleDown,
  ordinalOf,
  SCALE_DOWN_PREFIX,
  type ScaleDownObservation,
} from '../../src/controller/scale-down.ts';
import type { ClusterView, StreamReplicas } from '../../src/nats/peers.ts';

const STS = 'eventing-nats';
const name = (ordinal: number): string => `${STS}-${String(ordinal)}`;
const claim = (ordinal: number): { ordinal: number; ref: ObjectRef } => ({
  ordinal,
  ref: {
    apiVersion: 'v1',
    kind: 'PersistentVolumeClaim',
    namespace: 'kyma-system',
    name: `${STS}-${STS}-${String(ordinal)}`,
  },
});
const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i);

/** A healthy cluster of the given members (all in JetStream and the meta group). */
function healthy(members: readonly number[], streams: StreamReplicas[] = []): ClusterView {
  const names = members.map(name);
  return {
    servers: names,
    jetStream: names,
    healthy: names,
    metaLeader: names[0] ?? '',
    metaPeers: names.map((n) => ({ name: n, current: true, offline: false })),
    streams,
  };
}

function observed(
  replicas: number,
  view: ClusterView | string,
  more: Partial<ScaleDownObservation> = {},
): ScaleDownObservation {
  return {
    statefulSet: STS,
    replicas,
    podOrdinals: range(replicas),
    readyOrdinals: range(replicas),
    claims: range(replicas).map(claim),
    cluster: typeof view === 'string' ? { ok: false, error: view } : { ok: true, value: view },
    ...more,
  };
}

describe('decideScaleDown', () => {
  test('at size: replicas stay, nothing removed, no progress', () => {
    const step = decideScaleDown(3, observed(3, healthy(range(3))));
    expect(step).toEqual({ replicas: 3, deleteClaims: [] });
  });

  test('growing: replicas rise to the size at once, no claim is touched', () => {
    const step = decideScaleDown(5, { ...observed(3, healthy(range(3))), cluster: undefined });
    expect(step).toEqual({ replicas: 5, deleteClaims: [] });
  });

  test('5 -> 3, all healthy: removes the highest ordinal from JetStream, keeps 5 replicas', () => {
    const step = decideScaleDown(3, observed(5, healthy(range(5))));
    expect(step.replicas).toBe(5);
    expect(step.removePeer).toBe(name(4));
    expect(step.progress?.message).toBe(
      `${SCALE_DOWN_PREFIX} from 5 to 3 servers (2 servers to remove): removing eventing-nats-4 from JetStream.`,
    );
    expect(step.progress?.blocked).toBe(false);
    expect(step.requeueAfterMs).toBeGreaterThan(0);
  });

  test('the leaving server leads the meta group: the leadership moves to a staying server first', () => {
    const view = { ...healthy(range(5)), metaLeader: name(4) };
    const step = decideScaleDown(3, observed(5, view));
    expect(step.removePeer).toBeUndefined();
    expect(step.stepDownTo).toBe(name(0));
    expect(step.replicas).toBe(5);
    expect(step.progress?.message).toContain(
      'moving the JetStream meta leadership off eventing-nats-4',
    );
  });

  test('once the server left the meta group and the rest is healthy: cuts it from the StatefulSet', () => {
    const view = { ...healthy(range(4)), servers: range(5).map(name) };
    const step = decideScaleDown(3, observed(5, view));
    expect(step.removePeer).toBeUndefined();
    expect(step.replicas).toBe(4);
    expect(step.progress?.message).toContain('eventing-nats-4 left JetStream; stopping it');
  });

  test('left the group, but a replica is still catching up: waits before cutting', () => {
    const view = { ...healthy(range(4)), healthy: [name(0), name(1), name(3)] };
    const step = decideScaleDown(3, observed(5, view));
    expect(step.replicas).toBe(5);
    expect(step.removePeer).toBeUndefined();
    expect(step.progress?.message).toContain('not healthy (streams catching up): eventing-nats-2');
  });

  test('a staying meta peer not current or offline: waits, removes nothing', () => {
    for (const lag of [
      { current: false, offline: false },
      { current: true, offline: true },
    ]) {
      const view = healthy(range(5));
      const metaPeers = view.metaPeers.map((p) => (p.name === name(1) ? { ...p, ...lag } : p));
      const step = decideScaleDown(3, observed(5, { ...view, metaPeers }));
      expect(step.removePeer).toBeUndefined();
      expect(step.replicas).toBe(5);
      expect(step.progress?.message).toContain('meta peers not current: eventing-nats-1');
    }
  });

  test('the next departing server must stand too while one is removed', () => {
    const view = healthy(range(5));
    const step = decideScaleDown(3, observed(5, { ...view, healthy: range(4).map(name) }));
    // Server 4 itself may be unhealthy: it leaves. Server 3 unhealthy would block.
    expect(step.removePeer).toBe(name(4));
    const blocked = decideScaleDown(3, observed(5, { ...view, healthy: [0, 1, 2, 4].map(name) }));
    expect(blocked.removePeer).toBeUndefined();
    expect(blocked.progress?.message).toContain('eventing-nats-3');
  });

  test('a departing server that never joined the meta group holds no removal up', () => {
    const view = healthy(range(5));
    const metaPeers = view.metaPeers.filter((p) => p.name !== name(3));
    const step = decideScaleDown(
      3,
      observed(5, { ...view, metaPeers, healthy: [0, 1, 2, 4].map(name) }),
    );
    expect(step.removePeer).toBe(name(4));
  });

  test('no meta leader: waits', () => {
    const view: ClusterView = { ...healthy(range(5)), metaPeers: [] };
    delete (view as { metaLeader?: string }).metaLeader;
    const step = decideScaleDown(3, observed(5, view));
    expect(step.removePeer).toBeUndefined();
    expect(step.progress?.message).toContain('no JetStream meta leader');
  });

  test('a departing server offline but still a meta peer is removed (quorum stands without it)', () => {
    const view = healthy(range(5));
    const metaPeers = view.metaPeers.map((p) =>
      p.name === name(4) ? { ...p, offline: true, current: false } : p,
    );
    const step = decideScaleDown(
      3,
      observed(5, { ...view, metaPeers, servers: range(4).map(name) }),
    );
    expect(step.removePeer).toBe(name(4));
  });

  test('a removed server that came back (re-admitted) is removed again before the cut', () => {
    const step = decideScaleDown(3, observed(5, healthy(range(5))));
    expect(step.removePeer).toBe(name(4));
    expect(step.replicas).toBe(5);
  });

  test('NATS cannot be asked: holds the replicas, blocked, with the error', () => {
    const step = decideScaleDown(3, observed(5, 'no NATS handshake within 5000 ms'));
    expect(step).toMatchObject({ replicas: 5, deleteClaims: [] });
    expect(step.removePeer).toBeUndefined();
    expect(step.progress).toEqual({
      message:
        `${SCALE_DOWN_PREFIX} from 5 to 3 servers (2 servers to remove): waiting to ask NATS ` +
        'about eventing-nats-4: no NATS handshake within 5000 ms.',
      blocked: true,
    });
  });

  test('NATS cannot be asked and the leaving pod never became ready: cut without a removal', () => {
    const step = decideScaleDown(
      3,
      observed(5, 'connection refused', { readyOrdinals: [0, 1, 2, 3] }),
    );
    expect(step.removePeer).toBeUndefined();
    expect(step.replicas).toBe(4);
    expect(step.progress?.message).toContain(
      'NATS cannot be asked and eventing-nats-4 is not ready; stopping it.',
    );
    // Asked, a server that is not ready but still a meta peer is removed first.
    const asked = decideScaleDown(3, observed(5, healthy(range(5)), { readyOrdinals: range(4) }));
    expect(asked.removePeer).toBe(name(4));
  });

  test('streams with more replicas than the new size block, named', () => {
    const streams = [
      { account: '$G', name: 'orders', replicas: 5, hosts: range(5).map(name) },
      { account: '$G', name: 'ok', replicas: 3, hosts: range(3).map(name) },
    ];
    const step = decideScaleDown(3, observed(5, healthy(range(5), streams)));
    expect(step.removePeer).toBeUndefined();
    expect(step.replicas).toBe(5);
    expect(step.progress?.blocked).toBe(true);
    expect(step.progress?.message).toContain('orders (R5)');
    expect(step.progress?.message).not.toContain('ok (R3)');
  });

  test('an R1 stream whose only replica is on a leaving server blocks; elsewhere it does not', () => {
    const on = (host: number): StreamReplicas[] => [
      { account: '$G', name: 'single', replicas: 1, hosts: [name(host)] },
    ];
    const blocked = decideScaleDown(3, observed(5, healthy(range(5), on(3))));
    expect(blocked.progress?.message).toContain('single (R1 on eventing-nats-3)');
    expect(blocked.removePeer).toBeUndefined();
    expect(decideScaleDown(3, observed(5, healthy(range(5), on(1)))).removePeer).toBe(name(4));
  });

  test('claims of cut ordinals go once their pods are gone, not before', () => {
    const claims = range(5).map(claim);
    const podsLeft = decideScaleDown(
      3,
      observed(3, healthy(range(3)), { podOrdinals: range(4), claims }),
    );
    expect(podsLeft.deleteClaims).toEqual([claim(4).ref]);
    expect(podsLeft.progress?.message).toContain('deleting the volume claims of removed servers');
    expect(podsLeft.requeueAfterMs).toBeGreaterThan(0);
    const gone = decideScaleDown(3, observed(3, healthy(range(3)), { claims }));
    expect(gone.deleteClaims).toEqual([claim(3).ref, claim(4).ref]);
    // While shrinking, a claim of an ordinal already cut goes as well.
    const during = decideScaleDown(3, observed(4, healthy(range(4)), { claims }));
    expect(during.deleteClaims).toEqual([claim(4).ref]);
  });

  test('no claim of an ordinal below the old or the new size is ever deleted', () => {
    const claims = range(5).map(claim);
    const growing = decideScaleDown(
      5,
      observed(3, healthy(range(3)), { claims, podOrdinals: range(3) }),
    );
    expect(growing.deleteClaims).toEqual([]);
  });

  test('ordinalOf reads pod and claim names', () => {
    expect(ordinalOf(STS, 'eventing-nats-4')).toBe(4);
    expect(ordinalOf(STS, 'eventing-nats-eventing-nats-12')).toBe(12);
    expect(ordinalOf(STS, 'other-4')).toBeUndefined();
    expect(ordinalOf(STS, 'eventing-nats')).toBeUndefined();
  });
});

/**
 * A model cluster the decision drives: each step may be followed by health flapping; removal
 * takes effect when asked, a cut stops the pod, and pods go some steps later.
 */
describe('decideScaleDown driving a model cluster', () => {
  const arbitrary = fc.record({
    from: fc.integer({ min: 3, max: 9 }),
    to: fc.integer({ min: 1, max: 9 }),
    flaps: fc.array(fc.record({ unhealthy: fc.integer({ min: 0, max: 8 }), ask: fc.boolean() }), {
      minLength: 60,
      maxLength: 60,
    }),
  });

  test('keeps quorum, removes only the highest ordinal, cuts only removed servers, ends at the size', () => {
    fc.assert(
      fc.property(arbitrary, ({ from, to, flaps }) => {
        const size = Math.min(to, from);
        let replicas = from;
        const members = new Set(range(from));
        let pods = range(from);
        let claims = range(from);
        let steps = 0;
        for (const flap of [
          ...flaps,
          ...Array.from({ length: 40 }, () => ({ unhealthy: -1, ask: true })),
        ]) {
          steps++;
          const alive = pods.filter((p) => members.has(p));
          const view: ClusterView = {
            ...healthy(alive),
            servers: pods.map(name),
            healthy: alive.filter((p) => p !== flap.unhealthy).map(name),
          };
          const step = decideScaleDown(size, {
            statefulSet: STS,
            replicas,
            podOrdinals: pods,
            readyOrdinals: pods,
            claims: claims.map(claim),
            cluster: flap.ask ? { ok: true, value: view } : { ok: false, error: 'down' },
          });
          expect(step.replicas).toBeGreaterThanOrEqual(size);
          expect(step.replicas).toBeLessThanOrEqual(Math.max(replicas, size));
          if (step.removePeer !== undefined) {
            expect(step.removePeer).toBe(name(replicas - 1));
            expect(view.metaLeader).not.toBe(step.removePeer);
            // Every other member was healthy and in the group.
            for (const m of members)
              if (m !== replicas - 1) expect(view.healthy).toContain(name(m));
            members.delete(replicas - 1);
          }
          if (step.replicas < replicas) {
            // Only a server that left the group is cut.
            expect(members.has(replicas - 1)).toBe(false);
          }
          for (const ref of step.deleteClaims) {
            const ordinal = ordinalOf(STS, ref.name) ?? -1;
            expect(pods).not.toContain(ordinal);
            expect(ordinal).toBeGreaterThanOrEqual(Math.max(step.replicas, size));
          }
          claims = claims.filter(
            (c) => !step.deleteClaims.some((r) => ordinalOf(STS, r.name) === c),
          );
          // The StatefulSet controller stops pods beyond replicas one step later.
          pods = pods.filter((p) => p < replicas);
          replicas = step.replicas;
          if (step.progress === undefined && replicas === size && pods.length === size) break;
        }
        expect(replicas).toBe(size);
        expect([...members].toSorted((a, b) => a - b)).toEqual(range(size));
        expect(claims).toEqual(range(size));
        expect(steps).toBeLessThanOrEqual(100);
      }),
      { numRuns: 300 },
    );
  });
});
