// The manager as a process (src/manager/main.ts) against a plane's kubeconfig, for the fault
// suites: its output, its ports, its pid for kill -9 and for its memory.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { eventually } from './kube.ts';
import { metricTotal } from './prometheus.ts';

const MAIN = new URL('../../src/manager/main.ts', import.meta.url).pathname;

export interface ManagerProcess {
  readonly child: ChildProcess;
  readonly pid: number;
  readonly output: () => string;
  readonly metricsPort: number;
  readonly probePort: number;
  /** The port of its admission webhooks. */
  readonly webhookPort: number;
  /** Resolves with the exit code (null after a signal). */
  readonly exited: Promise<number | null>;
}

export async function startManagerProcess(
  kubeconfigPath: string,
  args: readonly string[] = [],
  env: NodeJS.ProcessEnv = {},
): Promise<ManagerProcess> {
  const childEnv: NodeJS.ProcessEnv = { ...process.env, KUBECONFIG: kubeconfigPath, ...env };
  delete childEnv.KUBERNETES_SERVICE_HOST;
  const child = spawn(
    process.execPath,
    [
      '--no-warnings',
      MAIN,
      '--webhook-port=0',
      '--metrics-bind-address=127.0.0.1:0',
      '--health-probe-bind-address=127.0.0.1:0',
      ...args,
    ],
    { env: childEnv, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const exited = new Promise<number | null>((resolve) => {
    child.once('exit', (code) => {
      resolve(code);
    });
  });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const ports = await eventually(
    'the manager to serve its probes and webhooks',
    () => {
      if (child.exitCode !== null) throw new Error(`the manager exited early:\n${output}`);
      const probes =
        /"msg":"serving metrics and probes".*"metricsPort":(\d+),"probePort":(\d+)/.exec(output);
      const webhooks = /"msg":"admission webhooks serving".*"port":(\d+)/.exec(output);
      return probes === null || webhooks === null
        ? undefined
        : { metrics: Number(probes[1]), probe: Number(probes[2]), webhook: Number(webhooks[1]) };
    },
    60_000,
  );
  return {
    child,
    pid: child.pid ?? 0,
    output: () => output,
    metricsPort: ports.metrics,
    probePort: ports.probe,
    webhookPort: ports.webhook,
    exited,
  };
}

/** Kills with SIGKILL and waits for the exit. */
export async function killHard(manager: ManagerProcess): Promise<void> {
  if (manager.child.exitCode === null && manager.child.signalCode === null) {
    manager.child.kill('SIGKILL');
  }
  await manager.exited;
}

/** Resident set size in MiB, from /proc. */
export function rssMiB(pid: number): number {
  const line = readFileSync(`/proc/${String(pid)}/status`, 'utf8')
    .split('\n')
    .find((l) => l.startsWith('VmRSS:'));
  return Math.round(Number(/(\d+)/.exec(line ?? '')?.[1] ?? 0) / 1024);
}

export async function httpGet(
  port: number,
  path: string,
): Promise<{ status: number; body: string }> {
  const response = await fetch(`http://127.0.0.1:${String(port)}${path}`);
  return { status: response.status, body: await response.text() };
}

/** A gauge's value, or a counter summed over all its label sets, from a /metrics scrape. */
export async function metricSum(manager: ManagerProcess, name: string): Promise<number> {
  const { body } = await httpGet(manager.metricsPort, '/metrics');
  return metricTotal(body, name);
}

/** CPU seconds (user + system) the process has used so far, from /proc. */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${String(pid)}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // utime and stime are fields 14 and 15 of stat, 12 and 13 after the command name.
  return (Number(fields[11]) + Number(fields[12])) / 100;
}
