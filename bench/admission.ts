// 6. Admission: the manager's mutate, validate and protect handlers, served as the manager serves
// them, against a bare HTTPS express server parsing the same body and answering a fixed allow,
// each in a process of its own. Over TLS with keep-alive, 10 connections, rounds interleaved
// (manager, bare, manager, ...): requests per second, and the server's CPU time per request,
// which the load generator sharing the machine does not blur. Then latency at a fixed 1,000
// requests per second, interleaved the same way.
import { spawn, type ChildProcess } from 'node:child_process';
import { Agent, request } from 'node:https';
import { issueCertificate, createCertificateAuthority } from '../certs/x509.ts';
import { cpuSeconds, log, ratio, spread, type Row, type Spread } from './lib.ts';

const SERVER = new URL('./admission-server.ts', import.meta.url).pathname;
const CONNECTIONS = 10;
const ROUND_MS = 2_000;
const RATE_PER_S = 1_000;
const RATE_MS = 3_000;

const NATS = {
  apiVersion: 'operator.kyma-project.io/v1alpha1',
  kind: 'NATS',
  metadata: { name: 'eventing-nats', namespace: 'kyma-system', uid: 'u-1' },
  spec: {
    cluster: { size: 3 },
    jetStream: {
      fileStorage: { size: '1Gi', storageClassName: 'default' },
      memStorage: { enabled: true, size: '1Gi' },
    },
    resources: { limits: { cpu: '500m', memory: '1Gi' }, requests: { cpu: '40m', memory: '64Mi' } },
    logging: { debug: false, trace: false },
  },
};

const CONFIG_MAP = {
  apiVersion: 'v1',
  kind: 'ConfigMap',
  metadata: {
    name: 'eventing-nats-config',
    namespace: 'kyma-system',
    labels: { 'app.kubernetes.io/managed-by': 'nats-manager', 'app.kubernetes.io/name': 'nats' },
    ownerReferences: [
      {
        apiVersion: 'operator.kyma-project.io/v1alpha1',
        kind: 'NATS',
        name: 'eventing-nats',
        uid: 'u-1',
        controller: true,
      },
    ],
  },
  data: { 'nats.conf': 'port: 4222\n'.repeat(40) },
};

/** The review `webhook` is sent; with `trial`, of a NATS spec no earlier request had. */
function review(webhook: string, trial?: number): string {
  const nats = webhook !== 'protect-children';
  const object =
    trial === undefined
      ? NATS
      : { ...NATS, spec: { ...NATS.spec, labels: { trial: String(trial) } } };
  return JSON.stringify({
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    request: {
      uid: '7f0c1d2e-2222-4a4a-8c8c-0123456789ab',
      kind: nats
        ? { group: 'operator.kyma-project.io', version: 'v1alpha1', kind: 'NATS' }
        : { group: '', version: 'v1', kind: 'ConfigMap' },
      resource: nats
        ? { group: 'operator.kyma-project.io', version: 'v1alpha1', resource: 'nats' }
        : { group: '', version: 'v1', resource: 'configmaps' },
      name: nats ? 'eventing-nats' : 'eventing-nats-config',
      namespace: 'kyma-system',
      operation: nats ? 'CREATE' : 'UPDATE',
      // The manager's own write: the request the API server sends for every child apply.
      userInfo: nats
        ? { username: 'alice', groups: ['system:authenticated'] }
        : {
            username: 'system:serviceaccount:kyma-system:nats-manager',
            groups: ['system:serviceaccounts'],
          },
      object: nats ? object : CONFIG_MAP,
      oldObject: nats ? null : CONFIG_MAP,
      dryRun: false,
    },
  });
}

interface Server {
  readonly child: ChildProcess;
  readonly port: number;
}

async function startServer(
  mode: string,
  pem: { certPem: string; keyPem: string },
): Promise<Server> {
  const child = spawn(process.execPath, ['--no-warnings', SERVER, mode], {
    env: { ...process.env, BENCH_CERT: pem.certPem, BENCH_KEY: pem.keyPem },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const port = await new Promise<number>((resolve, reject) => {
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => {
      const match = /listening (\d+)/.exec(chunk);
      if (match?.[1] !== undefined) resolve(Number(match[1]));
    });
    child.once('exit', () => {
      reject(new Error(`${mode} admission server exited`));
    });
  });
  return { child, port };
}

function post(agent: Agent, port: number, path: string, body: string): Promise<number> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        path,
        method: 'POST',
        agent,
        rejectUnauthorized: false,
        headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) },
      },
      (res) => {
        res.resume();
        res.on('end', () => {
          if (res.statusCode !== 200) reject(new Error(`${path}: HTTP ${String(res.statusCode)}`));
          else resolve(performance.now() - started);
        });
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

interface Target {
  readonly server: Server;
  readonly agent: Agent;
  readonly path: string;
  readonly body: () => string;
}

/** Closed loop: CONNECTIONS clients sending back to back for `ms`. Requests and server CPU. */
async function saturate(target: Target, ms: number): Promise<{ requests: number; cpu: number }> {
  const { server, agent, path, body } = target;
  const cpuBefore = cpuSeconds(server.child.pid ?? 0);
  const end = performance.now() + ms;
  let requests = 0;
  await Promise.all(
    Array.from({ length: CONNECTIONS }, async () => {
      while (performance.now() < end) {
        await post(agent, server.port, path, body());
        requests++;
      }
    }),
  );
  return { requests, cpu: cpuSeconds(server.child.pid ?? 0) - cpuBefore };
}

/** Open loop at RATE_PER_S for `ms`: every request's latency. */
async function atRate(target: Target, ms: number): Promise<number[]> {
  const { server, agent, path, body } = target;
  const latencies: number[] = [];
  const pending: Promise<void>[] = [];
  const started = performance.now();
  let sent = 0;
  while (performance.now() - started < ms) {
    const due = Math.floor(((performance.now() - started) * RATE_PER_S) / 1_000);
    for (; sent < due; sent++) {
      pending.push(
        post(agent, server.port, path, body()).then((latency) => void latencies.push(latency)),
      );
    }
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
  await Promise.all(pending);
  return latencies;
}

export interface WebhookFigures {
  readonly requestsPerSecond: number;
  readonly bareRequestsPerSecond: number;
  readonly cpuMicrosPerRequest: number;
  readonly bareCpuMicrosPerRequest: number;
  readonly latencyAtRate: Spread;
  readonly bareLatencyAtRate: Spread;
}

export interface AdmissionResult {
  readonly rounds: number;
  readonly webhooks: Record<string, WebhookFigures>;
}

interface Totals {
  requests: number;
  cpu: number;
  ms: number;
  latencies: number[];
}

/** Interleaved rounds of `ours` and `bare`: saturated, then at a fixed rate. */
async function measureWebhook(ours: Target, bare: Target, rounds: number): Promise<WebhookFigures> {
  const totals = new Map<Target, Totals>([
    [ours, { requests: 0, cpu: 0, ms: 0, latencies: [] }],
    [bare, { requests: 0, cpu: 0, ms: 0, latencies: [] }],
  ]);
  // Warm-up: JIT and connections, for both.
  for (const target of [ours, bare]) await saturate(target, 500);
  for (let round = 0; round < rounds; round++) {
    for (const target of round % 2 === 0 ? [ours, bare] : [bare, ours]) {
      const result = await saturate(target, ROUND_MS);
      const total = totals.get(target);
      if (total === undefined) continue;
      total.requests += result.requests;
      total.cpu += result.cpu;
      total.ms += ROUND_MS;
    }
  }
  for (let round = 0; round < Math.max(2, Math.floor(rounds / 3)); round++) {
    for (const target of round % 2 === 0 ? [ours, bare] : [bare, ours]) {
      totals.get(target)?.latencies.push(...(await atRate(target, RATE_MS)));
    }
  }
  const a = totals.get(ours) ?? { requests: 0, cpu: 0, ms: 1, latencies: [] };
  const b = totals.get(bare) ?? { requests: 0, cpu: 0, ms: 1, latencies: [] };
  return {
    requestsPerSecond: (a.requests * 1_000) / a.ms,
    bareRequestsPerSecond: (b.requests * 1_000) / b.ms,
    cpuMicrosPerRequest: (a.cpu * 1e6) / a.requests,
    bareCpuMicrosPerRequest: (b.cpu * 1e6) / b.requests,
    latencyAtRate: spread(a.latencies),
    bareLatencyAtRate: spread(b.latencies),
  };
}

interface Case {
  readonly name: string;
  readonly webhook: string;
  readonly body: () => string;
}

/** The name's ending for a case whose every request has a spec no earlier one had. */
const EVERY_SPEC_NEW = ', every spec new';

/**
 * The review of each webhook, the same body every time as the issue asks; and, for the NATS
 * webhooks, one whose spec no earlier request had, so that none of the judgement's memos helps
 * (the API server sends a new object for every write, but the same spec for both webhooks and
 * for a re-apply).
 */
function cases(): Case[] {
  let trial = 0;
  const same = (webhook: string): Case => {
    const body = review(webhook);
    return { name: webhook, webhook, body: () => body };
  };
  const fresh = (webhook: string): Case => ({
    name: `${webhook}${EVERY_SPEC_NEW}`,
    webhook,
    body: () => review(webhook, trial++),
  });
  return [
    same('mutate-nats'),
    same('validate-nats'),
    same('protect-children'),
    fresh('mutate-nats'),
    fresh('validate-nats'),
  ];
}

export async function benchAdmission(rounds: number): Promise<AdmissionResult> {
  const ca = createCertificateAuthority('bench-ca', 1);
  const pem = issueCertificate(ca, {
    commonName: '127.0.0.1',
    ipAddresses: ['127.0.0.1'],
    usage: 'server',
    validDays: 1,
  });
  const manager = await startServer('manager', pem);
  const bare = await startServer('bare', pem);
  const agents = new Map([
    [manager, new Agent({ keepAlive: true, maxSockets: CONNECTIONS })],
    [bare, new Agent({ keepAlive: true, maxSockets: CONNECTIONS })],
  ]);
  const webhooks: Record<string, WebhookFigures> = {};
  try {
    for (const { name, webhook, body } of cases()) {
      const target = (server: Server): Target => ({
        server,
        agent: agents.get(server) ?? new Agent(),
        path: `/${webhook}`,
        body,
      });
      const figures = await measureWebhook(target(manager), target(bare), rounds);
      webhooks[name] = figures;
      log(
        `${name}: ${figures.requestsPerSecond.toFixed(0)} req/s vs bare ` +
          `${figures.bareRequestsPerSecond.toFixed(0)} (${ratio(figures.requestsPerSecond, figures.bareRequestsPerSecond)})`,
      );
    }
  } finally {
    for (const agent of agents.values()) agent.destroy();
    manager.child.kill();
    bare.child.kill();
  }
  return { rounds, webhooks };
}

export function admissionRows(result: AdmissionResult): Row[] {
  const rows: Row[] = [];
  for (const [webhook, f] of Object.entries(result.webhooks)) {
    // The targets are the issue's, for the same body every time.
    const targeted = !webhook.endsWith(EVERY_SPEC_NEW);
    rows.push({
      benchmark: '6 admission',
      figure: `${webhook} req/s (${String(CONNECTIONS)} conns)`,
      ours: f.requestsPerSecond,
      unit: 'req/s',
      floor: f.bareRequestsPerSecond,
      ...(targeted ? { target: '>= 0.90x bare' } : {}),
    });
    rows.push({
      benchmark: '6 admission',
      figure: `${webhook} server CPU per request`,
      ours: f.cpuMicrosPerRequest,
      unit: 'us',
      floor: f.bareCpuMicrosPerRequest,
    });
    rows.push({
      benchmark: '6 admission',
      figure: `${webhook} p99 at ${String(RATE_PER_S)} req/s`,
      ours: f.latencyAtRate.p99,
      unit: 'ms',
      floor: f.bareLatencyAtRate.p99,
      ...(targeted ? { target: '<= 2x bare' } : {}),
    });
  }
  return rows;
}
