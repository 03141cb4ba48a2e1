// The reconcile loop: watch caches of NATS resources and their children, a work queue keyed by
// NATS resource, and the reconciler. Every replica keeps its caches warm; only the one told to
// run (the leader) reconciles.
import {
  MANAGED_BY_LABEL,
  MANAGED_BY_VALUE,
  NATS_API_VERSION,
  NATS_KIND,
  type Nats,
} from '../api/nats.ts';
import type { Logger } from '../base/log.ts';
import { errorMessage } from '../base/json.ts';
import type { KubeObject } from '../base/object.ts';
import type { KubeClient } from '../kube/client.ts';
import { isApiStatus } from '../kube/transport.ts';
import { collectionPath, resourcePath } from '../kube/resources.ts';
import type { CustomerDataCheck } from '../nats/customer-data.ts';
import { childKey, CHILD_KINDS, type ChildKind } from '../render/children.ts';
import type { EventRecorder } from './events.ts';
import { createInformer, type Informer, type RestartReason } from './informer.ts';
import { NatsReconciler, type ReconcilerSettings, type WriteVerb } from './reconciler.ts';
import { createWorkQueue } from './work-queue.ts';

export type ReconcileResultLabel = 'success' | 'error' | 'requeue';

/** What the loop reports; the manager turns it into Prometheus metrics. */
export interface ControllerMetrics {
  recordReconcile(result: ReconcileResultLabel, seconds: number): void;
  recordWatchRestart(resource: string, reason: RestartReason): void;
  recordWrite(kind: string, verb: WriteVerb): void;
}

export interface NatsControllerOptions {
  readonly client: KubeClient;
  readonly settings: ReconcilerSettings;
  readonly log: Logger;
  readonly record: EventRecorder;
  readonly checkCustomerData: (url: string) => Promise<CustomerDataCheck>;
  readonly natsUrl?: (nats: { name: string; namespace: string }) => string;
  readonly metrics?: ControllerMetrics;
  /**
   * Watch NATS resources in this namespace only. By default all are watched, so that any
   * resource besides the served one is told (status Error/Forbidden) that it is not served.
   */
  readonly natsWatchNamespace?: string;
  /** Passed to every watch; tests shorten it. */
  readonly stallTimeoutMs?: number;
  /**
   * Resources reconciled at the same time (always different ones). Default 4: a resource whose
   * requests hang until their deadline does not hold up the others.
   */
  readonly concurrency?: number;
}

export interface NatsController {
  /** Starts the watches; resolves once every cache holds its first list. */
  start(): Promise<void>;
  hasSynced(): boolean;
  /** Starts reconciling (this replica leads): every known NATS resource is queued. */
  run(): void;
  /**
   * Stops reconciling (leadership lost): the reconciles in flight are aborted, their requests
   * cancelled. Resolves once they ended.
   */
  pause(): Promise<void>;
  /** Drains the queue and closes the watches. */
  stop(): Promise<void>;
  queueStats(): { depth: number; inFlight: number };
}

function keyOf(namespace: string, name: string): string {
  return `${namespace}/${name}`;
}

function natsKey(nats: KubeObject): string {
  return keyOf(nats.metadata.namespace ?? '', nats.metadata.name ?? '');
}

interface CustomResourceDefinition extends KubeObject {
  spec?: { versions?: { name?: string; served?: boolean }[] };
  status?: { conditions?: { type?: string; status?: string }[] };
}

/** The CRD exists, is established and serves `version`. */
function servesVersion(crd: CustomResourceDefinition | undefined, version: string): boolean {
  if (crd === undefined) return false;
  const established = (crd.status?.conditions ?? []).some(
    (c) => c.type === 'Established' && c.status === 'True',
  );
  return established && (crd.spec?.versions ?? []).some((v) => v.name === version && v.served);
}

function versionOf(apiVersion: string): string {
  return apiVersion.slice(apiVersion.lastIndexOf('/') + 1);
}

export function createNatsController(options: NatsControllerOptions): NatsController {
  const { client, settings, log, metrics } = options;
  let running = false;
  // One per term of leadership: pause() aborts the reconciles of the term that ended.
  let term = new AbortController();
  const informerOptions = { stallTimeoutMs: options.stallTimeoutMs, log };

  const queue = createWorkQueue<string>({
    concurrency: options.concurrency ?? 4,
    process: async (key) => {
      if (!running) return;
      const slash = key.indexOf('/');
      const started = performance.now();
      try {
        const result = await reconciler.reconcile(
          key.slice(0, slash),
          key.slice(slash + 1),
          term.signal,
        );
        const seconds = (performance.now() - started) / 1000;
        if (result.requeueAfterMs !== undefined) {
          queue.addAfter(key, result.requeueAfterMs);
          metrics?.recordReconcile('requeue', seconds);
        } else {
          metrics?.recordReconcile('success', seconds);
        }
      } catch (error) {
        metrics?.recordReconcile('error', (performance.now() - started) / 1000);
        throw error;
      }
    },
    onError: (key, error, retryInMs) => {
      const slash = key.indexOf('/');
      const where = { namespace: key.slice(0, slash), name: key.slice(slash + 1), retryInMs };
      // A write guarded by a resourceVersion the cache had not caught up with: routine under
      // optimistic concurrency, and retried at once, so no error for an operator to chase.
      if (isApiStatus(error, 409)) {
        log.info('reconciling again: the resource changed meanwhile', {
          ...where,
          error: errorMessage(error),
        });
        return;
      }
      log.error('reconcile failed', { ...where, error });
    },
  });
  const enqueue = (key: string): void => {
    if (running) queue.add(key);
  };
  const reportRestarts =
    (resource: string) =>
    (reason: RestartReason, error: Error): void => {
      metrics?.recordWatchRestart(resource, reason);
      log.info('watch reopened', { resource, reason, error: error.message });
    };

  const natsInformer: Informer<Nats & KubeObject> = createInformer<Nats & KubeObject>(
    client,
    {
      path: collectionPath(NATS_API_VERSION, NATS_KIND, options.natsWatchNamespace),
      ...informerOptions,
    },
    {
      add: (nats) => {
        enqueue(natsKey(nats));
      },
      update: (nats) => {
        enqueue(natsKey(nats));
      },
      onRestart: reportRestarts('nats'),
    },
  );

  /** A child event queues its owning NATS resource. */
  const enqueueOwner = (child: KubeObject): void => {
    const namespace = child.metadata.namespace ?? '';
    const refs = (child.metadata.ownerReferences ?? []) as readonly {
      kind?: string;
      name?: string;
    }[];
    const owner = refs.find((ref) => ref.kind === NATS_KIND);
    // Labelled as ours but without an owner: the served resource decides what it is.
    enqueue(keyOf(namespace, owner?.name ?? settings.natsName));
  };

  const childInformers = new Map<string, Informer<KubeObject>>();
  const watchChildren = (child: ChildKind): void => {
    childInformers.set(
      childKey(child),
      createInformer<KubeObject>(
        client,
        {
          path: resourcePath(child.apiVersion, child.kind, settings.natsNamespace),
          labelSelector: `${MANAGED_BY_LABEL}=${MANAGED_BY_VALUE}`,
          // Drift detection reads which fields our applies own.
          keepManagedFields: true,
          ...informerOptions,
        },
        {
          add: enqueueOwner,
          update: enqueueOwner,
          delete: enqueueOwner,
          onRestart: reportRestarts(child.kind.toLowerCase()),
        },
      ),
    );
  };
  const optionalKinds = CHILD_KINDS.filter((child) => child.crd !== undefined);
  for (const child of CHILD_KINDS) if (child.crd === undefined) watchChildren(child);

  // Optional kinds (Istio's DestinationRule) come and go with their CRD, which is watched by
  // name. Each change re-reconciles, so the child appears or is forgotten.
  let started = false;
  const crdInformers = new Map<string, Informer<CustomResourceDefinition>>();
  const servedCrd = (crd: string): boolean => {
    const child = optionalKinds.find((c) => c.crd === crd);
    const version = child === undefined ? '' : versionOf(child.apiVersion);
    return servesVersion(crdInformers.get(crd)?.get(undefined, crd), version);
  };
  const enqueueAll = (): void => {
    for (const nats of natsInformer.list()) enqueue(natsKey(nats));
  };
  const follow = (child: ChildKind): void => {
    if (!started || child.crd === undefined) return;
    const watched = childInformers.get(childKey(child));
    const served = servedCrd(child.crd);
    if (served && watched === undefined) {
      watchChildren(child);
      // Reconciled again once listed: a child written and deleted before the first list (which
      // may wait out a retry while the new API is not yet served) leaves no event behind.
      childInformers
        .get(childKey(child))
        ?.start()
        .then(enqueueAll, (error: unknown) => {
          log.error(`could not watch ${child.kind}s`, { error });
        });
      log.info(`${child.kind}s are served: managing them`);
    } else if (!served && watched !== undefined) {
      watched.stop();
      childInformers.delete(childKey(child));
      log.info(`${child.kind}s are no longer served`);
    } else {
      return;
    }
    enqueueAll();
  };
  for (const child of optionalKinds) {
    const crd = child.crd ?? '';
    const onChange = (): void => {
      follow(child);
    };
    crdInformers.set(
      crd,
      createInformer<CustomResourceDefinition>(
        client,
        {
          path: collectionPath('apiextensions.k8s.io/v1', 'CustomResourceDefinition'),
          fieldSelector: `metadata.name=${crd}`,
          ...informerOptions,
        },
        {
          add: onChange,
          update: onChange,
          delete: onChange,
          onRestart: reportRestarts('customresourcedefinition'),
        },
      ),
    );
  }

  const reconciler = new NatsReconciler({
    client,
    settings,
    natsCache: {
      get: (namespace, name) => natsInformer.get(namespace, name),
    },
    childCache: (apiVersionKind) => childInformers.get(apiVersionKind),
    record: options.record,
    checkCustomerData: options.checkCustomerData,
    natsUrl: options.natsUrl,
    servedCrd,
    onWrite: (kind, verb) => metrics?.recordWrite(kind, verb),
    log,
  });

  const informers = (): Informer<unknown>[] => [
    natsInformer,
    ...crdInformers.values(),
    ...childInformers.values(),
  ];

  return {
    async start() {
      await Promise.all([...crdInformers.values()].map((informer) => informer.start()));
      for (const child of optionalKinds) {
        if (servedCrd(child.crd ?? '')) watchChildren(child);
      }
      await Promise.all(
        [natsInformer, ...childInformers.values()].map((informer) => informer.start()),
      );
      started = true;
    },
    hasSynced: () => informers().every((informer) => informer.hasSynced()),
    run() {
      if (running) return;
      running = true;
      term = new AbortController();
      enqueueAll();
    },
    async pause() {
      running = false;
      term.abort(new Error('no longer leading: reconcile aborted'));
      await queue.idle();
    },
    async stop() {
      running = false;
      await queue.shutdown();
      for (const informer of informers()) informer.stop();
    },
    queueStats: () => ({ depth: queue.depth(), inFlight: queue.inFlight() }),
  };
}
