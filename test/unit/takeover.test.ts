// Taking over children the Go manager applied (field manager `nats-manager`): whether it is safe,
// decided purely before anything is written, and the writes of a safe takeover.
import { NATS_FINALIZER, type Nats } from '../../src/api/nats.ts';
import type { KubeObject } from '../../src/base/object.ts';
import {
  planReconcile,
  settleApply,
  type ApplyPlan,
  type WriteResult,
} from '../../src/controller/plan.ts';
import {
  FIELD_MANAGER,
  LEGACY_FIELD_MANAGER,
  legacyEntriesPatch,
  needsTakeover,
  takeoverBlockers,
  takeoverReplacement,
} from '../../src/controller/takeover.ts';
import { PLAN_SETTINGS, renderedChildren } from '../support/plan.ts';

const UID = '11111111-2222-4333-8444-555555555555';
const NOW = new Date('2026-05-01T10:00:00Z');
const PASSWORD = 'p'.repeat(60);

const NATS: Nats = {
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
  status: { state: 'Ready' },
};

function rendered(): KubeObject[] {
  return renderedChildren(NATS, PASSWORD);
}

function renderedKind(kind: string): KubeObject {
  const object = rendered().find((o) => o.kind === kind);
  if (object === undefined) throw new Error(`no ${kind} rendered`);
  return object;
}

const LEGACY_APPLY = {
  manager: LEGACY_FIELD_MANAGER,
  operation: 'Apply',
  apiVersion: 'v1',
  fieldsV1: { 'f:metadata': { 'f:labels': {} } },
};
const CONTROLLER_STATUS = {
  manager: 'kube-controller-manager',
  operation: 'Update',
  subresource: 'status',
  fieldsV1: { 'f:status': {} },
};

/** The child as the Go manager leaves it: applied by `nats-manager`, with server defaults. */
function goManaged(object: KubeObject, change?: (o: Json) => void): KubeObject {
  const copy = structuredClone(object) as Record<string, unknown> & KubeObject;
  copy.metadata = {
    ...copy.metadata,
    resourceVersion: '7',
    managedFields: [LEGACY_APPLY, CONTROLLER_STATUS],
  };
  change?.(copy as unknown as Json);
  return copy;
}

/** The parts of the children these tests edit. */
interface Json {
  kind: string;
  metadata: { labels: Record<string, string>; managedFields?: unknown[]; resourceVersion?: string };
  spec: {
    selector: { matchLabels?: Record<string, string>; [key: string]: unknown };
    clusterIP?: string;
    clusterIPs?: string[];
    serviceName?: string;
    podManagementPolicy?: string;
    volumeClaimTemplates: ClaimTemplate[];
    template: { spec: { containers: { env: unknown[] }[] } };
  };
}

interface ClaimTemplate {
  apiVersion?: string;
  kind?: string;
  metadata: { labels?: Record<string, string> };
  spec: {
    volumeMode?: string;
    storageClassName?: string;
    resources: { requests: { storage: string } };
  };
  status?: unknown;
}

function first<T>(list: readonly T[]): T {
  const [head] = list;
  if (head === undefined) throw new Error('empty list');
  return head;
}

function claim(o: Json): ClaimTemplate {
  return first(o.spec.volumeClaimTemplates);
}

describe('whether a child of the Go manager can be taken over', () => {
  it('is needed only while the legacy manager has entries on the main resource', () => {
    const sts = renderedKind('StatefulSet');
    expect(needsTakeover(goManaged(sts))).toBe(true);
    const ours = {
      ...sts,
      metadata: {
        ...sts.metadata,
        managedFields: [{ manager: FIELD_MANAGER, operation: 'Apply' }, CONTROLLER_STATUS],
      },
    };
    expect(needsTakeover(ours)).toBe(false);
    expect(FIELD_MANAGER).not.toBe(LEGACY_FIELD_MANAGER);
  });

  it('finds nothing in the way when the immutable fields and selectors are ours', () => {
    for (const object of rendered()) {
      const live = goManaged(object, (o) => {
        // What the API server adds around what was applied.
        if (o.kind === 'StatefulSet') {
          claim(o).apiVersion = 'v1';
          claim(o).kind = 'PersistentVolumeClaim';
          claim(o).spec.volumeMode = 'Filesystem';
          claim(o).status = { phase: 'Pending' };
          first(o.spec.template.spec.containers).env.pop();
        }
        if (o.kind === 'Service') o.spec.clusterIPs = ['None'];
      });
      expect({ kind: object.kind, blockers: takeoverBlockers(object, live) }).toEqual({
        kind: object.kind,
        blockers: [],
      });
    }
  });

  it('refuses a StatefulSet whose selector differs: immutable, and its pods would not be ours', () => {
    const sts = renderedKind('StatefulSet');
    const live = goManaged(sts, (o) => {
      o.spec.selector.matchLabels = {
        ...o.spec.selector.matchLabels,
        'app.kubernetes.io/instance': 'eventing-nats',
      };
    });
    const [blocker, ...rest] = takeoverBlockers(sts, live);
    expect(rest).toEqual([]);
    expect(blocker).toContain('spec.selector is {"matchLabels":{');
    expect(blocker).toContain('"app.kubernetes.io/instance":"eventing-nats"');
    expect(blocker).toContain('a StatefulSet accepts no change there');
  });

  it('refuses a StatefulSet whose claim template differs in labels, size or class', () => {
    const sts = renderedKind('StatefulSet');
    const labels = goManaged(sts, (o) => {
      claim(o).metadata.labels = { 'app.kubernetes.io/instance': 'eventing' };
    });
    expect(takeoverBlockers(sts, labels).join()).toContain(
      'spec.volumeClaimTemplates[0] ("eventing-nats-js-pvc").metadata.labels is {"app.kubernetes.io/instance":"eventing"}',
    );
    const size = goManaged(sts, (o) => {
      claim(o).spec.resources.requests.storage = '2Gi';
    });
    expect(takeoverBlockers(sts, size).join()).toContain(
      'spec.resources.requests.storage is "2Gi", this manager renders "1Gi"',
    );
    const sameSize = goManaged(sts, (o) => {
      claim(o).spec.resources.requests.storage = '1024Mi';
    });
    expect(takeoverBlockers(sts, sameSize)).toEqual([]);
    const storageClass = goManaged(sts, (o) => {
      claim(o).spec.storageClassName = 'fast';
    });
    expect(takeoverBlockers(sts, storageClass).join()).toContain(
      'spec.storageClassName is "fast", this manager renders unset',
    );
  });

  it('refuses other immutable StatefulSet fields: serviceName, podManagementPolicy (defaulted)', () => {
    const sts = renderedKind('StatefulSet');
    const live = goManaged(sts, (o) => {
      o.spec.serviceName = 'other';
      o.spec.podManagementPolicy = undefined;
    });
    expect(takeoverBlockers(sts, live)).toEqual([
      expect.stringContaining('spec.serviceName is "other", this manager renders "eventing-nats"'),
      expect.stringContaining(
        'spec.podManagementPolicy is "OrderedReady", this manager renders "Parallel"',
      ),
    ]);
  });

  it('refuses a Service with another selector (it would empty the route names) or a cluster IP', () => {
    const service = renderedKind('Service');
    const selector = goManaged(service, (o) => {
      o.spec.selector = { app: 'nats' };
    });
    expect(takeoverBlockers(service, selector)).toEqual([
      expect.stringContaining('would stop selecting the running pods'),
    ]);
    const clusterIp = goManaged(service, (o) => {
      o.spec.clusterIP = '10.96.0.12';
    });
    expect(takeoverBlockers(service, clusterIp)).toEqual([
      expect.stringContaining('spec.clusterIP is "10.96.0.12", this manager renders "None"'),
    ]);
  });

  it('refuses a PodDisruptionBudget with another selector', () => {
    const pdb = renderedKind('PodDisruptionBudget');
    const live = goManaged(pdb, (o) => {
      o.spec.selector = { matchLabels: { app: 'nats' } };
    });
    expect(takeoverBlockers(pdb, live)).toEqual([
      expect.stringContaining('would no longer count the running pods'),
    ]);
  });
});

describe('the writes of a takeover', () => {
  it('PUTs our rendering over the live object, keeping its version, cluster IPs and claim templates', () => {
    const service = renderedKind('Service');
    const live = goManaged(service, (o) => {
      o.spec.clusterIPs = ['None'];
      o.metadata.labels.extra = 'from the Go manager';
    });
    const put = takeoverReplacement(service, live) as unknown as Json;
    expect(put.metadata.resourceVersion).toBe('7');
    expect(put.metadata.labels.extra).toBeUndefined();
    expect(put.spec.clusterIPs).toEqual(['None']);
    const sts = renderedKind('StatefulSet');
    const liveSts = goManaged(sts, (o) => {
      claim(o).status = { phase: 'Pending' };
    });
    expect(
      (takeoverReplacement(sts, liveSts) as unknown as Json).spec.volumeClaimTemplates,
    ).toEqual((liveSts as unknown as Json).spec.volumeClaimTemplates);
  });

  it("removes the legacy manager's entries and our PUT's, each guarded by a test, from the end", () => {
    const applied = goManaged(renderedKind('ConfigMap'), (o) => {
      o.metadata.managedFields = [
        LEGACY_APPLY,
        { manager: FIELD_MANAGER, operation: 'Update', fieldsV1: {} },
        CONTROLLER_STATUS,
        { manager: FIELD_MANAGER, operation: 'Apply', fieldsV1: {} },
      ];
    });
    expect(legacyEntriesPatch(applied)).toEqual([
      { op: 'test', path: '/metadata/managedFields/1/manager', value: FIELD_MANAGER },
      { op: 'remove', path: '/metadata/managedFields/1' },
      { op: 'test', path: '/metadata/managedFields/0/manager', value: LEGACY_FIELD_MANAGER },
      { op: 'remove', path: '/metadata/managedFields/0' },
    ]);
    const clean = goManaged(renderedKind('ConfigMap'), (o) => {
      o.metadata.managedFields = [{ manager: FIELD_MANAGER, operation: 'Apply', fieldsV1: {} }];
    });
    expect(legacyEntriesPatch(clean)).toBeUndefined();
  });
});

describe('a reconcile of a cluster the Go manager left', () => {
  function plan(children: KubeObject[]): ApplyPlan {
    const result = planReconcile({
      nats: NATS,
      settings: PLAN_SETTINGS,
      observed: {
        children: new Map(children.map((c) => [c.kind, c])),
        servedCrd: () => false,
        newPassword: 'n'.repeat(60),
        now: NOW,
      },
    });
    if (result.kind !== 'apply') throw new Error(`expected an apply plan, got ${result.kind}`);
    return result;
  }

  it('takes over every child explicitly, keeping the password and adding no finalizer', () => {
    const children = rendered().map((c) => goManaged(c));
    const result = plan(children);
    expect(result.addFinalizer).toBe(false);
    expect(result.refused).toEqual([]);
    expect(result.writes.map((w) => [w.object.kind, w.action])).toEqual(
      children.map((c) => [c.kind, 'takeover']),
    );
    for (const write of result.writes) {
      expect(write.event).toMatchObject({ type: 'Normal', reason: 'TakenOver' });
      expect(write.event.message).toContain(`from the field manager ${LEGACY_FIELD_MANAGER}`);
      expect(write.replacement?.metadata.resourceVersion).toBe('7');
    }
    const secret = result.writes.find((w) => w.object.kind === 'Secret');
    // The Go manager's password is kept: the rendering is the one with it, not the new one.
    expect(secret?.object).toEqual(renderedKind('Secret'));
  });

  it('writes nothing when one child cannot be taken over, and says what and why in the status', () => {
    const children = rendered().map((c) =>
      goManaged(c, (o) => {
        if (o.kind === 'StatefulSet') {
          o.spec.selector.matchLabels = { ...o.spec.selector.matchLabels, extra: 'x' };
        }
      }),
    );
    const input = {
      nats: NATS,
      settings: PLAN_SETTINGS,
      observed: {
        children: new Map(children.map((c) => [c.kind, c])),
        servedCrd: () => false,
        newPassword: 'n'.repeat(60),
        now: NOW,
      },
    };
    const result = plan(children);
    expect(result.writes).toEqual([]);
    expect(result.addFinalizer).toBe(false);
    expect(result.refused.map((r) => r.ref.kind)).toEqual(['StatefulSet']);
    const settled = settleApply(input, result, [] as WriteResult[]);
    expect(settled.status?.state).toBe('Error');
    const available = settled.status?.conditions?.find((c) => c.type === 'Available');
    expect(available?.message).toContain(
      'Cannot take over the children nats-manager (the Go NATS manager) applied, so nothing was written: StatefulSet kyma-system/eventing-nats: spec.selector is',
    );
    expect(settled.events).toContainEqual(
      expect.objectContaining({ type: 'Warning', reason: 'TakeoverRefused' }),
    );
    expect(settled.requeueAfterMs).toBe(PLAN_SETTINGS.recheckMs);
  });

  it('treats our own children (applied as kyma-nats-manager) as before: no takeover', () => {
    const children = rendered().map((c) =>
      goManaged(c, (o) => {
        o.metadata.managedFields = [
          { manager: FIELD_MANAGER, operation: 'Apply', fieldsV1: { 'f:metadata': {} } },
        ];
      }),
    );
    expect(plan(children).writes.map((w) => w.action)).not.toContain('takeover');
  });
});
