// 1. Start-up: process start -> first API answer -> webhooks serving -> caches synced -> first
// NATS converged (every child exists, status written). Each trial starts a fresh manager process
// against a NATS resource that already exists in a namespace of its own: what a restart or a
// first install costs. Floors in the same run: a bare Node process, and Node loading the
// manager's module graph and nothing else.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import {
  childCollections,
  log,
  owned,
  MAIN,
  natsObject,
  spawnManager,
  until,
  spread,
  watchCollection,
  type Bench,
  type Row,
  type Spread,
} from './lib.ts';

/** One way of starting the manager. */
export interface StartVariant {
  readonly name: string;
  readonly entry?: string;
  readonly env?: Readonly<Record<string, string>>;
}

export interface StartupResult {
  readonly trials: number;
  /** Per variant, ms from spawn, per phase. */
  readonly variants: Record<string, Record<string, Spread>>;
  readonly bareNodeMs: Spread;
  readonly moduleGraphMs: Spread;
}

/** Spawn to exit of `node <args>`, in ms. */
async function timedNode(
  args: readonly string[],
  env: Readonly<Record<string, string>> = {},
): Promise<number> {
  const started = performance.now();
  const child = spawn(process.execPath, ['--no-warnings', ...args], {
    stdio: 'ignore',
    env: { ...process.env, ...env },
  });
  await new Promise((resolve) => child.once('exit', resolve));
  return performance.now() - started;
}

/** The modules main.ts imports at run time, so the graph is loaded exactly as at start. */
function moduleGraphScript(entry: string): string {
  const source = readFileSync(entry, 'utf8');
  const specifiers = [...source.matchAll(/^import (?!type )[^;]*?from '([^']+)';/gms)].map(
    (match) => match[1] ?? '',
  );
  const urls = specifiers.map((s) => (s.startsWith('.') ? new URL(s, `file://${entry}`).href : s));
  return `for (const u of ${JSON.stringify(urls)}) await import(u);`;
}

const PHASES: readonly [string, string][] = [
  ['first API answer', 'connected'],
  ['webhooks serving', 'admission webhooks serving'],
  ['caches synced', 'watch caches synced'],
  ['status written', 'status written'],
];

/** One start of the manager against a NATS resource waiting in a fresh namespace. */
async function startOnce(
  bench: Bench,
  namespace: string,
  variant: StartVariant,
): Promise<Record<string, number>> {
  await bench.natsNamespace(namespace);
  await bench.admin.create(natsObject(namespace));
  const seen = new Map<string, number>();
  const watches = await Promise.all(
    Object.entries(childCollections(namespace)).map(([kind, path]) =>
      watchCollection(bench.admin, path, (event) => {
        if (event.type === 'ADDED' && owned(event.object) && !seen.has(kind)) {
          seen.set(kind, event.at);
        }
      }),
    ),
  );
  const manager = spawnManager(bench, {
    namespace,
    ...(variant.entry === undefined ? {} : { entry: variant.entry }),
    ...(variant.env === undefined ? {} : { extraEnv: variant.env }),
  });
  const phases: Record<string, number> = {};
  try {
    for (const [name, msg] of PHASES)
      phases[name] = (await manager.logged(msg)) - manager.spawnedAt;
    await until('every child', () => seen.size === 5, 30_000, 5);
    phases['all children'] = Math.max(...seen.values()) - manager.spawnedAt;
  } finally {
    for (const watch of watches) watch.stop();
    await manager.stop();
  }
  return phases;
}

export async function benchStartup(
  bench: Bench,
  trials: number,
  variants: readonly StartVariant[],
): Promise<StartupResult> {
  const phases = new Map<string, Record<string, number[]>>();
  const bare: number[] = [];
  const graph: number[] = [];
  const script = moduleGraphScript(MAIN);
  // The compile cache of a variant that has one is warm, as after the first start.
  for (const variant of variants) {
    if (variant.env !== undefined) {
      await timedNode(['--input-type=module', '-e', script], variant.env);
    }
  }
  for (let trial = 0; trial < trials; trial++) {
    // Interleaved with the floors, so load on the machine hits all alike.
    bare.push(await timedNode(['-e', '0']));
    graph.push(await timedNode(['--input-type=module', '-e', script]));
    for (const [index, variant] of variants.entries()) {
      const result = await startOnce(
        bench,
        `bench-start-${String(trial)}-${String(index)}`,
        variant,
      );
      const into = phases.get(variant.name) ?? {};
      for (const [phase, ms] of Object.entries(result)) (into[phase] ??= []).push(ms);
      phases.set(variant.name, into);
      log(
        `start trial ${String(trial + 1)}/${String(trials)} (${variant.name}): ` +
          `children after ${String(result['all children']?.toFixed(0))} ms`,
      );
    }
  }
  return {
    trials,
    variants: Object.fromEntries(
      [...phases].map(([name, byPhase]) => [
        name,
        Object.fromEntries(Object.entries(byPhase).map(([k, v]) => [k, spread(v)])),
      ]),
    ),
    bareNodeMs: spread(bare),
    moduleGraphMs: spread(graph),
  };
}

export function startupRows(result: StartupResult): Row[] {
  const rows: Row[] = [
    {
      benchmark: '1 start-up',
      figure: 'main.ts module graph loaded (p50)',
      ours: result.moduleGraphMs.p50,
      unit: 'ms',
      floor: result.bareNodeMs.p50,
    },
  ];
  for (const [variant, phases] of Object.entries(result.variants)) {
    for (const [name] of PHASES) {
      rows.push({
        benchmark: '1 start-up',
        figure: `${variant}: ${name} (p50)`,
        ours: phases[name]?.p50 ?? Number.NaN,
        unit: 'ms',
      });
    }
    rows.push({
      benchmark: '1 start-up',
      figure: `${variant}: all children exist (p50)`,
      ours: phases['all children']?.p50 ?? Number.NaN,
      unit: 'ms',
      floor: result.bareNodeMs.p50,
      go: 730,
      target: '< 700 ms',
    });
  }
  return rows;
}
