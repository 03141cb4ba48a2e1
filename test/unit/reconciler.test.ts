// The executor of the reconcile plan, and the controller around it, on the in-memory client:
// per-child results, a refused child that blocks no other, aborts that end the work in flight.
import { NATS_FINALIZER, type Nats } from '../../src/api/nats.ts';
import type { Logger } from '../../src/base/log.ts';
import type { KubeObject } from '../../src/base/object.ts';
import { createNatsController } from '../../src/controller/controller.ts';
import type { NatsEvent } from '../../src/controller/events.ts';
import {
  ChildrenFailedError,
  NatsReconciler,
  type ReconcilerDeps,
} from '../../src/controller/reconciler.ts';
import { createFakeKubeClient, type FakeCall, type FakeKubeClient } from '../../src/kube/fake.ts';
import { KubeApiError } from '../../src/kube/transport.ts';
import { DEFAULT_IMAGES } from '../../src/render/context.ts';
import { eventually } from '../support/kube.ts';

const silent: Logger = { info: () => undefined, error: () => undefined, with: () => silent };
const SETTINGS = {
  natsName: 'eventing-nats',
  natsNamespace: 'kyma-system',
  images: DEFAULT_IMAGES,
  clusterDomain: 'cluster.local',
  recheckMs: 10_000,
};

function natsObject(extra: Partial<Nats['metadata']> = {}): KubeObject {
  return {
    apiVersion: 'operator.kyma-project.io/v1alpha1',
    kind: 'NATS',
    metadata: { name: 'eventing-nats', namespace: 'kyma-system', generation: 1, ...extra },
    spec: { cluster: { size: 1 }, jetStream: { fileStorage: { size: '1Gi' } } },
  };
}

function setup(
  client: FakeKubeClient,
  stored: KubeObject,
): { deps: ReconcilerDeps; events: NatsEvent[] } {
  const events: NatsEvent[] = [];
  const deps: ReconcilerDeps = {
    client,
    settings: SETTINGS,
    natsCache: {
      get: () =>
        client.stored({ ...stored, namespace: 'kyma-system', name: 'eventing-nats' }) as Nats,
    },
    childCache: () => undefined,
    record: (_target, event) => {
      events.push(event);
      return Promise.resolve();
    },
    servedCrd: () => false,
    checkCustomerData: () => Promise.resolve({ kind: 'none' }),
    log: silent,
  };
  return { deps, events };
}

const STS_REF = {
  apiVersion: 'apps/v1',
  kind: 'StatefulSet',
  namespace: 'kyma-system',
  name: 'eventing-nats',
};

/** A cluster of one, reconciled once on the in-memory client: its StatefulSet exists. */
async function reconciledCluster(): Promise<{
  client: FakeKubeClient;
  deps: ReconcilerDeps;
  sts: KubeObject;
}> {
  const client = createFakeKubeClient();
  const { deps } = setup(client, client.put(natsObject()));
  await new NatsReconciler(deps).reconcile('kyma-system', 'eventing-nats');
  const sts = client.stored(STS_REF);
  if (sts === undefined) throw new Error('no StatefulSet');
  return { client, deps, sts };
}

const NATS_REF = {
  apiVersion: 'operator.kyma-project.io/v1alpha1',
  kind: 'NATS',
  namespace: 'kyma-system',
  name: 'eventing-nats',
};

describe('the reconcile executor', () => {
  it('writes the finalizer first, then every child, then the status', async () => {
    const client = createFakeKubeClient();
    const stored = client.put(natsObject());
    const { deps, events } = setup(client, stored);
    const result = await new NatsReconciler(deps).reconcile('kyma-system', 'eventing-nats');
    const writes = client.calls.filter((c) => c.verb !== 'get' && c.verb !== 'list');
    expect(writes[0]).toMatchObject({ verb: 'patch' });
    expect(writes.slice(1, -1).map((c) => c.verb)).toEqual(Array(5).fill('apply'));
    expect(writes.at(-1)).toMatchObject({ verb: 'status' });
    expect(client.stored(NATS_REF)?.metadata.finalizers).toEqual([NATS_FINALIZER]);
    expect(result.children?.map((c) => c.action)).toEqual(Array(5).fill('create'));
    expect(events.map((e) => e.reason)).toEqual([
      ...Array<string>(5).fill('Created'),
      'Processing',
    ]);
  });

  it('a child the API server refuses blocks no other: all are written, the failure is reported and retried', async () => {
    const client = createFakeKubeClient();
    const stored = client.put(natsObject());
    client.intercept = (call) =>
      call.verb === 'apply' && call.path.includes('/services/')
        ? Promise.reject(
            new KubeApiError('PATCH', call.path, 422, { message: 'duplicate port name' }),
          )
        : undefined;
    const { deps } = setup(client, stored);
    const reconcile = new NatsReconciler(deps).reconcile('kyma-system', 'eventing-nats');
    await expect(reconcile).rejects.toThrow(ChildrenFailedError);
    for (const path of [
      '/api/v1/namespaces/kyma-system/configmaps/eventing-nats-config',
      '/api/v1/namespaces/kyma-system/secrets/eventing-nats-secret',
      '/apis/apps/v1/namespaces/kyma-system/statefulsets/eventing-nats',
      '/apis/policy/v1/namespaces/kyma-system/poddisruptionbudgets/eventing-nats',
    ]) {
      expect(client.calls.some((c) => c.verb === 'apply' && c.path === path)).toBe(true);
    }
    const status = client.stored(NATS_REF)?.status as Nats['status'];
    expect(status?.state).toBe('Error');
    expect(JSON.stringify(status)).toContain('Service kyma-system/eventing-nats');
    expect(JSON.stringify(status)).toContain('duplicate port name');
  });

  it('a status write lost to a conflict still records the events of the children written', async () => {
    const client = createFakeKubeClient();
    const stored = client.put(natsObject());
    client.intercept = (call) =>
      call.verb === 'status'
        ? Promise.reject(new KubeApiError('PUT', call.path, 409, { reason: 'Conflict' }))
        : undefined;
    const { deps, events } = setup(client, stored);
    const reconcile = new NatsReconciler(deps).reconcile('kyma-system', 'eventing-nats');
    await expect(reconcile).rejects.toThrow(KubeApiError);
    // The children were created: the retry finds nothing to announce, so they are told now;
    // the state transition waits for the status that says it.
    expect(events.map((e) => e.reason)).toEqual(Array<string>(5).fill('Created'));
  });

  it('a replacement that meets 409 is put again on a fresh read, with no Error shown', async () => {
    const { client, deps, sts } = await reconciledCluster();
    // Someone adds a field: only a full replacement takes it away again.
    client.put({
      ...sts,
      metadata: {
        ...sts.metadata,
        labels: { ...(sts.metadata.labels as Record<string, string>), extra: 'x' },
        managedFields: [
          {
            manager: 'kubectl-label',
            operation: 'Update',
            fieldsType: 'FieldsV1',
            fieldsV1: { 'f:metadata': { 'f:labels': { 'f:extra': {} } } },
          },
        ],
      },
    });
    let moved = false;
    client.intercept = (call) => {
      // The StatefulSet controller writes its status between the plan's read and the PUT.
      if (call.verb === 'update' && call.path.includes('/statefulsets/') && !moved) {
        moved = true;
        const live = client.stored(STS_REF);
        if (live !== undefined) client.put({ ...live, status: { observedGeneration: 2 } });
      }
      return undefined;
    };
    const before = client.calls.length;
    await new NatsReconciler(deps).reconcile('kyma-system', 'eventing-nats');
    const calls = client.calls.slice(before).filter((c) => c.path.includes('/statefulsets/'));
    expect(calls.map((c) => c.verb)).toEqual(['get', 'update', 'get', 'update']);
    const labels = client.stored(STS_REF)?.metadata.labels as Record<string, string>;
    expect(labels.extra).toBeUndefined();
    expect((client.stored(NATS_REF)?.status as Nats['status'])?.state).toBe('Processing');
  });

  it('an aborted signal ends the reconcile at once, even inside a request that hangs', async () => {
    const client = createFakeKubeClient();
    const stored = client.put(natsObject({ finalizers: [NATS_FINALIZER] }));
    client.intercept = (call) => (call.verb === 'apply' ? new Promise(() => undefined) : undefined);
    const { deps } = setup(client, stored);
    const abort = new AbortController();
    const reconcile = new NatsReconciler(deps).reconcile(
      'kyma-system',
      'eventing-nats',
      abort.signal,
    );
    await eventually('a hanging apply', () =>
      Promise.resolve(client.calls.some((c) => c.verb === 'apply') ? true : undefined),
    );
    abort.abort(new Error('no longer leading'));
    await expect(reconcile).rejects.toThrow('no longer leading');
  });

  it('a resource gone during its deletion (404) ends the reconcile, not as an error', async () => {
    const client = createFakeKubeClient();
    const stored = client.put(
      natsObject({ finalizers: [NATS_FINALIZER], deletionTimestamp: new Date() }),
    );
    client.intercept = (call) =>
      call.verb === 'status' || call.verb === 'patch'
        ? Promise.reject(new KubeApiError('PUT', call.path, 404, {}))
        : undefined;
    const { deps } = setup(client, stored);
    await expect(
      new NatsReconciler(deps).reconcile('kyma-system', 'eventing-nats'),
    ).resolves.toEqual({});
  });
});

/**
 * A cluster of one at 1Gi, reconciled; then its spec raised to 4Gi, with its claim still at 1Gi
 * or (`claimSize`) grown already.
 */
async function grownCluster(client: FakeKubeClient, claimSize = '1Gi'): Promise<KubeObject> {
  const stored = client.put(natsObject());
  await new NatsReconciler(setup(client, stored).deps).reconcile('kyma-system', 'eventing-nats');
  client.put({
    apiVersion: 'v1',
    kind: 'PersistentVolumeClaim',
    metadata: { name: 'eventing-nats-js-pvc-eventing-nats-0', namespace: 'kyma-system' },
    spec: { resources: { requests: { storage: claimSize } } },
    status: { phase: 'Bound', capacity: { storage: claimSize } },
  });
  const current = client.stored(NATS_REF) ?? stored;
  return client.put({
    ...current,
    spec: { cluster: { size: 1 }, jetStream: { fileStorage: { size: '4Gi' } } },
  });
}

describe('the reconcile executor growing the volume claims', () => {
  it('raises each claim before anything else, and leaves the StatefulSet for the next step', async () => {
    const client = createFakeKubeClient();
    const stored = await grownCluster(client);
    const before = client.calls.length;
    const { deps } = setup(client, stored);
    await new NatsReconciler(deps).reconcile('kyma-system', 'eventing-nats');
    const writes = client.calls.slice(before).filter((c) => c.verb !== 'get' && c.verb !== 'list');
    expect(writes[0]).toMatchObject({
      verb: 'patch',
      path: '/api/v1/namespaces/kyma-system/persistentvolumeclaims/eventing-nats-js-pvc-eventing-nats-0',
      body: { spec: { resources: { requests: { storage: '4Gi' } } } },
    });
    expect(writes.some((c) => c.path.includes('/statefulsets/'))).toBe(false);
    const status = client.stored(NATS_REF)?.status as Nats['status'];
    expect(status?.conditions?.find((c) => c.type === 'StatefulSet')?.message).toMatch(
      /^Growing the volume claims to 4Gi: asking for 4Gi on 1 claim/,
    );
  });

  it('a claim the API server refuses to grow: Warning, an event, the StatefulSet left alone', async () => {
    const client = createFakeKubeClient();
    const stored = await grownCluster(client);
    client.intercept = (call) =>
      call.verb === 'patch' && call.path.includes('/persistentvolumeclaims/')
        ? Promise.reject(
            new KubeApiError('PATCH', call.path, 403, {
              message: 'only dynamically provisioned pvc can be resized',
            }),
          )
        : undefined;
    const before = client.calls.length;
    const { deps, events } = setup(client, stored);
    const result = await new NatsReconciler(deps).reconcile('kyma-system', 'eventing-nats');
    const writes = client.calls.slice(before).filter((c) => c.verb !== 'get' && c.verb !== 'list');
    // The fake keeps no managedFields, so the other children are applied again; never the
    // StatefulSet.
    expect(writes[0]?.verb).toBe('patch');
    expect(writes.at(-1)?.verb).toBe('status');
    expect(writes.some((c) => c.path.includes('/statefulsets/'))).toBe(false);
    const status = client.stored(NATS_REF)?.status as Nats['status'];
    expect(status?.state).toBe('Warning');
    expect(status?.conditions?.find((c) => c.type === 'StatefulSet')?.message).toContain(
      'the API server refused the new size (eventing-nats-js-pvc-eventing-nats-0: ',
    );
    expect(events.map((e) => e.reason)).toContain('StorageGrowthRefused');
    expect(result.requeueAfterMs).toBe(SETTINGS.recheckMs);
  });
});

describe('the reconcile executor re-creating the StatefulSet of a growth', () => {
  const STS_REF = {
    apiVersion: 'apps/v1',
    kind: 'StatefulSet',
    namespace: 'kyma-system',
    name: 'eventing-nats',
  };

  const deletes = (client: FakeKubeClient, from: number): FakeCall[] =>
    client.calls.slice(from).filter((c) => c.verb === 'delete');

  it('deletes exactly the observed StatefulSet, leaving its pods', async () => {
    const client = createFakeKubeClient();
    const stored = await grownCluster(client, '4Gi');
    const uid = client.stored(STS_REF)?.metadata.uid;
    const before = client.calls.length;
    const { deps, events } = setup(client, stored);
    await new NatsReconciler(deps).reconcile('kyma-system', 'eventing-nats');
    expect(deletes(client, before)).toEqual([
      {
        verb: 'delete',
        path: '/apis/apps/v1/namespaces/kyma-system/statefulsets/eventing-nats',
        body: expect.objectContaining({ uid, propagationPolicy: 'Orphan' }) as unknown,
      },
    ]);
    expect(client.stored(STS_REF)).toBeUndefined();
    expect(events.map((e) => e.reason)).toContain('Recreating');
  });

  it('a cache that still shows the deleted StatefulSet asks for no second deletion and no Error', async () => {
    const client = createFakeKubeClient();
    const stored = await grownCluster(client, '4Gi');
    const stale = client.stored(STS_REF);
    await new NatsReconciler(setup(client, stored).deps).reconcile('kyma-system', 'eventing-nats');
    const before = client.calls.length;
    const { deps, events } = setup(client, client.stored(NATS_REF) ?? stored);
    const staleCache = {
      get: (_namespace: string | undefined, name: string) =>
        name === STS_REF.name ? stale : undefined,
    };
    const result = await new NatsReconciler({
      ...deps,
      childCache: (kind) => (kind === 'apps/v1/StatefulSet' ? staleCache : undefined),
    }).reconcile('kyma-system', 'eventing-nats');
    expect(deletes(client, before)).toEqual([]);
    expect(events.map((e) => e.reason)).not.toContain('Recreating');
    expect(result.children?.map((c) => c.error)).toEqual([undefined]);
    const status = client.stored(NATS_REF)?.status as Nats['status'];
    expect(status?.state).toBe('Processing');
    expect(status?.conditions?.find((c) => c.type === 'StatefulSet')?.message).toMatch(
      /^Growing the volume claims to 4Gi: /,
    );
  });
});

describe('the controller', () => {
  it('pause() (the Lease lost) aborts the reconciles in flight and resolves once they ended', async () => {
    const client = createFakeKubeClient();
    client.put(natsObject({ finalizers: [NATS_FINALIZER] }));
    let signal: AbortSignal | undefined;
    client.intercept = (call, callSignal) => {
      if (call.verb !== 'apply') return undefined;
      signal = callSignal;
      return new Promise(() => undefined);
    };
    const controller = createNatsController({
      client,
      settings: SETTINGS,
      log: silent,
      record: () => Promise.resolve(),
      checkCustomerData: () => Promise.resolve({ kind: 'none' }),
      natsWatchNamespace: 'kyma-system',
    });
    try {
      await controller.start();
      controller.run();
      await eventually('a reconcile in flight', () =>
        Promise.resolve(signal !== undefined ? true : undefined),
      );
      expect(controller.queueStats().inFlight).toBe(1);
      await controller.pause();
      expect(signal?.aborted).toBe(true);
      expect(controller.queueStats().inFlight).toBe(0);
    } finally {
      await controller.stop();
    }
  });
});

describe('the reconcile executor reading pods and claims', () => {
  const podAndClaimLists = (client: FakeKubeClient, from = 0) =>
    client.calls
      .slice(from)
      .filter((c) => c.verb === 'list' && /\/(pods|persistentvolumeclaims)$/.test(c.path))
      .map(
        (c) =>
          `${c.path.slice(c.path.lastIndexOf('/') + 1)} ${c.fromWatchCache ? 'cache' : 'consistent'}`,
      );

  it('reads them from the watch cache when nothing is done on them (a create)', async () => {
    const client = createFakeKubeClient();
    const { deps } = setup(client, client.put(natsObject()));
    await new NatsReconciler(deps).reconcile('kyma-system', 'eventing-nats');
    expect(podAndClaimLists(client).toSorted()).toEqual([
      'persistentvolumeclaims cache',
      'pods cache',
    ]);
  });

  it('reads them again, consistently, before a plan that acts on them (a growth)', async () => {
    const client = createFakeKubeClient();
    const stored = await grownCluster(client);
    const before = client.calls.length;
    await new NatsReconciler(setup(client, stored).deps).reconcile('kyma-system', 'eventing-nats');
    expect(podAndClaimLists(client, before).toSorted()).toEqual([
      'persistentvolumeclaims cache',
      'persistentvolumeclaims consistent',
      'pods cache',
      'pods consistent',
    ]);
  });

  /**
   * A cluster of one whose StatefulSet was scaled up to 2 by hand, with `pods` running; then
   * reconciled with NATS unreachable. What the servers were asked, and how pods were listed.
   */
  async function scaledUpByHand(pods: readonly string[]) {
    const { client, deps, sts } = await reconciledCluster();
    const spec = sts.spec as { selector: { matchLabels: Record<string, string> } };
    client.put({ ...sts, spec: { ...spec, replicas: 2 } });
    pods.forEach((name, index) =>
      client.put({
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name, namespace: 'kyma-system', labels: spec.selector.matchLabels },
        status: {
          podIP: `10.0.0.${String(index + 1)}`,
          conditions: [{ type: 'Ready', status: 'True' }],
        },
      }),
    );
    const asked: string[] = [];
    const before = client.calls.length;
    await new NatsReconciler({
      ...deps,
      monitor: () => {
        asked.push('monitor');
        return Promise.resolve(new Map());
      },
      natsPeers: {
        observe: () => {
          asked.push('observe');
          return Promise.resolve({ ok: false, error: 'unreachable' });
        },
        remove: () => Promise.resolve({ ok: false, error: 'unreachable' }),
      },
    }).reconcile('kyma-system', 'eventing-nats');
    return { asked, lists: podAndClaimLists(client, before) };
  }

  it('asks the NATS servers once, though a scale-down plan is made twice', async () => {
    // The second server never ran: the StatefulSet is cut at once, on consistent lists.
    const { asked, lists } = await scaledUpByHand(['eventing-nats-0']);
    expect(lists).toContain('pods consistent');
    expect(asked.toSorted()).toEqual(['monitor', 'observe']);
  });

  it('a scale-down that can only wait (a ready server, NATS unreachable) is judged on the watch cache', async () => {
    const { lists } = await scaledUpByHand(['eventing-nats-0', 'eventing-nats-1']);
    expect(lists.toSorted()).toEqual(['persistentvolumeclaims cache', 'pods cache']);
  });
});
