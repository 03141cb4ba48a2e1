// 5. Footprint: the manager's RSS (from /proc) and used V8 heap (its own metrics) after start,
// after its NATS resource converged, and after `unrelated` ConfigMaps and Secrets were created,
// half in the NATS namespace (where the manager watches its children) and half elsewhere. The
// floor: a bare Node process sampled at the same moments.
import { spawn } from 'node:child_process';
import {
  childrenExist,
  createNamespace,
  log,
  natsObject,
  rssMb,
  scrape,
  spawnManager,
  type Bench,
  type Row,
} from './lib.ts';

export interface Sample {
  readonly rssMb: number;
  readonly heapUsedMb: number;
  readonly bareNodeRssMb: number;
}

export interface FootprintResult {
  readonly unrelated: number;
  readonly afterStart: Sample;
  readonly afterConvergence: Sample;
  readonly afterUnrelated: Sample;
}

const SETTLE_MS = 3_000;

async function createUnrelated(
  bench: Bench,
  namespaces: readonly string[],
  count: number,
): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < count) {
      const i = next++;
      const namespace = namespaces[i % namespaces.length] ?? 'default';
      const name = `unrelated-${String(i)}`;
      const payload = { key: 'v'.repeat(200) };
      await bench.admin.create(
        i % 2 === 0
          ? { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name, namespace }, data: payload }
          : {
              apiVersion: 'v1',
              kind: 'Secret',
              metadata: { name, namespace },
              stringData: payload,
            },
      );
      if (i % 5_000 === 4_999) log(`${String(i + 1)} unrelated objects created`);
    }
  };
  await Promise.all(Array.from({ length: 16 }, worker));
}

export async function benchFootprint(bench: Bench, unrelated: number): Promise<FootprintResult> {
  const namespace = 'bench-footprint';
  const elsewhere = 'bench-footprint-other';
  await bench.natsNamespace(namespace);
  await createNamespace(bench.admin, elsewhere);
  const bare = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1 << 30)'], {
    stdio: 'ignore',
  });
  const manager = spawnManager(bench, { namespace });
  const sample = async (): Promise<Sample> => {
    await new Promise((resolve) => setTimeout(resolve, SETTLE_MS));
    const metrics = await scrape(manager.metricsPort);
    return {
      rssMb: rssMb(manager.pid),
      heapUsedMb: (metrics.get('nodejs_heap_size_used_bytes') ?? Number.NaN) / 2 ** 20,
      bareNodeRssMb: rssMb(bare.pid ?? 0),
    };
  };
  try {
    await manager.logged('watch caches synced');
    const afterStart = await sample();
    await bench.admin.create(natsObject(namespace));
    await manager.logged('status written');
    await childrenExist(bench, namespace);
    const afterConvergence = await sample();
    await createUnrelated(bench, [namespace, elsewhere], unrelated);
    const afterUnrelated = await sample();
    return { unrelated, afterStart, afterConvergence, afterUnrelated };
  } finally {
    bare.kill();
    await manager.stop();
  }
}

export function footprintRows(result: FootprintResult): Row[] {
  const rows: Row[] = [];
  for (const [label, s] of [
    ['after start', result.afterStart],
    ['after convergence', result.afterConvergence],
    [`after ${String(result.unrelated)} unrelated objects`, result.afterUnrelated],
  ] as const) {
    rows.push({
      benchmark: '5 footprint',
      figure: `RSS ${label}`,
      ours: s.rssMb,
      unit: 'MB',
      floor: s.bareNodeRssMb,
      ...(label === 'after convergence' ? { go: 55, target: '< 80 MB' } : {}),
    });
    rows.push({
      benchmark: '5 footprint',
      figure: `heap used ${label}`,
      ours: s.heapUsedMb,
      unit: 'MB',
    });
  }
  rows.push({
    benchmark: '5 footprint',
    figure: 'RSS growth with unrelated objects',
    ours:
      (100 * (result.afterUnrelated.rssMb - result.afterConvergence.rssMb)) /
      result.afterConvergence.rssMb,
    unit: '%',
    target: '< 10 %',
  });
  return rows;
}
