// How the reconcile plan (src/controller/plan.ts) calls the rollout and the health poll: pods are
// rolled against the live StatefulSet only when no StatefulSet write is planned, a restart is
// announced once it went through, the status names the pod, a rollout is looked at again soon
// and a converged resource at the health poll's interval; a converged idle poll writes nothing.
import { NATS_FINALIZER, type Nats } from '../../src/api/nats.ts';
import type { KubeObject } from '../../src/base/object.ts';
import {
  FIELD_MANAGER,
  HEALTH_POLL_MS,
  UNSETTLED_POLL_MS,
  planReconcile,
  restartEvent,
  settleApply,
  type ApplyPlan,
  type Observations,
} from '../../src/controller/plan.ts';
import { REMOVED_PEERS_ANNOTATION } from '../../src/controller/rejoin.ts';
import { ROLLOUT_POLL_MS, type RolloutPod } from '../../src/controller/rollout.ts';
import type { ServerHealth } from '../../src/nats/monitoring.ts';
import { PLAN_SETTINGS, renderedChildren } from '../support/plan.ts';

const UID = '11111111-2222-4333-8444-555555555555';
const NOW = new Date('2026-12-02T01:00:00Z');
const PASSWORD = 'p'.repeat(40);

const RESOURCE = {
  apiVersion: 'operator.kyma-project.io/v1alpha1',
  kind: 'NATS',
  metadata: {
    name: 'eventing-nats',
    namespace: 'kyma-system',
    uid: UID,
    generation: 1,
    resourceVersion: '10',
    finalizers: [NATS_FINALIZER],
  },
  spec: { cluster: { size: 3 }, jetStream: { fileStorage: { size: '1Gi' } } },
} as Nats;

/** The children as the caches hold them after our apply; the StatefulSet with its status. */
function converged(updateRevision: string): KubeObject[] {
  return renderedChildren(RESOURCE, PASSWORD).map((object) => ({
    ...structuredClone(object),
    metadata: {
      ...structuredClone(object.metadata),
      resourceVersion: '5',
      generation: 1,
      managedFields: [{ manager: FIELD_MANAGER, operation: 'Apply', fieldsV1: {} }],
    },
    ...(object.kind === 'StatefulSet'
      ? {
          status: {
            observedGeneration: 1,
            replicas: 3,
            readyReplicas: 3,
            updatedReplicas: updateRevision === 'new' ? 1 : 3,
            currentRevision: 'old',
            updateRevision,
          },
        }
      : {}),
  }));
}

function pods(revisions: readonly string[]): RolloutPod[] {
  return revisions.map((revision, i) => ({
    name: `eventing-nats-${String(i)}`,
    uid: `uid-${String(i)}`,
    revision,
    terminating: false,
    ready: true,
    startedAt: '2026-12-02T00:59:00Z',
  }));
}

function servers(): Map<string, ServerHealth> {
  const names = ['eventing-nats-0', 'eventing-nats-1', 'eventing-nats-2'];
  return new Map(
    names.map((name) => [
      name,
      {
        pod: name,
        reachable: true,
        jetStreamEnabled: true,
        healthy: true,
        metaLeader: 'eventing-nats-0',
        metaReplicas:
          name === 'eventing-nats-0'
            ? names.slice(1).map((n) => ({ name: n, current: true, lag: 0, offline: false }))
            : undefined,
        ledStreams: [],
        storageUsed: 0,
        storageMax: 805306368,
      },
    ]),
  );
}

function observed(children: readonly KubeObject[], extra: Partial<Observations>): Observations {
  return {
    children: new Map(children.map((o) => [o.kind, o])),
    servedCrd: () => false,
    newPassword: PASSWORD,
    now: NOW,
    ...extra,
  };
}

function plan(resource: Nats, observations: Observations): ApplyPlan {
  const p = planReconcile({ nats: resource, settings: PLAN_SETTINGS, observed: observations });
  if (p.kind !== 'apply') throw new Error(`expected an apply plan, got ${p.kind}`);
  return p;
}

describe('the rollout in the reconcile plan', () => {
  it('restarts the next pod, says so in the status and an Event, and looks again soon', () => {
    const observations = observed(converged('new'), {
      pods: pods(['new', 'old', 'old']),
      servers: servers(),
    });
    const p = plan(RESOURCE, observations);
    expect(p.writes).toEqual([]);
    expect(p.rollout).toMatchObject({ kind: 'restart', pod: 'eventing-nats-2', uid: 'uid-2' });
    const input = { nats: RESOURCE, settings: PLAN_SETTINGS, observed: observations };
    const settled = settleApply(input, p, []);
    expect(settled.status?.state).toBe('Processing');
    expect(settled.status?.conditions?.find((c) => c.type === 'StatefulSet')).toMatchObject({
      status: 'False',
      reason: 'Pending',
      message:
        'Rolling out one pod at a time (1/3 pods at the latest revision): restarting eventing-nats-2.',
    });
    expect(restartEvent(p, { ok: true })).toEqual([
      {
        type: 'Normal',
        reason: 'Restarting',
        message:
          'Rolling out one pod at a time (1/3 pods at the latest revision): restarting eventing-nats-2.',
      },
    ]);
    expect(settled.requeueAfterMs).toBe(ROLLOUT_POLL_MS);
    // A delete that did not go through (the pod was replaced meanwhile) is not announced.
    expect(restartEvent(p, { ok: false, error: 'Precondition failed' })).toEqual([]);
  });

  it('rolls nothing while the StatefulSet itself is being written', () => {
    const children = converged('new').map((o) =>
      o.kind === 'StatefulSet'
        ? { ...o, spec: { ...(o.spec as Record<string, unknown>), replicas: 5 } }
        : o,
    );
    const p = plan(RESOURCE, observed(children, { pods: pods(['new', 'old', 'old']) }));
    expect(p.writes.map((w) => w.object.kind)).toEqual(['StatefulSet']);
    expect(p.rollout).toEqual({ kind: 'none' });
  });

  it('a converged resource: Ready with JetStream conditions, polled at the health interval, and the next poll writes nothing', () => {
    const observations = observed(converged('old'), {
      pods: pods(['old', 'old', 'old']),
      servers: servers(),
    });
    const p = plan(RESOURCE, observations);
    expect(p.rollout).toEqual({ kind: 'none' });
    const first = settleApply(
      { nats: RESOURCE, settings: PLAN_SETTINGS, observed: observations },
      p,
      [],
    );
    expect(first.status?.state).toBe('Ready');
    expect(first.status?.conditions?.map((c) => c.type)).toEqual([
      'StatefulSet',
      'Available',
      'AvailabilityZones',
      'JetStream',
      'JetStreamStorage',
    ]);
    expect(first.requeueAfterMs).toBe(HEALTH_POLL_MS);
    const stored = { ...RESOURCE, status: first.status } as Nats;
    const again = settleApply(
      {
        nats: stored,
        settings: { ...PLAN_SETTINGS, healthPollMs: 60_000 },
        observed: observations,
      },
      plan(stored, observations),
      [],
    );
    expect(again.status).toBeUndefined();
    expect(again.events).toEqual([]);
    expect(again.requeueAfterMs).toBe(60_000);
  });

  it('while JetStream is not known to serve (no meta leader yet), the servers are asked sooner', () => {
    const leaderless = new Map(
      [...servers()].map(([name, health]) => [name, { ...health, metaLeader: undefined }]),
    );
    const observations = observed(converged('old'), {
      pods: pods(['old', 'old', 'old']),
      servers: leaderless,
    });
    const settled = settleApply(
      { nats: RESOURCE, settings: PLAN_SETTINGS, observed: observations },
      plan(RESOURCE, observations),
      [],
    );
    expect(settled.status?.state).toBe('Ready');
    expect(settled.requeueAfterMs).toBe(UNSETTLED_POLL_MS);
  });

  it('a change of nats.conf only (logging) writes the ConfigMap and restarts no pod: the reloader applies it', () => {
    const debug = structuredClone(RESOURCE);
    debug.spec = { ...debug.spec, logging: { debug: true } };
    const observations = observed(converged('old'), {
      pods: pods(['old', 'old', 'old']),
      servers: servers(),
    });
    const p = plan(debug, observations);
    expect(p.writes.map((w) => w.object.kind)).toEqual(['ConfigMap']);
    expect(p.rollout).toEqual({ kind: 'none' });
  });

  it('without pods or monitoring answers, nothing is polled (as before: watch events only)', () => {
    const observations = observed(converged('old'), {});
    const p = plan(RESOURCE, observations);
    expect(p.rollout).toEqual({ kind: 'none' });
    const settled = settleApply(
      { nats: RESOURCE, settings: PLAN_SETTINGS, observed: observations },
      p,
      [],
    );
    expect(settled.requeueAfterMs).toBeUndefined();
  });
});

describe('a re-created server of a removed peer in the reconcile plan', () => {
  const removedAt = new Date(NOW.getTime() - 60_000);
  const annotated = structuredClone(RESOURCE);
  if (annotated.metadata !== undefined) {
    annotated.metadata.annotations = {
      [REMOVED_PEERS_ANNOTATION]: `{"eventing-nats-2":"${removedAt.toISOString()}"}`,
    };
  }
  // eventing-nats-2 was removed a minute ago and its pod started 30 s ago.
  const recreated = pods(['old', 'old', 'old']).map((p) =>
    p.name === 'eventing-nats-2'
      ? { ...p, startedAt: new Date(NOW.getTime() - 30_000).toISOString() }
      : p,
  );
  const outside = new Map(servers());
  const leader = outside.get('eventing-nats-0');
  if (leader?.reachable === true) {
    outside.set('eventing-nats-0', { ...leader, metaReplicas: leader.metaReplicas?.slice(0, 1) });
  }

  it('the status says by when it rejoins, the state stays Ready, an Event tells it once, and the servers are asked sooner', () => {
    const observations = observed(converged('old'), { pods: recreated, servers: outside });
    const p = plan(annotated, observations);
    expect(p.rejoin.rejoining.map((r) => r.server)).toEqual(['eventing-nats-2']);
    expect(p.rejoin.record).toBeUndefined();
    const settled = settleApply(
      { nats: annotated, settings: PLAN_SETTINGS, observed: observations },
      p,
      [],
    );
    expect(settled.status?.state).toBe('Ready');
    const js = settled.status?.conditions?.find((c) => c.type === 'JetStream');
    expect(js).toMatchObject({ status: 'False', reason: 'PeersRejoining' });
    expect(js?.message).toContain(
      'eventing-nats-2 rejoins JetStream by 01:04:00Z: nats-server re-admits a removed peer 5 minutes after its removal.',
    );
    expect(settled.events.filter((e) => e.reason.startsWith('Peers'))).toEqual([
      { type: 'Normal', reason: 'PeersRejoining', message: js?.message },
    ]);
    expect(settled.requeueAfterMs).toBe(UNSETTLED_POLL_MS);
  });

  it('once the meta group lists it: the record is emptied', () => {
    const p = plan(annotated, observed(converged('old'), { pods: recreated, servers: servers() }));
    expect(p.rejoin).toEqual({ rejoining: [], record: new Map() });
  });
});
