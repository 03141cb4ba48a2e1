// What the image's esbuild bundle does to start-up and memory, against the TypeScript sources
// (Node strips the types at load time). Both run against the same local plane, alternately:
// process start -> the "watch caches synced" line, and RSS / heap at that moment.
// `node bench/bundle-start.ts [trials]` (after `npm run bundle`); prints a table, never fails.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as k8s from '@kubernetes/client-node';
import { startLocalPlane } from '../src/localplane/plane.ts';
import { parseConfig } from '../src/manager/config.ts';
import { prepareEmbeddedPlane } from '../src/manager/embedded.ts';
import { bundleManager } from '../src/localplane/manager-image.ts';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const trials = Number(process.argv[2] ?? '5');

interface Sample {
  readonly ms: number;
  readonly rssMb: number;
}

function rssMb(pid: number): number {
  const status = readFileSync(`/proc/${String(pid)}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 'NaN') / 1024;
}

function runOnce(entry: string, kubeconfig: string): Promise<Sample> {
  const started = performance.now();
  const child = spawn(
    process.execPath,
    [
      entry,
      '--metrics-bind-address=127.0.0.1:0',
      '--health-probe-bind-address=127.0.0.1:0',
      '--webhook-port=0',
    ],
    { env: { ...process.env, KUBECONFIG: kubeconfig }, stdio: ['ignore', 'ignore', 'pipe'] },
  );
  return new Promise((resolve, reject) => {
    let out = '';
    child.stderr.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      if (out.includes('watch caches synced')) {
        const sample = { ms: performance.now() - started, rssMb: rssMb(child.pid ?? 0) };
        child.kill('SIGKILL');
        resolve(sample);
      }
    });
    child.on('exit', (code) => {
      reject(new Error(`manager exited (${String(code)}) before syncing:\n${out}`));
    });
  });
}

const median = (values: number[]): number =>
  [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? NaN;

const bundle = await bundleManager(join(ROOT, 'dist/manager/main.mjs'));
const plane = await startLocalPlane({ node: false });
try {
  const kc = new k8s.KubeConfig();
  kc.loadFromFile(plane.kubeconfigPath);
  const managerKc = await prepareEmbeddedPlane(
    { kc, source: 'embedded', plane },
    parseConfig([], {}),
  );
  const kubeconfig = join(plane.dir, 'manager.kubeconfig');
  const { writeFileSync } = await import('node:fs');
  writeFileSync(kubeconfig, managerKc.exportConfig(), { mode: 0o600 });
  const variants = { sources: join(ROOT, 'src/manager/main.ts'), bundle: bundle.file };
  const samples: Record<string, Sample[]> = { sources: [], bundle: [] };
  for (let i = 0; i < trials; i++) {
    for (const [name, entry] of Object.entries(variants))
      samples[name]?.push(await runOnce(entry, kubeconfig));
  }
  console.log(
    `node ${process.version}, ${String(trials)} trials each, bundle ${String(Math.round(bundle.bytes / 1024))} KiB`,
  );
  console.log('variant   start->synced p50 (ms)   RSS at synced p50 (MB)');
  for (const [name, list] of Object.entries(samples)) {
    console.log(
      `${name.padEnd(9)} ${median(list.map((s) => s.ms))
        .toFixed(0)
        .padStart(10)}   ${median(list.map((s) => s.rssMb))
        .toFixed(1)
        .padStart(22)}`,
    );
  }
} finally {
  await plane.stop();
}
