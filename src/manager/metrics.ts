// The manager's Prometheus metrics. They live in a registry of their own, not prom-client's
// global one, so every manager (and every test) starts from zero and nothing a dependency
// registers globally leaks into our /metrics.
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { ReconcileResultLabel } from '../controller/controller.ts';
import type { RestartReason } from '../controller/informer.ts';
import type { WriteVerb } from '../controller/reconciler.ts';
import type { AdmissionAppDeps, WebhookName } from '../../webhooks/server.ts';
import { MUTATING_CONFIGURATION, VALIDATING_CONFIGURATION } from './webhook-configurations.ts';

type ReconcileResult = ReconcileResultLabel;

export interface QueueSnapshot {
  readonly depth: number;
  readonly inFlight: number;
}

export interface ManagerMetricsOptions {
  /** Read at every scrape for the work-queue gauges; `trackQueue` can set it later. */
  readonly queue?: () => QueueSnapshot;
}

export interface ManagerMetrics {
  readonly registry: Registry;
  /** One finished reconcile; an `error` also counts in `reconcile_errors_total`. */
  recordReconcile(result: ReconcileResult, seconds: number): void;
  /** Replaces the queue read at scrape time, so the gauges are never stale. */
  trackQueue(queue: () => QueueSnapshot): void;
  recordWatchRestart(resource: string, reason: RestartReason): void;
  /** Pass straight to `createAdmissionApp`. */
  readonly onAdmission: NonNullable<AdmissionAppDeps['onAdmission']>;
  setLeader(leader: boolean): void;
  /** `kind` is the written object's kind, e.g. `StatefulSet`. */
  recordWrite(kind: string, verb: WriteVerb): void;
  /** Which webhook configurations (`Kind/name`) the manager could not put in place. */
  setWebhookConfigurationsMissing(missing: readonly string[]): void;
}

const PREFIX = 'nats_manager_';

const WEBHOOK_CONFIGURATIONS = [
  `MutatingWebhookConfiguration/${MUTATING_CONFIGURATION}`,
  `ValidatingWebhookConfiguration/${VALIDATING_CONFIGURATION}`,
];

const RESULTS: readonly ReconcileResult[] = ['success', 'error', 'requeue'];

// A Record, so that a new webhook name fails to compile here until it is listed.
const WEBHOOKS: Readonly<Record<WebhookName, true>> = {
  'mutate-nats': true,
  'validate-nats': true,
  'protect-children': true,
};

// A reconcile is a handful of API calls: milliseconds when nothing changes, seconds when the
// apiserver is slow.
const RECONCILE_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
// The handlers are pure and take well under a millisecond; the apiserver gives up after the
// webhook's timeoutSeconds (5 s).
const ADMISSION_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5];

export function createManagerMetrics(options: ManagerMetricsOptions = {}): ManagerMetrics {
  const registry = new Registry();
  const registers = [registry];
  // Process and Node.js runtime metrics keep their standard, unprefixed names
  // (process_cpu_seconds_total, nodejs_eventloop_lag_seconds, ...) so that stock dashboards and
  // alerts work on them unchanged.
  // The event-loop delay histogram samples every 10 ms by default: about 1.5 CPU-seconds per
  // two minutes of an otherwise idle manager. Every 100 ms still shows any lag that matters to a
  // controller (bench/README.md, idle).
  collectDefaultMetrics({ register: registry, eventLoopMonitoringPrecision: 100 });

  const reconciles = new Counter({
    name: `${PREFIX}reconcile_total`,
    help: 'Reconciles finished, by result.',
    labelNames: ['result'] as const,
    registers,
  });
  const reconcileErrors = new Counter({
    name: `${PREFIX}reconcile_errors_total`,
    help: 'Reconciles that failed.',
    registers,
  });
  const reconcileSeconds = new Histogram({
    name: `${PREFIX}reconcile_duration_seconds`,
    help: 'How long a reconcile took, by result.',
    labelNames: ['result'] as const,
    buckets: RECONCILE_BUCKETS,
    registers,
  });

  let queue = options.queue;
  // Read when scraped rather than pushed on every queue change: the queue stays free of metrics
  // code and a scrape always sees its current state.
  new Gauge({
    name: `${PREFIX}workqueue_depth`,
    help: 'Keys waiting in the work queue (not counting delayed retries).',
    registers,
    collect() {
      this.set(queue?.().depth ?? 0);
    },
  });
  new Gauge({
    name: `${PREFIX}workqueue_in_flight`,
    help: 'Keys being reconciled right now.',
    registers,
    collect() {
      this.set(queue?.().inFlight ?? 0);
    },
  });

  const watchRestarts = new Counter({
    name: `${PREFIX}watch_restarts_total`,
    help: 'Informer watches restarted, by resource and reason (expired, stalled, failed).',
    labelNames: ['resource', 'reason'] as const,
    registers,
  });

  const admissions = new Counter({
    name: `${PREFIX}admission_requests_total`,
    help: 'Admission requests answered, by webhook and whether they were allowed.',
    labelNames: ['webhook', 'allowed'] as const,
    registers,
  });
  // A review that could not be judged (bad request, handler failure) is denied; this tells it
  // apart from a deliberate denial.
  const admissionErrors = new Counter({
    name: `${PREFIX}admission_errors_total`,
    help: 'Admission requests that could not be judged, by webhook.',
    labelNames: ['webhook'] as const,
    registers,
  });
  const admissionSeconds = new Histogram({
    name: `${PREFIX}admission_duration_seconds`,
    help: 'How long answering an admission request took, by webhook.',
    labelNames: ['webhook'] as const,
    buckets: ADMISSION_BUCKETS,
    registers,
  });

  const leader = new Gauge({
    name: `${PREFIX}leader`,
    help: '1 while this replica is the leader, else 0.',
    registers,
  });

  const writes = new Counter({
    name: `${PREFIX}writes_total`,
    help: 'API writes sent by the reconciler, by object kind and verb.',
    labelNames: ['kind', 'verb'] as const,
    registers,
  });

  const webhookConfigurationMissing = new Gauge({
    name: `${PREFIX}webhook_configuration_missing`,
    help: '1 while the manager cannot put this webhook configuration in place, else 0.',
    labelNames: ['configuration'] as const,
    registers,
  });

  // Series known in advance exist from the start at 0, so that rate() and increase() see their
  // first increment instead of a series appearing out of nowhere.
  for (const result of RESULTS) {
    reconciles.inc({ result }, 0);
    reconcileSeconds.zero({ result });
  }
  for (const webhook of Object.keys(WEBHOOKS) as WebhookName[]) {
    admissions.inc({ webhook, allowed: 'true' }, 0);
    admissions.inc({ webhook, allowed: 'false' }, 0);
    admissionErrors.inc({ webhook }, 0);
    admissionSeconds.zero({ webhook });
  }
  leader.set(0);
  for (const configuration of WEBHOOK_CONFIGURATIONS) {
    webhookConfigurationMissing.set({ configuration }, 0);
  }

  return {
    registry,
    recordReconcile(result, seconds) {
      reconciles.inc({ result });
      reconcileSeconds.observe({ result }, seconds);
      if (result === 'error') reconcileErrors.inc();
    },
    trackQueue(next) {
      queue = next;
    },
    recordWatchRestart(resource, reason) {
      watchRestarts.inc({ resource, reason });
    },
    onAdmission: (webhook, outcome, seconds) => {
      admissions.inc({ webhook, allowed: outcome === 'allowed' ? 'true' : 'false' });
      if (outcome === 'error') admissionErrors.inc({ webhook });
      admissionSeconds.observe({ webhook }, seconds);
    },
    setWebhookConfigurationsMissing(missing) {
      for (const configuration of WEBHOOK_CONFIGURATIONS) {
        webhookConfigurationMissing.set({ configuration }, missing.includes(configuration) ? 1 : 0);
      }
    },
    setLeader(isLeader) {
      leader.set(isLeader ? 1 : 0);
    },
    recordWrite(kind, verb) {
      writes.inc({ kind, verb });
    },
  };
}
