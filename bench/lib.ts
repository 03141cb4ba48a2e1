// What every benchmark shares: the plane they run on, the manager process under test, figures
// read from /proc and from the API server's own metrics, and the statistics.
import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as k8s from '@kubernetes/client-node';
import { defaultNatsSpec } from '../src/api/defaults.ts';
import type { KubeObject } from '../src/base/object.ts';
import { DEFAULT_IMAGES } from '../src/render/context.ts';
import { renderNats } from '../src/render/render.ts';
import { createKubeClient, type KubeClient, type WatchResponse } from '../src/kube/client.ts';
import { DEFAULT_CONTROLLERS, startLocalPlane, type LocalPlane } from '../src/localplane/plane.ts';
import { parseConfig } from '../src/manager/config.ts';
import { prepareEmbeddedPlane } from '../src/manager/embedded.ts';
import {
  IMAGE_NODE_ENV,
  IMAGE_NODE_FLAGS,
  bundleManager,
} from '../src/localplane/manager-image.ts';
import { metricTotal } from '../test/support/prometheus.ts';

export const NATS_NAME = 'eventing-nats';
export const MAIN = new URL('../src/manager/main.ts', import.meta.url).pathname;
const BUNDLE = new URL('../dist/manager/main.mjs', import.meta.url).pathname;

export interface Bench {
  readonly plane: LocalPlane;
  /** The plane's admin (system:masters): what a user or a break-glass identity sends. */
  readonly admin: KubeClient;
  /** A kubeconfig for the manager's own identity, as the embedded plane gives it. */
  readonly managerKubeconfig: string;
  /** Served to the manager as break-glass, so the benchmarks can edit children directly. */
  readonly breakGlassGroup: string;
  /** Node's compile cache for the manager processes, as `npm start` keeps one. */
  readonly compileCache: string;
  /** What a manager process runs by default: the image's bundle, as production runs it. */
  readonly managerEntry: string;
  /** Node's flags for it: the image's, with the image's bundle. */
  readonly managerNodeArgs: readonly string[];
  /** The environment the image gives Node, with the image's bundle. */
  readonly managerNodeEnv: Readonly<Record<string, string>>;
  /** Creates `namespace` with the manager's Role for children in it, as deploy/ grants it. */
  natsNamespace(namespace: string): Promise<void>;
}

/** `entry`: the manager's entry point; the image's bundle (built here) unless given. */
export async function startBench(entry?: string): Promise<Bench> {
  // The garbage collector removes a deleted NATS resource's children between trials.
  const plane = await startLocalPlane({ controllers: DEFAULT_CONTROLLERS, node: false });
  const kc = new k8s.KubeConfig();
  kc.loadFromFile(plane.kubeconfigPath);
  const cluster = { kc, source: 'embedded', plane } as const;
  const managerKc = await prepareEmbeddedPlane(cluster, parseConfig([], {}));
  const managerKubeconfig = join(plane.dir, 'bench-manager.kubeconfig');
  writeFileSync(managerKubeconfig, managerKc.exportConfig(), { mode: 0o600 });
  return {
    plane,
    admin: createKubeClient(kc),
    managerKubeconfig,
    breakGlassGroup: 'system:masters',
    compileCache: join(plane.dir, 'compile-cache'),
    // Where `npm run bundle` writes it: beside src/, so its reads of deploy/ resolve.
    managerEntry: entry ?? (await bundleManager(BUNDLE)).file,
    managerNodeArgs: entry === undefined ? IMAGE_NODE_FLAGS : [],
    managerNodeEnv: entry === undefined ? IMAGE_NODE_ENV : {},
    natsNamespace: async (namespace) => {
      await prepareEmbeddedPlane(cluster, parseConfig([], { NATS_CR_NAMESPACE: namespace }));
    },
  };
}

// ---- statistics ----

export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const index = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[index] ?? Number.NaN;
}

export interface Spread {
  readonly n: number;
  readonly p50: number;
  readonly p95: number;
  readonly p99: number;
  readonly max: number;
}

export function spread(values: readonly number[]): Spread {
  return {
    n: values.length,
    p50: percentile(values, 50),
    p95: percentile(values, 95),
    p99: percentile(values, 99),
    max: percentile(values, 100),
  };
}

/** One line of the final table: what was measured, ours, what it is compared with, the ratio. */
export interface Row {
  readonly benchmark: string;
  readonly figure: string;
  readonly ours: number;
  readonly unit: string;
  /** In the same run: a physical floor or a bare reference. */
  readonly floor?: number;
  /** The Go manager's figure, from the measurements on this machine. */
  readonly go?: number;
  readonly target?: string;
}

export function ratio(a: number, b: number | undefined): string {
  if (b === undefined || !Number.isFinite(b) || b === 0) return '';
  return `${(a / b).toFixed(2)}x`;
}

function cell(value: number | undefined): string {
  if (value === undefined || Number.isNaN(value)) return '';
  return Math.abs(value) >= 100 ? value.toFixed(0) : value.toFixed(value >= 10 ? 1 : 2);
}

export function formatTable(rows: readonly Row[]): string {
  const header = [
    'benchmark',
    'figure',
    'ours',
    'unit',
    'floor',
    'x floor',
    'Go',
    'x Go',
    'target',
  ];
  const lines = rows.map((row) => [
    row.benchmark,
    row.figure,
    cell(row.ours),
    row.unit,
    cell(row.floor),
    ratio(row.ours, row.floor),
    cell(row.go),
    ratio(row.ours, row.go),
    row.target ?? '',
  ]);
  const widths = header.map((h, i) =>
    Math.max(h.length, ...lines.map((line) => line[i]?.length ?? 0)),
  );
  const format = (cells: readonly string[]): string =>
    cells.map((c, i) => (i < 2 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0))).join('  ');
  return [format(header), format(widths.map((w) => '-'.repeat(w))), ...lines.map(format)].join(
    '\n',
  );
}

// ---- the process under test ----

/** CPU seconds (user + system) a process used so far. */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${String(pid)}/stat`, 'utf8');
  // Fields after the command name, which is in parentheses and may hold spaces.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(fields[11]) + Number(fields[12]);
  return ticks / 100;
}

export function rssMb(pid: number): number {
  const status = readFileSync(`/proc/${String(pid)}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0) / 1024;
}

export interface ManagerProcess {
  readonly child: ChildProcess;
  readonly pid: number;
  /** Date.now() just before the process was spawned. */
  readonly spawnedAt: number;
  readonly metricsPort: number;
  readonly probePort: number;
  readonly webhookPort: number;
  /** The time (Date.now()) of the first log line whose msg is `msg`, once it came. */
  logged(msg: string, timeoutMs?: number): Promise<number>;
  stop(): Promise<void>;
}

let nextPort = 21_000;

export interface ManagerRun {
  readonly namespace: string;
  readonly extraEnv?: Readonly<Record<string, string>>;
  /** Node flags before the entry point; the bench's manager flags by default. */
  readonly nodeArgs?: readonly string[];
  /** The entry point; the bench's manager entry (the image's bundle) by default. */
  readonly entry?: string;
}

/** The manager as a process of its own, as `npm start` runs it with a KUBECONFIG. */
export function spawnManager(bench: Bench, run: ManagerRun): ManagerProcess {
  const metricsPort = nextPort++;
  const probePort = nextPort++;
  const webhookPort = nextPort++;
  const seen = new Map<string, number>();
  const waiters = new Map<string, ((at: number) => void)[]>();
  const spawnedAt = Date.now();
  const child = spawn(
    process.execPath,
    [
      ...(run.nodeArgs ?? (run.entry === undefined ? bench.managerNodeArgs : [])),
      '--no-warnings',
      run.entry ?? bench.managerEntry,
    ],
    {
      env: {
        ...process.env,
        KUBECONFIG: bench.managerKubeconfig,
        NATS_CR_NAMESPACE: run.namespace,
        METRICS_BIND_ADDRESS: `127.0.0.1:${String(metricsPort)}`,
        HEALTH_PROBE_BIND_ADDRESS: `127.0.0.1:${String(probePort)}`,
        WEBHOOK_PORT: String(webhookPort),
        BREAK_GLASS_GROUPS: bench.breakGlassGroup,
        // As `npm start` runs it (package.json): modules stripped and compiled once, then cached.
        NODE_COMPILE_CACHE: bench.compileCache,
        ...(run.entry === undefined ? bench.managerNodeEnv : {}),
        ...run.extraEnv,
      },
      stdio: ['ignore', 'ignore', 'pipe'],
    },
  );
  let buffered = '';
  child.stderr.setEncoding('utf8');
  // The managers' logs, for finding where a figure's time went; the figures never need them.
  const logFile = process.env.BENCH_MANAGER_LOG;
  child.stderr.on('data', (chunk: string) => {
    if (logFile !== undefined) appendFileSync(logFile, chunk);
    buffered += chunk;
    let newline = buffered.indexOf('\n');
    while (newline >= 0) {
      const line = buffered.slice(0, newline);
      buffered = buffered.slice(newline + 1);
      newline = buffered.indexOf('\n');
      let entry: { msg?: unknown; ts?: unknown } = {};
      try {
        entry = JSON.parse(line) as typeof entry;
      } catch {
        continue;
      }
      if (typeof entry.msg !== 'string' || seen.has(entry.msg)) continue;
      const at = typeof entry.ts === 'string' ? Date.parse(entry.ts) : Date.now();
      seen.set(entry.msg, at);
      for (const resolve of waiters.get(entry.msg) ?? []) resolve(at);
      waiters.delete(entry.msg);
    }
  });
  const exited = new Promise<void>((resolve) =>
    child.once('exit', () => {
      resolve();
    }),
  );
  return {
    child,
    pid: child.pid ?? 0,
    spawnedAt,
    metricsPort,
    probePort,
    webhookPort,
    logged: (msg, timeoutMs = 60_000) => {
      const at = seen.get(msg);
      if (at !== undefined) return Promise.resolve(at);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          reject(new Error(`the manager did not log "${msg}" within ${String(timeoutMs)} ms`));
        }, timeoutMs);
        const list = waiters.get(msg) ?? [];
        list.push((when) => {
          clearTimeout(timer);
          resolve(when);
        });
        waiters.set(msg, list);
      });
    },
    stop: async () => {
      if (child.exitCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}

/** One sample of a manager's metrics endpoint, by metric name (first series). */
export async function scrape(port: number): Promise<Map<string, number>> {
  const response = await fetch(`http://127.0.0.1:${String(port)}/metrics`);
  const text = await response.text();
  const values = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line.startsWith('#') || line === '') continue;
    const match = /^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (match?.[1] === undefined || values.has(match[1])) continue;
    values.set(match[1], Number(match[3]));
  }
  return values;
}

/** The sum over every series of one metric of a manager's metrics endpoint. */
export async function scrapeSum(port: number, name: string): Promise<number> {
  const response = await fetch(`http://127.0.0.1:${String(port)}/metrics`);
  return metricTotal(await response.text(), name);
}

export async function until(
  what: string,
  probe: () => Promise<boolean> | boolean,
  timeoutMs = 60_000,
  everyMs = 5,
): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await probe()) return Date.now();
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
}

// ---- watching what the API server sends ----

export interface WatchEvent {
  readonly type: string;
  readonly object: KubeObject;
  /** Date.now() when the line arrived. */
  readonly at: number;
}

/** A watch of `path` that tells every event to `onEvent` until `stop`. */
export async function watchCollection(
  client: KubeClient,
  path: string,
  onEvent: (event: WatchEvent) => void,
): Promise<{ stop(): void }> {
  const list = await client.list(path);
  const controller = new AbortController();
  const response: WatchResponse = await client.watch(path, {
    resourceVersion: list.metadata?.resourceVersion ?? '',
    timeoutSeconds: 3_600,
    signal: controller.signal,
  });
  response.setEncoding('utf8');
  let buffered = '';
  response.on('data', (chunk: string) => {
    const at = Date.now();
    buffered += chunk;
    let newline = buffered.indexOf('\n');
    while (newline >= 0) {
      const line = buffered.slice(0, newline);
      buffered = buffered.slice(newline + 1);
      newline = buffered.indexOf('\n');
      const event = JSON.parse(line) as { type: string; object: KubeObject };
      onEvent({ ...event, at });
    }
  });
  response.on('error', () => undefined);
  return {
    stop: () => {
      controller.abort();
    },
  };
}

/** Mutating requests the API server served so far, by resource, from its own metrics. */
export async function apiServerWrites(
  client: KubeClient,
  resources: ReadonlySet<string>,
): Promise<number> {
  const text = await client.request({ method: 'GET', path: '/metrics' });
  return metricTotal(typeof text === 'string' ? text : '', 'apiserver_request_total', (labels) => {
    const verb = /verb="(\w+)"/.exec(labels)?.[1] ?? '';
    const resource = /resource="([\w.]+)"/.exec(labels)?.[1] ?? '';
    return MUTATING_VERBS.has(verb) && resources.has(resource);
  });
}

const MUTATING_VERBS = new Set(['POST', 'PUT', 'PATCH', 'DELETE', 'APPLY', 'CREATE', 'UPDATE']);

export async function createNamespace(client: KubeClient, name: string): Promise<void> {
  await client.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name } });
}

export function natsObject(namespace: string): KubeObject {
  return {
    apiVersion: 'operator.kyma-project.io/v1alpha1',
    kind: 'NATS',
    metadata: { name: NATS_NAME, namespace },
    spec: { cluster: { size: 3 }, jetStream: { fileStorage: { size: '1Gi' } } },
  };
}

/** The children's collection paths in `namespace`, by kind. */
export function childCollections(namespace: string): Record<string, string> {
  return {
    ConfigMap: `/api/v1/namespaces/${namespace}/configmaps`,
    Secret: `/api/v1/namespaces/${namespace}/secrets`,
    Service: `/api/v1/namespaces/${namespace}/services`,
    StatefulSet: `/apis/apps/v1/namespaces/${namespace}/statefulsets`,
    PodDisruptionBudget: `/apis/policy/v1/namespaces/${namespace}/poddisruptionbudgets`,
  };
}

export function log(line: string): void {
  process.stderr.write(`[bench] ${line}\n`);
}

/** Whether the object has an owner: a NATS resource's child, not something else in the namespace. */
export function owned(object: KubeObject): boolean {
  const refs = object.metadata.ownerReferences;
  return Array.isArray(refs) && refs.length > 0;
}

export function resourceVersionOf(object: KubeObject): string {
  const rv = object.metadata.resourceVersion;
  return typeof rv === 'string' ? rv : '';
}

export const FLOOR_PARENT = 'floor-parent';

/**
 * The floors' stand-in for a NATS resource: the manager's webhook admits only the NATS it
 * serves, so a floor's children belong to a ConfigMap. Rendered exactly as the manager renders
 * a NATS resource of that uid, only the owner reference differs.
 */
export function floorChildren(parent: KubeObject): KubeObject[] {
  const namespace = parent.metadata.namespace ?? '';
  const uid = typeof parent.metadata.uid === 'string' ? parent.metadata.uid : '';
  const spec = natsObject(namespace).spec;
  const children = renderNats(
    { name: NATS_NAME, namespace, uid, spec: defaultNatsSpec(spec) },
    {
      istioPresent: false,
      systemAccountPassword: 'x'.repeat(60),
      images: DEFAULT_IMAGES,
      clusterDomain: 'cluster.local',
    },
  );
  const owner = { apiVersion: 'v1', kind: 'ConfigMap', name: FLOOR_PARENT, uid };
  return children.map((child) => ({
    ...child,
    metadata: { ...child.metadata, ownerReferences: [owner] },
  }));
}

export function floorParent(namespace: string): KubeObject {
  return {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: { name: FLOOR_PARENT, namespace },
    data: { spec: JSON.stringify(natsObject(namespace).spec) },
  };
}

/** Waits until a child of every kind exists in `namespace`. */
export async function childrenExist(bench: Bench, namespace: string): Promise<void> {
  await until(
    'children',
    async () => {
      for (const path of Object.values(childCollections(namespace))) {
        if ((await bench.admin.list(path)).items?.length === 0) return false;
      }
      return true;
    },
    30_000,
    50,
  );
}
