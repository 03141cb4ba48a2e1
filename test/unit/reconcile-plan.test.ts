// The specification of the reconcile loop: what one reconcile decides, from the resource, its
// children as the caches hold them, and what was observed. Pure: no API server, no clock.
import { NATS_FINALIZER, type Nats } from '../../src/api/nats.ts';
import type { KubeObject } from '../../src/base/object.ts';
import {
  FIELD_MANAGER,
  isOwnChild,
  planReconcile,
  settleApply,
  type ApplyPlan,
  type DeletePlan,
  type Observations,
  type PlanInput,
  type WriteResult,
} from '../../src/controller/plan.ts';
import type { CustomerDataCheck } from '../../src/nats/customer-data.ts';
import { PLAN_SETTINGS, renderedChildren } from '../support/plan.ts';
import { systemAccountPasswordFrom } from '../../src/render/secret.ts';

const UID = '11111111-2222-4333-8444-555555555555';
const NOW = new Date('2026-05-01T10:00:00Z');
const PASSWORD = 'p'.repeat(40);

interface NatsOptions {
  name?: string;
  finalizer?: boolean;
  deleting?: boolean;
  /** The spec was reconciled before: status.observedGeneration == generation. */
  reconciled?: boolean;
  state?: string;
  generation?: number;
}

function nats(options: NatsOptions = {}): Nats {
  const generation = options.generation ?? 1;
  return {
    apiVersion: 'operator.kyma-project.io/v1alpha1',
    kind: 'NATS',
    metadata: {
      name: options.name ?? 'eventing-nats',
      namespace: 'kyma-system',
      uid: UID,
      generation,
      resourceVersion: '10',
      finalizers: options.finalizer === false ? [] : [NATS_FINALIZER],
      ...(options.deleting === true ? { deletionTimestamp: new Date(NOW) } : {}),
    },
    spec: { cluster: { size: 3 }, jetStream: { fileStorage: { size: '1Gi' } } },
    ...(options.reconciled === true
      ? { status: { state: options.state ?? 'Ready', observedGeneration: generation } }
      : {}),
  } as Nats;
}

function rendered(resource: Nats = nats(), istio = false): KubeObject[] {
  return renderedChildren(resource, PASSWORD, istio);
}

const OUR_APPLY = {
  manager: FIELD_MANAGER,
  operation: 'Apply',
  fieldsV1: { 'f:metadata': { 'f:labels': {} } },
};

/** The child as the cache holds it after our apply: what we rendered, and our managed fields. */
function live(object: KubeObject, extraManagedFields: unknown[] = []): KubeObject {
  return {
    ...structuredClone(object),
    metadata: {
      ...structuredClone(object.metadata),
      resourceVersion: '5',
      managedFields: [OUR_APPLY, ...extraManagedFields],
    },
  };
}

function byKind(objects: readonly KubeObject[]): Map<string, KubeObject> {
  return new Map(objects.map((o) => [o.kind, o]));
}

function observed(
  children: readonly KubeObject[],
  extra: Partial<Observations> = {},
): Observations {
  return {
    children: byKind(children),
    servedCrd: () => false,
    newPassword: PASSWORD,
    now: NOW,
    ...extra,
  };
}

function input(resource: Nats, observations: Observations): PlanInput {
  return { nats: resource, settings: PLAN_SETTINGS, observed: observations };
}

function applyPlan(resource: Nats, observations: Observations): ApplyPlan {
  const plan = planReconcile(input(resource, observations));
  if (plan.kind !== 'apply') throw new Error(`expected an apply plan, got ${plan.kind}`);
  return plan;
}

function deletePlan(resource: Nats, observations: Observations): DeletePlan {
  const plan = planReconcile(input(resource, observations));
  if (plan.kind !== 'delete') throw new Error(`expected a delete plan, got ${plan.kind}`);
  return plan;
}

function converged(resource: Nats = nats()): KubeObject[] {
  return rendered(resource).map((o) => live(o));
}

function child(kind: string, objects: readonly KubeObject[] = rendered()): KubeObject {
  const found = objects.find((o) => o.kind === kind);
  if (found === undefined) throw new Error(`no ${kind}`);
  return found;
}

function replaced(objects: KubeObject[], kind: string, by: KubeObject): KubeObject[] {
  return objects.map((o) => (o.kind === kind ? by : o));
}

function succeeded(plan: ApplyPlan): WriteResult[] {
  return plan.writes.map((write) => ({ write, ok: true, object: write.object }));
}

describe('the reconcile plan', () => {
  describe('a resource that is not the served one', () => {
    it('is told, in its status and an event, that it is not reconciled; nothing else', () => {
      const plan = planReconcile(input(nats({ name: 'second' }), observed([])));
      expect(plan.kind).toBe('forbidden');
      if (plan.kind !== 'forbidden') return;
      expect(plan.status?.state).toBe('Error');
      // The Go manager's message, first; our detail follows it.
      const goMessage =
        'Only a single NATS CR with name: eventing-nats and namespace: kyma-system is allowed ' +
        'to be created in a Kyma cluster.';
      for (const type of ['StatefulSet', 'Available']) {
        const found = plan.status?.conditions?.find((c) => c.type === type);
        expect(found).toMatchObject({ status: 'False', reason: 'Forbidden' });
        expect(found?.message.startsWith(`${goMessage} `)).toBe(true);
      }
      expect(plan.events).toEqual([
        expect.objectContaining({ type: 'Warning', reason: 'Forbidden' }),
      ]);
      expect(plan.events[0]?.message.startsWith(goMessage)).toBe(true);
    });

    it('is left alone while it is deleted', () => {
      expect(planReconcile(input(nats({ name: 'second', deleting: true }), observed([])))).toEqual({
        kind: 'none',
      });
    });
  });

  describe('creating', () => {
    it('a new resource gets the finalizer, then every child, announced as Created', () => {
      const plan = applyPlan(nats({ finalizer: false }), observed([]));
      expect(plan.addFinalizer).toBe(true);
      expect(plan.writes.map((w) => [w.child.kind, w.action])).toEqual([
        ['ConfigMap', 'create'],
        ['Secret', 'create'],
        ['Service', 'create'],
        ['StatefulSet', 'create'],
        ['PodDisruptionBudget', 'create'],
      ]);
      expect(plan.writes.map((w) => w.event.reason)).toEqual(Array<string>(5).fill('Created'));
      expect(plan.conflicts).toEqual([]);
    });

    it('renders the DestinationRule only while its CRD is served', () => {
      const withIstio = applyPlan(nats(), observed([], { servedCrd: () => true }));
      expect(withIstio.writes.map((w) => w.child.kind)).toContain('DestinationRule');
      const without = applyPlan(nats(), observed([]));
      expect(without.writes.map((w) => w.child.kind)).not.toContain('DestinationRule');
    });

    it('writes the children exactly as rendered', () => {
      const plan = applyPlan(nats(), observed([]));
      expect(plan.writes.map((w) => w.object)).toEqual(rendered());
    });
  });

  describe('a converged resource', () => {
    it('plans no write at all', () => {
      const plan = applyPlan(nats({ reconciled: true }), observed(converged()));
      expect(plan.writes).toEqual([]);
      expect(plan.addFinalizer).toBe(false);
      expect(plan.unchanged.map((o) => o.kind)).toHaveLength(5);
    });

    it('keeps the password of its own Secret, whatever password it is offered', () => {
      const plan = applyPlan(
        nats({ reconciled: true }),
        observed(converged(), { newPassword: 'q'.repeat(40) }),
      );
      expect(plan.writes).toEqual([]);
    });
  });

  describe('out-of-band changes', () => {
    it('a deleted child is recreated and the event says it was restored', () => {
      const children = converged().filter((o) => o.kind !== 'StatefulSet');
      const plan = applyPlan(nats({ reconciled: true }), observed(children));
      expect(plan.writes.map((w) => [w.child.kind, w.action])).toEqual([['StatefulSet', 'create']]);
      expect(plan.writes[0]?.event).toMatchObject({ type: 'Warning', reason: 'Restored' });
    });

    it('a field another client changed is applied back, naming the field, as Restored', () => {
      const sts = live(child('StatefulSet'), [
        {
          manager: 'kubectl-scale',
          operation: 'Update',
          fieldsV1: { 'f:spec': { 'f:replicas': {} } },
        },
      ]);
      (sts.spec as { replicas: number }).replicas = 7;
      const plan = applyPlan(
        nats({ reconciled: true }),
        observed(replaced(converged(), 'StatefulSet', sts)),
      );
      expect(plan.writes).toHaveLength(1);
      expect(plan.writes[0]).toMatchObject({ action: 'apply', drift: 'spec.replicas' });
      expect(plan.writes[0]?.event).toMatchObject({ type: 'Warning', reason: 'Restored' });
    });

    describe('the Restored event names who changed the child, from its managedFields', () => {
      function restoredReplicas(managedFields: unknown[]): string | undefined {
        const sts = live(child('StatefulSet'), managedFields);
        (sts.spec as { replicas: number }).replicas = 7;
        const plan = applyPlan(
          nats({ reconciled: true }),
          observed(replaced(converged(), 'StatefulSet', sts)),
        );
        expect(plan.writes[0]?.event.reason).toBe('Restored');
        return plan.writes[0]?.event.message;
      }
      const REPLICAS = { 'f:spec': { 'f:replicas': {} } };
      // A label we render too, at our value: owning it is no drift.
      const LABEL = { 'f:metadata': { 'f:labels': { 'f:app.kubernetes.io/component': {} } } };

      it('the field manager, its operation and when', () => {
        expect(
          restoredReplicas([
            {
              manager: 'kubectl-patch',
              operation: 'Update',
              time: '2026-05-01T09:59:00Z',
              fieldsV1: REPLICAS,
            },
          ]),
        ).toBe(
          'Restored StatefulSet eventing-nats: spec.replicas was changed outside the NATS ' +
            'resource by kubectl-patch (Update at 2026-05-01T09:59:00Z).',
        );
      });

      it('of the entries that own the drifted field, the latest; others that changed later do not count', () => {
        const message = restoredReplicas([
          {
            manager: 'kubectl-scale',
            operation: 'Update',
            time: '2026-05-01T09:00:00Z',
            fieldsV1: REPLICAS,
          },
          {
            manager: 'hpa-like',
            operation: 'Apply',
            time: '2026-05-01T09:30:00Z',
            fieldsV1: REPLICAS,
          },
          {
            manager: 'kubectl-label',
            operation: 'Update',
            time: '2026-05-01T09:50:00Z',
            fieldsV1: LABEL,
          },
        ]);
        expect(message).toContain('by hpa-like (Apply at 2026-05-01T09:30:00Z)');
      });

      it('Kubernetes itself and our own entries are never named', () => {
        const message = restoredReplicas([
          {
            manager: 'kubectl-edit',
            operation: 'Update',
            time: '2026-05-01T09:00:00Z',
            fieldsV1: REPLICAS,
          },
          {
            manager: 'kube-controller-manager',
            operation: 'Update',
            time: '2026-05-01T09:59:00Z',
            fieldsV1: REPLICAS,
          },
        ]);
        expect(message).toContain('by kubectl-edit (Update at 2026-05-01T09:00:00Z)');
      });

      it('a client without a manager name is said to be one', () => {
        const message = restoredReplicas([{ operation: 'Update', fieldsV1: REPLICAS }]);
        expect(message).toContain('by a client without a field manager name (Update).');
      });

      it('a removed field has no owner: the latest other client is named', () => {
        const service = live(child('Service'), [
          {
            manager: 'old-tool',
            operation: 'Update',
            time: '2026-05-01T08:00:00Z',
            fieldsV1: LABEL,
          },
          {
            manager: 'kubectl-edit',
            operation: 'Update',
            time: '2026-05-01T09:00:00Z',
            fieldsV1: LABEL,
          },
        ]);
        delete (service.metadata.labels as Record<string, string>)['app.kubernetes.io/instance'];
        const plan = applyPlan(
          nats({ reconciled: true }),
          observed(replaced(converged(), 'Service', service)),
        );
        expect(plan.writes[0]?.action).toBe('apply');
        expect(plan.writes[0]?.event.message).toContain(
          'was changed outside the NATS resource by kubectl-edit (Update at 2026-05-01T09:00:00Z).',
        );
      });

      it('without any other client in managedFields, no one is named', () => {
        const service = live(child('Service'));
        delete (service.metadata.labels as Record<string, string>)['app.kubernetes.io/instance'];
        const plan = applyPlan(
          nats({ reconciled: true }),
          observed(replaced(converged(), 'Service', service)),
        );
        expect(plan.writes[0]?.event.message).toMatch(/changed outside the NATS resource\.$/);
      });
    });

    it('a field someone removed is put back as Restored (a removal leaves no owner)', () => {
      const service = live(child('Service'));
      delete (service.metadata.labels as Record<string, string>)['app.kubernetes.io/instance'];
      const plan = applyPlan(
        nats({ reconciled: true }),
        observed(replaced(converged(), 'Service', service)),
      );
      expect(plan.writes[0]?.event.reason).toBe('Restored');
    });

    it('tells a label another client changed from one our rendering changed, dots in its key and all', () => {
      const byOthers = live(child('Secret'), [
        {
          manager: 'kubectl-label',
          operation: 'Update',
          fieldsV1: { 'f:metadata': { 'f:labels': { 'f:app.kubernetes.io/instance': {} } } },
        },
      ]);
      (byOthers.metadata.labels as Record<string, string>)['app.kubernetes.io/instance'] = 'x';
      const ours = live(child('Secret'));
      (ours.metadata.labels as Record<string, string>)['app.kubernetes.io/instance'] = 'x';
      const reasons = [byOthers, ours].map(
        (secret) =>
          applyPlan(nats({ reconciled: true }), observed(replaced(converged(), 'Secret', secret)))
            .writes[0]?.event.reason,
      );
      expect(reasons).toEqual(['Restored', 'Updated']);
    });

    it.each([
      ['the spec changed', true],
      ['a new version of the manager renders differently (same spec)', false],
    ])('our own rendering changed (%s): Updated, never Restored', (_, specChanged) => {
      const resource = nats({ reconciled: true, generation: 2 });
      if (specChanged) resource.status = { ...resource.status, observedGeneration: 1 };
      // Only we own the field, with the value we rendered before.
      const sts = live(child('StatefulSet'));
      (sts.spec as { replicas: number }).replicas = 7;
      const plan = applyPlan(resource, observed(replaced(converged(), 'StatefulSet', sts)));
      expect(plan.writes[0]?.event).toMatchObject({ type: 'Normal', reason: 'Updated' });
    });

    it('a field someone else added (a label) is removed by replacing the child', () => {
      const configMap = live(child('ConfigMap'), [
        {
          manager: 'kubectl-edit',
          operation: 'Update',
          fieldsV1: { 'f:metadata': { 'f:labels': { 'f:extra': {} } } },
        },
      ]);
      (configMap.metadata.labels as Record<string, string>).extra = 'x';
      const plan = applyPlan(
        nats({ reconciled: true }),
        observed(replaced(converged(), 'ConfigMap', configMap)),
      );
      expect(plan.writes).toHaveLength(1);
      const [write] = plan.writes;
      expect(write?.action).toBe('replace');
      expect(write?.drift).toBe('metadata.labels.extra');
      expect(write?.event.message).toBe(
        'Restored ConfigMap eventing-nats-config: metadata.labels.extra was changed outside ' +
          'the NATS resource by kubectl-edit (Update).',
      );
      // Compare-and-swap on what was read, and exactly what we render.
      expect(write?.object.metadata.resourceVersion).toBe('5');
      expect(write?.object.metadata.labels).toEqual(child('ConfigMap').metadata.labels);
    });

    it('a changed Service port number (a keyed list entry) is replaced, not merged into a duplicate', () => {
      const service = live(child('Service'), [
        {
          manager: 'kubectl-edit',
          operation: 'Update',
          fieldsV1: {
            'f:spec': {
              'f:ports': { 'k:{"port":4223,"protocol":"TCP"}': { '.': {}, 'f:port': {} } },
            },
          },
        },
      ]);
      const ports = (service.spec as { ports: { port: number }[] }).ports;
      ports[0] = { ...ports[0], port: 4223 };
      (service.spec as Record<string, unknown>).clusterIPs = ['None'];
      const plan = applyPlan(
        nats({ reconciled: true }),
        observed(replaced(converged(), 'Service', service)),
      );
      expect(plan.writes.map((w) => w.action)).toEqual(['replace']);
      const spec = plan.writes[0]?.object.spec as {
        ports: { port: number }[];
        clusterIPs?: string[];
      };
      expect(spec.ports[0]?.port).toBe(4222);
      // What Kubernetes allocated is carried over: the replacement must not try to change it.
      expect(spec.clusterIPs).toEqual(['None']);
    });

    it('a key added to a field another client owns whole (an atomic selector) is applied back', () => {
      const service = live(child('Service'), [
        {
          manager: 'kubectl-patch',
          operation: 'Update',
          fieldsV1: { 'f:spec': { 'f:selector': {} } },
        },
      ]);
      (service.spec as { selector: Record<string, string> }).selector.extra = 'x';
      const plan = applyPlan(
        nats({ reconciled: true }),
        observed(replaced(converged(), 'Service', service)),
      );
      expect(plan.writes).toEqual([
        expect.objectContaining({ action: 'apply', drift: 'spec.selector' }),
      ]);
    });

    it('what Kubernetes itself owns (status, its controllers) is left alone', () => {
      const sts = live(child('StatefulSet'), [
        {
          manager: 'kube-controller-manager',
          operation: 'Update',
          subresource: 'status',
          fieldsV1: { 'f:status': { 'f:replicas': {} } },
        },
      ]);
      sts.status = { replicas: 3 };
      const plan = applyPlan(
        nats({ reconciled: true }),
        observed(replaced(converged(), 'StatefulSet', sts)),
      );
      expect(plan.writes).toEqual([]);
    });
  });

  describe('names taken by others', () => {
    const squatter = (kind: string): KubeObject => ({
      ...child(kind),
      metadata: { name: child(kind).metadata.name, namespace: 'kyma-system', resourceVersion: '3' },
    });

    it('a foreign object is reported, never written, and what reads it is held back', () => {
      const children = replaced(converged(), 'ConfigMap', squatter('ConfigMap')).filter(
        (o) => o.kind !== 'StatefulSet',
      );
      const plan = applyPlan(nats({ reconciled: true }), observed(children));
      expect(plan.conflicts.map((c) => c.ref.name)).toEqual(['eventing-nats-config']);
      expect(plan.writes).toEqual([]);
      expect(plan.held).toEqual([
        expect.objectContaining({
          child: expect.objectContaining({ kind: 'StatefulSet' }) as unknown,
          because: ['ConfigMap'],
        }),
      ]);
    });

    it('a foreign Secret holds the StatefulSet back too', () => {
      const foreign = squatter('Secret');
      const plan = applyPlan(nats(), observed([foreign], { newPassword: 'n'.repeat(40) }));
      expect(plan.conflicts.map((c) => c.child.kind)).toEqual(['Secret']);
      expect(plan.writes.map((w) => w.child.kind)).toEqual([
        'ConfigMap',
        'Service',
        'PodDisruptionBudget',
      ]);
    });

    it('our own child whose ownerReferences were stripped is recognised and re-owned', () => {
      const stripped = live(child('ConfigMap'));
      delete stripped.metadata.ownerReferences;
      expect(isOwnChild(stripped, UID)).toBe(true);
      const plan = applyPlan(
        nats({ reconciled: true }),
        observed(replaced(converged(), 'ConfigMap', stripped)),
      );
      expect(plan.conflicts).toEqual([]);
      expect(plan.writes).toEqual([
        expect.objectContaining({ action: 'apply', drift: 'metadata.ownerReferences' }),
      ]);
    });

    it("another NATS resource's child, or an unlabelled or never-applied object, is not ours", () => {
      const ofOther = live(child('ConfigMap'));
      ofOther.metadata.ownerReferences = [{ kind: 'NATS', uid: 'other' }];
      expect(isOwnChild(ofOther, UID)).toBe(false);
      const unlabelled = live(child('ConfigMap'));
      delete unlabelled.metadata.ownerReferences;
      unlabelled.metadata.labels = {};
      expect(isOwnChild(unlabelled, UID)).toBe(false);
      const notApplied = {
        ...live(child('ConfigMap')),
        metadata: { ...child('ConfigMap').metadata },
      };
      delete notApplied.metadata.ownerReferences;
      expect(isOwnChild(notApplied, UID)).toBe(false);
    });
  });

  describe('children of an earlier NATS resource of the same name', () => {
    const EARLIER = '99999999-2222-4333-8444-555555555555';
    const earlierChildren = (): KubeObject[] =>
      converged().map((o) => ({
        ...o,
        metadata: {
          ...o.metadata,
          uid: `${o.kind}-uid`,
          ownerReferences: [{ kind: 'NATS', name: 'eventing-nats', uid: EARLIER }],
        },
      }));

    it('are deleted by uid first, and nothing is written until they are gone', () => {
      const children = earlierChildren();
      const sts = children.find((o) => o.kind === 'StatefulSet');
      if (sts !== undefined) sts.metadata.deletionTimestamp = NOW.toISOString();
      const resource = nats({ finalizer: false });
      const observations = observed(children);
      const plan = applyPlan(resource, observations);
      expect(plan.conflicts).toEqual([]);
      expect(plan.writes).toEqual([]);
      expect(plan.rollout).toEqual({ kind: 'none' });
      expect(plan.addFinalizer).toBe(true);
      expect(plan.stale.map((s) => [s.ref.kind, s.uid, s.deleting])).toEqual([
        ['ConfigMap', 'ConfigMap-uid', false],
        ['Secret', 'Secret-uid', false],
        ['Service', 'Service-uid', false],
        ['StatefulSet', 'StatefulSet-uid', true],
        ['PodDisruptionBudget', 'PodDisruptionBudget-uid', false],
      ]);
      // Processing, not Error: this is a wait, and it says for what.
      const settled = settleApply(input(resource, observations), plan, succeeded(plan));
      expect(settled.status?.state).toBe('Processing');
      expect(settled.status?.conditions?.find((c) => c.type === 'StatefulSet')).toMatchObject({
        status: 'False',
        reason: 'Processing',
        message: expect.stringContaining(
          'Waiting for ConfigMap kyma-system/eventing-nats-config, Secret',
        ) as unknown,
      });
      expect(settled.requeueAfterMs).toBe(2_000);
    });

    it('once they are gone, the children are created', () => {
      const plan = applyPlan(nats(), observed([]));
      expect(plan.stale).toEqual([]);
      expect(plan.writes.map((w) => w.action)).toEqual(Array<string>(5).fill('create'));
    });

    it('a child naming another NATS resource as well is a conflict, not garbage', () => {
      const [config] = earlierChildren();
      if (config === undefined) throw new Error('no child');
      config.metadata.ownerReferences = [
        { kind: 'NATS', name: 'eventing-nats', uid: EARLIER },
        { kind: 'NATS', name: 'other', uid: 'other' },
      ];
      const plan = applyPlan(nats(), observed([config]));
      expect(plan.stale).toEqual([]);
      expect(plan.conflicts.map((c) => c.child.kind)).toEqual(['ConfigMap']);
    });
  });

  describe('settling an apply', () => {
    it('all written: Processing while the StatefulSet rolls out, with the write events', () => {
      const resource = nats({ finalizer: false });
      const observations = observed([]);
      const plan = applyPlan(resource, observations);
      const settled = settleApply(input(resource, observations), plan, succeeded(plan));
      expect(settled.failed).toEqual([]);
      expect(settled.status?.state).toBe('Processing');
      expect(settled.events.map((e) => e.reason)).toEqual([
        ...Array<string>(5).fill('Created'),
        'Processing',
      ]);
      expect(settled.requeueAfterMs).toBeUndefined();
    });

    it('one child refused: reported with its reason, the others written and announced', () => {
      const resource = nats();
      const observations = observed([]);
      const plan = applyPlan(resource, observations);
      const results: WriteResult[] = plan.writes.map((write) =>
        write.child.kind === 'Service'
          ? { write, ok: false, error: 'port already allocated' }
          : { write, ok: true, object: write.object },
      );
      const settled = settleApply(input(resource, observations), plan, results);
      expect(settled.failed).toEqual(['Service kyma-system/eventing-nats: port already allocated']);
      expect(settled.status?.state).toBe('Error');
      const sts = settled.status?.conditions?.find((c) => c.type === 'StatefulSet');
      expect(sts).toMatchObject({ reason: 'FailedToSyncResources' });
      expect(sts?.message).toContain(
        'Failed to apply: Service kyma-system/eventing-nats: port already allocated',
      );
      expect(settled.events.filter((e) => e.reason === 'Created')).toHaveLength(4);
    });

    it('a name conflict is announced once, and looked at again after the recheck interval', () => {
      const foreign = {
        ...child('ConfigMap'),
        metadata: { name: 'eventing-nats-config', namespace: 'kyma-system' },
      };
      const resource = nats();
      const observations = observed([foreign]);
      const plan = applyPlan(resource, observations);
      const first = settleApply(input(resource, observations), plan, succeeded(plan));
      expect(first.events.map((e) => e.reason)).toContain('NameConflict');
      expect(first.requeueAfterMs).toBe(PLAN_SETTINGS.recheckMs);
      expect(first.status?.conditions?.find((c) => c.type === 'StatefulSet')?.message).toContain(
        'ConfigMap kyma-system/eventing-nats-config already exists and is not owned by this NATS resource',
      );
      // The next recheck finds the status saying so already: no write, no second event.
      const again = { ...resource, status: first.status } as Nats;
      const plan2 = applyPlan(again, observations);
      const second = settleApply(input(again, observations), plan2, succeeded(plan2));
      expect(second.status).toBeUndefined();
      expect(second.events.map((e) => e.reason)).not.toContain('NameConflict');
    });

    it('a converged resource writes no status and records no event', () => {
      const first = settleApply(
        input(nats(), observed(converged())),
        applyPlan(nats(), observed(converged())),
        [],
      );
      const settledResource = { ...nats(), status: first.status } as Nats;
      const plan = applyPlan(settledResource, observed(converged(settledResource)));
      const settled = settleApply(input(settledResource, observed(converged())), plan, []);
      expect(settled.status).toBeUndefined();
      expect(settled.events).toEqual([]);
    });
  });

  describe('deleting', () => {
    const check = (customerData: CustomerDataCheck): Observations =>
      observed([], {
        customerData,
        claims: [
          {
            apiVersion: 'v1',
            kind: 'PersistentVolumeClaim',
            namespace: 'kyma-system',
            name: 'c-0',
          },
        ],
      });

    it('without our finalizer there is nothing to do', () => {
      expect(
        planReconcile(input(nats({ deleting: true, finalizer: false }), check({ kind: 'none' }))),
      ).toEqual({
        kind: 'none',
      });
    });

    it('no customer data: Deleting, the volume claims go, then the finalizer', () => {
      const plan = deletePlan(nats({ deleting: true }), check({ kind: 'none' }));
      expect(plan.status?.state).toBe('Deleting');
      expect(plan.deleteClaims.map((c) => c.name)).toEqual(['c-0']);
      expect(plan.removeFinalizer).toBe(true);
      expect(plan.events.map((e) => e.reason)).toEqual(['Deleting']);
    });

    it('a customer stream blocks it: Warning, DeletionBlocked, nothing deleted, checked again', () => {
      const plan = deletePlan(
        nats({ deleting: true }),
        check({
          kind: 'blocked',
          reason: 'stream',
          message: 'Cannot delete NATS cluster as customer stream exists',
          streams: ['orders'],
        }),
      );
      expect(plan.status?.state).toBe('Warning');
      expect(plan.events).toEqual([expect.objectContaining({ reason: 'DeletionBlocked' })]);
      expect(plan.deleteClaims).toEqual([]);
      expect(plan.removeFinalizer).toBe(false);
      expect(plan.requeueAfterMs).toBe(PLAN_SETTINGS.recheckMs);
    });

    it('a blocked deletion rechecked writes nothing and tells nothing new', () => {
      const blocked = check({
        kind: 'blocked',
        reason: 'stream',
        message: 'blocked',
        streams: ['s'],
      });
      const first = deletePlan(nats({ deleting: true }), blocked);
      const again = deletePlan({ ...nats({ deleting: true }), status: first.status }, blocked);
      expect(again.status).toBeUndefined();
      expect(again.events).toEqual([]);
    });

    it('a check that fails halfway blocks it, with the error', () => {
      const plan = deletePlan(
        nats({ deleting: true }),
        check({ kind: 'error', error: 'timeout listing streams' }),
      );
      expect(plan.removeFinalizer).toBe(false);
      expect(plan.status?.conditions?.find((c) => c.type === 'Deleted')?.message).toContain(
        'checking it for customer streams failed: timeout listing streams',
      );
    });

    it('NATS unreachable: deletion proceeds, and a Warning Event says it went unchecked', () => {
      const plan = deletePlan(
        nats({ deleting: true }),
        check({ kind: 'unreachable', error: 'ECONNREFUSED' }),
      );
      expect(plan.removeFinalizer).toBe(true);
      expect(plan.events[0]).toMatchObject({ type: 'Warning', reason: 'DeletionUnchecked' });
      expect(plan.events[0]?.message).toContain('ECONNREFUSED');
    });
  });

  it('the rendered Secret carries the password the plan keeps', () => {
    expect(systemAccountPasswordFrom(child('Secret'))).toBe(PASSWORD);
  });
});

describe('the reconcile plan while the cluster shrinks (scale-down.ts decides the step)', () => {
  const names = [0, 1, 2, 3, 4].map((i) => `eventing-nats-${String(i)}`);
  const view = {
    servers: names,
    jetStream: names,
    healthy: names,
    metaLeader: 'eventing-nats-0',
    metaPeers: names.map((name) => ({ name, current: true, offline: false })),
    streams: [],
  };
  function atFive(): KubeObject[] {
    const sts = child('StatefulSet', converged()) as KubeObject & { spec: { replicas: number } };
    return replaced(converged(), 'StatefulSet', { ...sts, spec: { ...sts.spec, replicas: 5 } });
  }

  test('keeps the StatefulSet at 5 while a server is removed, and says so in the status', () => {
    const resource = nats({ reconciled: true });
    const observations = observed(atFive(), {
      scaleDown: {
        statefulSet: 'eventing-nats',
        replicas: 5,
        podOrdinals: [0, 1, 2, 3, 4],
        readyOrdinals: [0, 1, 2, 3, 4],
        claims: [],
        cluster: { ok: true, value: view },
      },
    });
    const plan = applyPlan(resource, observations);
    expect(plan.scaleDown?.removePeer).toBe('eventing-nats-4');
    // No write lowers the replicas: the rendered 3 was replaced by the step's 5.
    expect(plan.writes.find((w) => w.child.kind === 'StatefulSet')).toBeUndefined();
    const settled = settleApply(input(resource, observations), plan, succeeded(plan));
    expect(settled.requeueAfterMs).toBeGreaterThan(0);
    expect(settled.status?.state).toBe('Processing');
    expect(settled.status?.conditions?.find((c) => c.type === 'StatefulSet')).toMatchObject({
      status: 'False',
      reason: 'Processing',
      message:
        'Scaling down from 5 to 3 servers (2 servers to remove): removing eventing-nats-4 from JetStream.',
    });
  });

  test('cuts one ordinal once the server left JetStream', () => {
    const rest = names.slice(0, 4);
    const plan = applyPlan(
      nats({ reconciled: true }),
      observed(atFive(), {
        scaleDown: {
          statefulSet: 'eventing-nats',
          replicas: 5,
          podOrdinals: [0, 1, 2, 3, 4],
          readyOrdinals: [0, 1, 2, 3, 4],
          claims: [],
          cluster: {
            ok: true,
            value: {
              ...view,
              jetStream: rest,
              healthy: rest,
              metaPeers: view.metaPeers.slice(0, 4),
            },
          },
        },
      }),
    );
    const write = plan.writes.find((w) => w.child.kind === 'StatefulSet');
    expect((write?.object as { spec?: { replicas?: number } } | undefined)?.spec?.replicas).toBe(4);
    expect(write?.event.reason).toBe('Updated');
  });

  test('blocked (NATS not asked): the state is Warning and nothing shrinks', () => {
    const resource = nats({ reconciled: true });
    const observations = observed(atFive(), {
      scaleDown: {
        statefulSet: 'eventing-nats',
        replicas: 5,
        podOrdinals: [0, 1, 2, 3, 4],
        readyOrdinals: [0, 1, 2, 3, 4],
        claims: [],
        cluster: { ok: false, error: 'connection refused' },
      },
    });
    const plan = applyPlan(resource, observations);
    expect(plan.writes.find((w) => w.child.kind === 'StatefulSet')).toBeUndefined();
    const settled = settleApply(input(resource, observations), plan, succeeded(plan));
    expect(settled.status?.state).toBe('Warning');
  });
});

describe('the reconcile plan while the volume claims grow (storage-growth.ts decides the step)', () => {
  const grownSpec = (resource: Nats): Nats => {
    const grown = structuredClone(resource);
    grown.spec = { cluster: { size: 3 }, jetStream: { fileStorage: { size: '4Gi' } } };
    return grown;
  };
  const claims = (requested: string, capacity: string) =>
    [0, 1, 2].map((ordinal) => ({
      ref: {
        apiVersion: 'v1',
        kind: 'PersistentVolumeClaim',
        namespace: 'kyma-system',
        name: `eventing-nats-js-pvc-eventing-nats-${String(ordinal)}`,
      },
      ordinal,
      requested,
      capacity,
      bound: true,
      fileSystemResizePending: false,
      deleting: false,
    }));
  const natsConf = (plan: ApplyPlan): string | undefined => {
    const write = plan.writes.find((w) => w.child.kind === 'ConfigMap');
    return (write?.object as { data?: Record<string, string> } | undefined)?.data?.['nats.conf'];
  };
  const stsCondition = (settled: ReturnType<typeof settleApply>) =>
    settled.status?.conditions?.find((c) => c.type === 'StatefulSet');

  test('raises the claims first; the StatefulSet and max_file_store wait', () => {
    const resource = grownSpec(nats({ reconciled: true }));
    const observations = observed(converged(), { volumeClaims: claims('1Gi', '1Gi') });
    const plan = applyPlan(resource, observations);
    expect(plan.storageGrowth?.patchClaims).toHaveLength(3);
    expect(plan.storageGrowth?.size).toBe('4Gi');
    // Neither the immutable claim template nor a larger store yet.
    expect(plan.writes.map((w) => w.child.kind)).toEqual([]);
    expect(plan.rollout.kind).toBe('none');
    const settled = settleApply(input(resource, observations), plan, succeeded(plan), [
      { claim: 'eventing-nats-js-pvc-eventing-nats-0', ok: true },
    ]);
    expect(settled.status?.state).toBe('Processing');
    expect(stsCondition(settled)).toMatchObject({
      status: 'False',
      reason: 'Processing',
      message: expect.stringMatching(
        /^Growing the volume claims to 4Gi: asking for 4Gi on 3/,
      ) as string,
    });
    expect(settled.requeueAfterMs).toBe(2_000);
  });

  test('a claim the API server refuses blocks it: Warning, an event, the recheck interval', () => {
    const resource = grownSpec(nats({ reconciled: true }));
    const observations = observed(converged(), { volumeClaims: claims('1Gi', '1Gi') });
    const plan = applyPlan(resource, observations);
    const settled = settleApply(input(resource, observations), plan, succeeded(plan), [
      {
        claim: 'eventing-nats-js-pvc-eventing-nats-0',
        ok: false,
        error: 'only dynamically provisioned pvc can be resized',
      },
    ]);
    expect(settled.status?.state).toBe('Warning');
    expect(stsCondition(settled)?.message).toContain('the API server refused the new size');
    expect(settled.events.map((e) => e.reason)).toContain('StorageGrowthRefused');
    expect(settled.requeueAfterMs).toBe(PLAN_SETTINGS.recheckMs);
  });

  test('then deletes the StatefulSet leaving its pods, and creates it again once gone', () => {
    const resource = grownSpec(nats({ reconciled: true }));
    const children = converged();
    const plan = applyPlan(resource, observed(children, { volumeClaims: claims('4Gi', '1Gi') }));
    const sts = plan.writes.find((w) => w.child.kind === 'StatefulSet');
    expect(sts?.action).toBe('recreate');
    expect(sts?.live).toBe(child('StatefulSet', children));
    expect(sts?.event).toMatchObject({ type: 'Normal', reason: 'Recreating' });
    // max_file_store stays at what the volumes hold.
    expect(natsConf(plan)).toBeUndefined();

    const growing = {
      ...resource,
      status: {
        observedGeneration: 2,
        conditions: [
          {
            type: 'StatefulSet',
            status: 'False',
            reason: 'Processing',
            message: 'Growing the volume claims to 4Gi: re-creating the StatefulSet.',
            lastTransitionTime: '2026-05-01T10:00:00Z',
          },
        ],
      },
    } as Nats;
    const without = children.filter((c) => c.kind !== 'StatefulSet');
    const again = applyPlan(growing, observed(without, { volumeClaims: claims('4Gi', '1Gi') }));
    const created = again.writes.find((w) => w.child.kind === 'StatefulSet');
    expect(created?.action).toBe('create');
    expect(created?.event).toMatchObject({ type: 'Normal', reason: 'Recreated' });
    const template = (
      created?.object as unknown as {
        spec: {
          volumeClaimTemplates: { spec: { resources: { requests: { storage: string } } } }[];
        };
      }
    ).spec.volumeClaimTemplates[0]?.spec.resources.requests.storage;
    expect(template).toBe('4Gi');
  });

  test('its pods left running say so when the status no longer does: Recreated, no Restored', () => {
    // A failed write turned the status to Error meanwhile, and the volumes have grown.
    const resource = grownSpec(nats({ reconciled: true }));
    const without = converged().filter((c) => c.kind !== 'StatefulSet');
    const orphaned = { volumeClaims: claims('4Gi', '4Gi'), orphanedPods: 3 };
    const created = applyPlan(resource, observed(without, orphaned)).writes.find(
      (w) => w.child.kind === 'StatefulSet',
    );
    expect(created?.action).toBe('create');
    expect(created?.event).toMatchObject({ type: 'Normal', reason: 'Recreated' });
    // Deleted with its pods: put back, and the Warning says it was deleted.
    const restored = applyPlan(
      resource,
      observed(without, { volumeClaims: claims('4Gi', '4Gi') }),
    ).writes.find((w) => w.child.kind === 'StatefulSet');
    expect(restored?.event).toMatchObject({ type: 'Warning', reason: 'Restored' });
  });

  test('max_file_store follows the volumes: the smallest capacity, then the new size', () => {
    const resource = grownSpec(nats({ reconciled: true }));
    const children = replaced(
      converged(),
      'StatefulSet',
      live(child('StatefulSet', rendered(grownSpec(nats())))),
    );
    const resizing = applyPlan(
      resource,
      observed(children, { volumeClaims: claims('4Gi', '2Gi') }),
    );
    // 2Gi less 256Mi headroom.
    expect(natsConf(resizing)).toContain('max_file_store: 1879048192');
    expect(resizing.storageGrowth?.progress?.message).toContain(
      'waiting for the storage provider to resize',
    );
    const done = applyPlan(resource, observed(children, { volumeClaims: claims('4Gi', '4Gi') }));
    // 4Gi less 10%.
    expect(natsConf(done)).toContain('max_file_store: 3865470566');
    expect(done.storageGrowth?.progress).toBeUndefined();
  });
});
