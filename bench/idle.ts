// 4. Idle: a manager whose NATS resource is converged, left alone. Counted: the mutating requests
// the API server served for the resources the manager writes (from kube-apiserver's own
// apiserver_request_total) and the manager's CPU seconds. The floor in the same window: a bare
// Node process that only keeps its event loop alive. Without a node on this plane the NATS pods
// never run, so the resource stays Processing: the idle state measured is "converged, waiting
// for pods", the one in which the manager looks again on a timer.
import { spawn } from 'node:child_process';
import {
  apiServerWrites,
  childrenExist,
  cpuSeconds,
  log,
  scrapeSum,
  natsObject,
  spawnManager,
  type Bench,
  type Row,
} from './lib.ts';

export interface IdleResult {
  readonly seconds: number;
  /** Counted by the API server, for every resource the manager writes (anyone's writes). */
  readonly writes: number;
  /** Counted by the manager itself (nats_manager_writes_total). */
  readonly managerWrites: number;
  readonly managerCpuSeconds: number;
  readonly bareNodeCpuSeconds: number;
  /** Per 120 s, the window the Go manager's figure was taken over. */
  readonly managerCpuPer120s: number;
  readonly bareNodeCpuPer120s: number;
}

const WRITTEN = new Set([
  'configmaps',
  'secrets',
  'services',
  'statefulsets',
  'poddisruptionbudgets',
  'nats',
  'events',
  'mutatingwebhookconfigurations',
  'validatingwebhookconfigurations',
]);

export async function benchIdle(bench: Bench, seconds: number): Promise<IdleResult> {
  const namespace = 'bench-idle';
  await bench.natsNamespace(namespace);
  const manager = spawnManager(bench, { namespace });
  const bare = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1 << 30)'], {
    stdio: 'ignore',
  });
  try {
    await manager.logged('watch caches synced');
    await bench.admin.create(natsObject(namespace));
    await manager.logged('status written');
    await childrenExist(bench, namespace);
    // Past the first reconciles, the certificate work and the StatefulSet controller's writes.
    await new Promise((resolve) => setTimeout(resolve, 5_000));
    const writesBefore = await apiServerWrites(bench.admin, WRITTEN);
    const ownBefore = await scrapeSum(manager.metricsPort, 'nats_manager_writes_total');
    const cpuBefore = cpuSeconds(manager.pid);
    const bareBefore = cpuSeconds(bare.pid ?? 0);
    log(`idle for ${String(seconds)} s`);
    await new Promise((resolve) => setTimeout(resolve, seconds * 1_000));
    const managerCpuSeconds = cpuSeconds(manager.pid) - cpuBefore;
    const bareNodeCpuSeconds = cpuSeconds(bare.pid ?? 0) - bareBefore;
    const writes = (await apiServerWrites(bench.admin, WRITTEN)) - writesBefore;
    const managerWrites =
      (await scrapeSum(manager.metricsPort, 'nats_manager_writes_total')) - ownBefore;
    return {
      seconds,
      writes,
      managerWrites,
      managerCpuSeconds,
      bareNodeCpuSeconds,
      managerCpuPer120s: (managerCpuSeconds * 120) / seconds,
      bareNodeCpuPer120s: (bareNodeCpuSeconds * 120) / seconds,
    };
  } finally {
    bare.kill();
    await manager.stop();
  }
}

export function idleRows(result: IdleResult): Row[] {
  return [
    {
      benchmark: '4 idle',
      figure: `mutating requests (API server) in ${String(result.seconds)} s`,
      ours: result.writes,
      unit: 'requests',
      // The Go manager applies every child every 10 s.
      go: (result.seconds / 10) * 5,
      target: '0',
    },
    {
      benchmark: '4 idle',
      figure: `writes the manager sent in ${String(result.seconds)} s`,
      ours: result.managerWrites,
      unit: 'requests',
      target: '0',
    },
    {
      benchmark: '4 idle',
      figure: 'CPU per 120 s',
      ours: result.managerCpuPer120s,
      unit: 's',
      floor: result.bareNodeCpuPer120s,
      go: 0.38,
      target: '< 0.3 s',
    },
  ];
}
