import { register as globalRegistry } from 'prom-client';
import request from 'supertest';
import { createManagerMetrics, type QueueSnapshot } from '../../src/manager/metrics.ts';
import { createAdmissionApp, type AdmissionAppDeps } from '../../webhooks/server.ts';
import { TEST_ADMISSION_CONFIG } from '../support/admission.ts';

/** The exposition's sample lines, without HELP and TYPE comments. */
async function samples(metrics: { registry: { metrics(): Promise<string> } }): Promise<string[]> {
  const text = await metrics.registry.metrics();
  return text.split('\n').filter((line) => line !== '' && !line.startsWith('#'));
}

describe('createManagerMetrics', () => {
  it('counts reconciles by result, errors on their own, and their durations in buckets', async () => {
    const metrics = createManagerMetrics();
    metrics.recordReconcile('success', 0.02);
    metrics.recordReconcile('success', 0.3);
    metrics.recordReconcile('error', 1.5);

    const lines = await samples(metrics);
    expect(lines).toEqual(
      expect.arrayContaining([
        'nats_manager_reconcile_total{result="success"} 2',
        'nats_manager_reconcile_total{result="error"} 1',
        'nats_manager_reconcile_total{result="requeue"} 0',
        'nats_manager_reconcile_errors_total 1',
        'nats_manager_reconcile_duration_seconds_bucket{le="0.025",result="success"} 1',
        'nats_manager_reconcile_duration_seconds_bucket{le="0.25",result="success"} 1',
        'nats_manager_reconcile_duration_seconds_bucket{le="0.5",result="success"} 2',
        'nats_manager_reconcile_duration_seconds_bucket{le="+Inf",result="success"} 2',
        'nats_manager_reconcile_duration_seconds_count{result="success"} 2',
        'nats_manager_reconcile_duration_seconds_bucket{le="1",result="error"} 0',
        'nats_manager_reconcile_duration_seconds_bucket{le="2.5",result="error"} 1',
        'nats_manager_reconcile_duration_seconds_sum{result="error"} 1.5',
        'nats_manager_reconcile_duration_seconds_count{result="requeue"} 0',
      ]),
    );
  });

  it('reads the work queue when scraped, not before', async () => {
    let queue: QueueSnapshot = { depth: 3, inFlight: 1 };
    let reads = 0;
    const metrics = createManagerMetrics();
    expect(await samples(metrics)).toEqual(
      expect.arrayContaining([
        'nats_manager_workqueue_depth 0',
        'nats_manager_workqueue_in_flight 0',
      ]),
    );

    metrics.trackQueue(() => {
      reads++;
      return queue;
    });
    expect(reads).toBe(0);
    expect(await samples(metrics)).toEqual(
      expect.arrayContaining([
        'nats_manager_workqueue_depth 3',
        'nats_manager_workqueue_in_flight 1',
      ]),
    );
    expect(reads).toBeGreaterThan(0);

    queue = { depth: 0, inFlight: 2 };
    expect(await samples(metrics)).toEqual(
      expect.arrayContaining([
        'nats_manager_workqueue_depth 0',
        'nats_manager_workqueue_in_flight 2',
      ]),
    );
  });

  it('takes the work queue at creation too', async () => {
    const metrics = createManagerMetrics({ queue: () => ({ depth: 5, inFlight: 0 }) });
    expect(await samples(metrics)).toContain('nats_manager_workqueue_depth 5');
  });

  it('counts watch restarts by resource and reason', async () => {
    const metrics = createManagerMetrics();
    metrics.recordWatchRestart('statefulsets', 'expired');
    metrics.recordWatchRestart('statefulsets', 'expired');
    metrics.recordWatchRestart('nats', 'stalled');

    expect(await samples(metrics)).toEqual(
      expect.arrayContaining([
        'nats_manager_watch_restarts_total{resource="statefulsets",reason="expired"} 2',
        'nats_manager_watch_restarts_total{resource="nats",reason="stalled"} 1',
      ]),
    );
  });

  it('counts admissions by webhook and verdict; an unjudged review is a denial and an error', async () => {
    const metrics = createManagerMetrics();
    metrics.onAdmission('mutate-nats', 'allowed', 0.0002);
    metrics.onAdmission('validate-nats', 'denied', 0.003);
    metrics.onAdmission('validate-nats', 'error', 0.004);

    expect(await samples(metrics)).toEqual(
      expect.arrayContaining([
        'nats_manager_admission_requests_total{webhook="mutate-nats",allowed="true"} 1',
        'nats_manager_admission_requests_total{webhook="mutate-nats",allowed="false"} 0',
        'nats_manager_admission_requests_total{webhook="validate-nats",allowed="false"} 2',
        'nats_manager_admission_requests_total{webhook="protect-children",allowed="true"} 0',
        'nats_manager_admission_errors_total{webhook="validate-nats"} 1',
        'nats_manager_admission_errors_total{webhook="mutate-nats"} 0',
        'nats_manager_admission_duration_seconds_bucket{le="0.0005",webhook="mutate-nats"} 1',
        'nats_manager_admission_duration_seconds_bucket{le="0.0025",webhook="validate-nats"} 0',
        'nats_manager_admission_duration_seconds_bucket{le="0.005",webhook="validate-nats"} 2',
        'nats_manager_admission_duration_seconds_count{webhook="protect-children"} 0',
      ]),
    );
  });

  it('plugs straight into createAdmissionApp as its onAdmission', async () => {
    const metrics = createManagerMetrics();
    const deps: AdmissionAppDeps = { onAdmission: metrics.onAdmission };
    const app = createAdmissionApp(TEST_ADMISSION_CONFIG, deps);

    await request(app).post('/validate-nats').send({ not: 'a review' }).expect(400);

    expect(await samples(metrics)).toEqual(
      expect.arrayContaining([
        'nats_manager_admission_requests_total{webhook="validate-nats",allowed="false"} 1',
        'nats_manager_admission_errors_total{webhook="validate-nats"} 1',
        'nats_manager_admission_duration_seconds_count{webhook="validate-nats"} 1',
      ]),
    );
  });

  it('shows whether this replica leads', async () => {
    const metrics = createManagerMetrics();
    expect(await samples(metrics)).toContain('nats_manager_leader 0');
    metrics.setLeader(true);
    expect(await samples(metrics)).toContain('nats_manager_leader 1');
    metrics.setLeader(false);
    expect(await samples(metrics)).toContain('nats_manager_leader 0');
  });

  it('counts API writes by kind and verb', async () => {
    const metrics = createManagerMetrics();
    metrics.recordWrite('StatefulSet', 'apply');
    metrics.recordWrite('StatefulSet', 'apply');
    metrics.recordWrite('NATS', 'status');
    metrics.recordWrite('Event', 'event');

    expect(await samples(metrics)).toEqual(
      expect.arrayContaining([
        'nats_manager_writes_total{kind="StatefulSet",verb="apply"} 2',
        'nats_manager_writes_total{kind="NATS",verb="status"} 1',
        'nats_manager_writes_total{kind="Event",verb="event"} 1',
      ]),
    );
  });

  it('has no write series before the first write, so an idle manager shows none', async () => {
    const metrics = createManagerMetrics();
    const lines = await samples(metrics);
    expect(lines.filter((line) => line.startsWith('nats_manager_writes_total'))).toEqual([]);
  });

  it('exports the process metrics under their standard names', async () => {
    const text = await createManagerMetrics().registry.metrics();
    expect(text).toMatch(/^process_cpu_seconds_total \d/m);
    expect(text).toMatch(/^process_resident_memory_bytes \d/m);
    expect(text).toMatch(/^nodejs_eventloop_lag_seconds \d/m);
  });

  it('keeps its metrics in its own registry: two managers never collide', async () => {
    const first = createManagerMetrics();
    const second = createManagerMetrics();
    first.setLeader(true);

    expect(await samples(first)).toContain('nats_manager_leader 1');
    expect(await samples(second)).toContain('nats_manager_leader 0');
    expect(await globalRegistry.metrics()).not.toContain('nats_manager_');
  });

  it('shows which webhook configurations the manager cannot put in place', async () => {
    const metrics = createManagerMetrics();
    const series = (configuration: string, value: number): string =>
      `nats_manager_webhook_configuration_missing{configuration="${configuration}"} ${String(value)}`;
    const validating = 'ValidatingWebhookConfiguration/nats-manager-validating';
    const mutating = 'MutatingWebhookConfiguration/nats-manager-mutating';
    expect(await samples(metrics)).toEqual(
      expect.arrayContaining([series(validating, 0), series(mutating, 0)]),
    );
    metrics.setWebhookConfigurationsMissing([validating]);
    expect(await samples(metrics)).toEqual(
      expect.arrayContaining([series(validating, 1), series(mutating, 0)]),
    );
    metrics.setWebhookConfigurationsMissing([]);
    expect(await samples(metrics)).toContain(series(validating, 0));
  });
});
