// The reconcile loop: watch caches of NATS resources and their children, a work queue keyed by
// NATS resource, and the reconciler. Every replica keeps its caches warm; only the one told to
// run (the leader) reconciles.
import type { KubeConfig } from '@kubernetes/client-node';
import {
  MANAGED_BY_LABEL,
  MANAGED_BY_VALUE,
  NATS_API_VERSION,
  NATS_KIND,
  type Nats,
} from '../api/nats.ts';
import { resourcePath, type KubeObject } from '../kube/api.ts';
import type { Logger } from '../manager/log.ts';
import type { CustomerDataCheck } from '../nats/customer-data.ts';
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
  readonly kc: KubeConfig;
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
}

export interface NatsController {
  /** Starts the watches; resolves once every cache holds its first list. */
  start(): Promise<void>;
  hasSynced(): boolean;
  /** Starts reconciling (this replica leads): every known NATS resource is queued. */
  run(): void;
  /** Stops reconciling (leadership lost); keys already running finish. */
  pause(): void;
  /** Drains the queue and closes the watches. */
  stop(): Promise<void>;
  queueStats(): { depth: number; inFlight: number };
}

/** The children's kinds, by `apiVersion/kind`. */
const CHILD_KINDS = [
  'v1/ConfigMap',
  'v1/Secret',
  'v1/Service',
  'apps/v1/StatefulSet',
  'policy/v1/PodDisruptionBudget',
] as const;
const DESTINATION_RULE = 'networking.istio.io/v1/DestinationRule';

function splitKind(apiVersionKind: string): [string, string] {
  const slash = apiVersionKind.lastIndexOf('/');
  return [apiVersionKind.slice(0, slash), apiVersionKind.slice(slash + 1)];
}

function keyOf(namespace: string, name: string): string {
  return `${namespace}/${name}`;
}

function natsKey(nats: KubeObject): string {
  return keyOf(nats.metadata.namespace ?? '', nats.metadata.name ?? '');
}

const DESTINATION_RULE_CRD = 'destinationrules.networking.istio.io';

interface CustomResourceDefinition extends KubeObject {
  spec?: { versions?: { name?: string; served?: boolean }[] };
  status?: { conditions?: { type?: string; status?: string }[] };
}

/** Istio's DestinationRule v1 is served: the CRD exists, is established and serves v1. */
function servesDestinationRuleV1(crd: CustomResourceDefinition | undefined): boolean {
  if (crd === undefined) return false;
  const established = (crd.status?.conditions ?? []).some(
    (c) => c.type === 'Established' && c.status === 'True',
  );
  return established && (crd.spec?.versions ?? []).some((v) => v.name === 'v1' && v.served);
}

export function createNatsController(options: NatsControllerOptions): NatsController {
  const { kc, settings, log, metrics } = options;
  let running = false;
  const informerOptions = { stallTimeoutMs: options.stallTimeoutMs, log };

  const queue = createWorkQueue<string>({
    process: async (key) => {
      if (!running) return;
      const slash = key.indexOf('/');
      const started = performance.now();
      try {
        const result = await reconciler.reconcile(key.slice(0, slash), key.slice(slash + 1));
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
      log.error('reconcile failed', { nats: key, retryInMs, error });
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
    kc,
    {
      path:
        options.natsWatchNamespace === undefined
          ? '/apis/operator.kyma-project.io/v1alpha1/nats'
          : resourcePath(NATS_API_VERSION, NATS_KIND, options.natsWatchNamespace),
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
  const watchChildren = (apiVersionKind: string): void => {
    const [apiVersion, kind] = splitKind(apiVersionKind);
    const resource = kind.toLowerCase();
    childInformers.set(
      apiVersionKind,
      createInformer<KubeObject>(
        kc,
        {
          path: resourcePath(apiVersion, kind, settings.natsNamespace),
          labelSelector: `${MANAGED_BY_LABEL}=${MANAGED_BY_VALUE}`,
          // Drift detection reads which fields our applies own.
          keepManagedFields: true,
          ...informerOptions,
        },
        {
          add: enqueueOwner,
          update: enqueueOwner,
          delete: enqueueOwner,
          onRestart: reportRestarts(resource),
        },
      ),
    );
  };
  for (const kind of CHILD_KINDS) watchChildren(kind);

  // Istio comes and goes: its DestinationRule CRD is watched by name, and with it the
  // DestinationRule children. Each change re-reconciles, so the child appears or is forgotten.
  let started = false;
  const istioServed = (): boolean =>
    servesDestinationRuleV1(istioCrdInformer.get(undefined, DESTINATION_RULE_CRD));
  const enqueueAll = (): void => {
    for (const nats of natsInformer.list()) enqueue(natsKey(nats));
  };
  const followIstio = (): void => {
    if (!started) return;
    const watched = childInformers.get(DESTINATION_RULE);
    if (istioServed() && watched === undefined) {
      watchChildren(DESTINATION_RULE);
      childInformers
        .get(DESTINATION_RULE)
        ?.start()
        .catch((error: unknown) => {
          log.error('could not watch DestinationRules', { error });
        });
      log.info('Istio DestinationRules are served: managing them');
    } else if (!istioServed() && watched !== undefined) {
      watched.stop();
      childInformers.delete(DESTINATION_RULE);
      log.info('Istio DestinationRules are no longer served');
    } else {
      return;
    }
    enqueueAll();
  };
  const istioCrdInformer = createInformer<CustomResourceDefinition>(
    kc,
    {
      path: '/apis/apiextensions.k8s.io/v1/customresourcedefinitions',
      fieldSelector: `metadata.name=${DESTINATION_RULE_CRD}`,
      ...informerOptions,
    },
    {
      add: followIstio,
      update: followIstio,
      delete: followIstio,
      onRestart: reportRestarts('customresourcedefinition'),
    },
  );

  const reconciler = new NatsReconciler({
    kc,
    settings,
    natsCache: {
      get: (namespace, name) => natsInformer.get(namespace, name),
    },
    childCache: (apiVersionKind) => childInformers.get(apiVersionKind),
    record: options.record,
    checkCustomerData: options.checkCustomerData,
    natsUrl: options.natsUrl,
    istioPresent: istioServed,
    onWrite: (kind, verb) => metrics?.recordWrite(kind, verb),
    log,
  });

  const informers = (): Informer<unknown>[] => [
    natsInformer,
    istioCrdInformer,
    ...childInformers.values(),
  ];

  return {
    async start() {
      await istioCrdInformer.start();
      if (istioServed()) watchChildren(DESTINATION_RULE);
      await Promise.all(
        informers()
          .filter((informer) => informer !== istioCrdInformer)
          .map((informer) => informer.start()),
      );
      started = true;
    },
    hasSynced: () => informers().every((informer) => informer.hasSynced()),
    run() {
      if (running) return;
      running = true;
      enqueueAll();
    },
    pause() {
      running = false;
    },
    async stop() {
      running = false;
      await queue.shutdown();
      for (const informer of informers()) informer.stop();
    },
    queueStats: () => ({ depth: queue.depth(), inFlight: queue.inFlight() }),
  };
}
