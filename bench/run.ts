// `npm run bench`: every benchmark of bench/README.md in one run on one local plane (etcd,
// kube-apiserver, kube-controller-manager; no node), side by side with its floor measured in the
// same run and the Go manager's recorded figures. Prints a table and writes the figures as JSON.
// Never a pass/fail test: the machines are small and shared, compare the ratios.
//
//   npm run bench [-- --only=startup,create,restore,idle,footprint,admission]
//                 [-- --quick]   fewer trials and a short idle window, for trying changes
//                 [-- --out=bench/results.json]
//                 [-- --entry=src/manager/main.ts]   run the manager from this entry point
//                                 instead of the image's bundle (built at the start of the run)
import { writeFileSync } from 'node:fs';
import { arch, cpus, release, totalmem } from 'node:os';
import { resolve } from 'node:path';
import { benchAdmission, admissionRows } from './admission.ts';
import { benchCreate, createRows } from './create.ts';
import { benchFootprint, footprintRows } from './footprint.ts';
import { benchIdle, idleRows } from './idle.ts';
import { MAIN, formatTable, log, startBench, type Row } from './lib.ts';
import { benchRestore, restoreRows } from './restore.ts';
import { benchStartup, startupRows, type StartVariant } from './startup.ts';

const args = process.argv.slice(2);
const option = (name: string): string | undefined =>
  args.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
const quick = args.includes('--quick');
const only = new Set(
  (option('only') ?? 'startup,create,restore,idle,footprint,admission').split(','),
);
const out = option('out') ?? new URL('./results.json', import.meta.url).pathname;

const machine = {
  cpus: cpus().length,
  cpuModel: cpus()[0]?.model ?? '',
  memoryGiB: Math.round(totalmem() / 2 ** 30),
  kernel: release(),
  arch: arch(),
  node: process.version,
};

const results: Record<string, unknown> = {};
const rows: Row[] = [];
const startedAt = new Date().toISOString();
log(`machine: ${JSON.stringify(machine)}`);

const entry = option('entry');
const bench = await startBench(entry === undefined ? undefined : resolve(entry));
try {
  if (only.has('startup')) {
    const variants: StartVariant[] = [
      // Without a compile cache: every module stripped of its types and compiled at start.
      { name: 'node main.ts', entry: MAIN, env: { NODE_DISABLE_COMPILE_CACHE: '1' } },
      // As `npm start` runs it: Node's compile cache keeps the stripped and compiled modules.
      {
        name: 'npm start (compile cache)',
        entry: MAIN,
        env: { NODE_COMPILE_CACHE: bench.compileCache },
      },
    ];
    // The bench's manager: as the image runs it (src/localplane/manager-image.ts), by default.
    variants.push({ name: entry ?? 'image bundle' });
    const result = await benchStartup(bench, quick ? 3 : 10, variants);
    results.startup = result;
    rows.push(...startupRows(result));
  }
  if (only.has('create')) {
    const result = await benchCreate(bench, quick ? 10 : 40);
    results.create = result;
    rows.push(...createRows(result));
  }
  if (only.has('restore')) {
    const result = await benchRestore(bench, quick ? 2 : 6);
    results.restore = result;
    rows.push(...restoreRows(result));
  }
  if (only.has('idle')) {
    const result = await benchIdle(bench, quick ? 30 : 300);
    results.idle = result;
    rows.push(...idleRows(result));
  }
  if (only.has('footprint')) {
    const result = await benchFootprint(bench, quick ? 2_000 : 20_000);
    results.footprint = result;
    rows.push(...footprintRows(result));
  }
  if (only.has('admission')) {
    const result = await benchAdmission(quick ? 3 : 10);
    results.admission = result;
    rows.push(...admissionRows(result));
  }
} finally {
  await bench.plane.stop();
}

const table = formatTable(rows);
process.stdout.write(`\n${table}\n`);
writeFileSync(out, `${JSON.stringify({ startedAt, machine, quick, rows, results }, null, 2)}\n`);
log(`figures written to ${out}`);
