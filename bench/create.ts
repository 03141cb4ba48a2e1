// 2. Create -> all children exist, and create -> status written. Interleaved with a floor in the
// same run: a minimal controller in this process that, on the watch event of a new parent,
// applies the same rendered children all at once and then writes the parent once. The floor's
// parent is a ConfigMap (the manager's webhook admits only the NATS resource it serves); its
// children go through the same API server and the same admission webhooks (the manager's), so
// the ratio is what the manager adds to one watch event, one round of parallel applies and one
// write.
import type { Nats } from '../src/api/nats.ts';
import type { KubeObject } from '../src/base/object.ts';
import { isApiStatus } from '../src/kube/transport.ts';
import {
  childCollections,
  createNamespace,
  log,
  owned,
  FLOOR_PARENT,
  floorChildren,
  floorParent,
  natsObject,
  spawnManager,
  spread,
  until,
  watchCollection,
  type Bench,
  type Row,
  type Spread,
  type WatchEvent,
} from './lib.ts';

export interface CreateResult {
  readonly trials: number;
  readonly manager: { children: Spread; status: Spread };
  readonly floor: { children: Spread; status: Spread };
}

const NATS_PATH = (ns: string): string =>
  `/apis/operator.kyma-project.io/v1alpha1/namespaces/${ns}/nats`;
const CONFIGMAPS = (ns: string): string => `/api/v1/namespaces/${ns}/configmaps`;

interface Trial {
  children: number;
  status: number;
}

/** One way of creating a parent and having its children made: the manager's, or the floor's. */
interface Way {
  readonly namespace: string;
  readonly parent: KubeObject;
  readonly parentPath: string;
  /** The parent's watch event that carries the status written after the children. */
  written(event: WatchEvent): boolean;
}

function managerWay(namespace: string): Way {
  return {
    namespace,
    parent: natsObject(namespace),
    parentPath: NATS_PATH(namespace),
    written: (event) => (event.object as Nats).status?.state !== undefined,
  };
}

function floorWay(namespace: string): Way {
  return {
    namespace,
    parent: floorParent(namespace),
    parentPath: CONFIGMAPS(namespace),
    written: (event) =>
      event.object.metadata.name === FLOOR_PARENT &&
      (event.object.data as Record<string, string> | undefined)?.state !== undefined,
  };
}

/** Watches the way's namespace for the children and the status of one create. */
async function observe(
  bench: Bench,
  way: Way,
): Promise<{
  wait(started: number): Promise<Trial>;
  stop(): void;
}> {
  const added = new Map<string, number>();
  let status: number | undefined;
  const onEvent =
    (kind: string) =>
    (event: WatchEvent): void => {
      if (event.type === 'ADDED' && owned(event.object) && !added.has(kind)) {
        added.set(kind, event.at);
      }
      if (event.type === 'MODIFIED' && status === undefined && way.written(event)) {
        status = event.at;
      }
    };
  const paths = { ...childCollections(way.namespace), parent: way.parentPath };
  const watches = await Promise.all(
    Object.entries(paths).map(([kind, path]) => watchCollection(bench.admin, path, onEvent(kind))),
  );
  return {
    wait: async (started) => {
      await until('children and status', () => added.size >= 5 && status !== undefined, 30_000, 2);
      return { children: Math.max(...added.values()) - started, status: (status ?? 0) - started };
    },
    stop: () => {
      for (const watch of watches) watch.stop();
    },
  };
}

async function anyChildLeft(bench: Bench, namespace: string): Promise<boolean> {
  for (const path of Object.values(childCollections(namespace))) {
    const list = await bench.admin.list(path);
    if ((list.items ?? []).some(owned)) return true;
  }
  return false;
}

async function remove(bench: Bench, way: Way): Promise<void> {
  const path = `${way.parentPath}/${way.parent.metadata.name ?? ''}`;
  await bench.admin.request({ method: 'DELETE', path });
  await until(
    'parent gone',
    async () => {
      try {
        await bench.admin.request({ method: 'GET', path });
        return false;
      } catch (error) {
        if (isApiStatus(error, 404)) return true;
        throw error;
      }
    },
    60_000,
    20,
  );
  // The garbage collector follows; do not wait on its pace, a trial needs a clean namespace.
  for (const collection of Object.values(childCollections(way.namespace))) {
    const list = await bench.admin.list(collection);
    for (const item of (list.items ?? []).filter(owned)) {
      await bench.admin
        .request({ method: 'DELETE', path: `${collection}/${item.metadata.name ?? ''}` })
        .catch((error: unknown) => {
          if (!isApiStatus(error, 404)) throw error;
        });
    }
  }
  await until('children gone', async () => !(await anyChildLeft(bench, way.namespace)), 60_000, 20);
}

/** The floor: one watch event, every child applied at once, one write of the parent. */
async function startFloor(bench: Bench, namespace: string): Promise<{ stop(): void }> {
  return watchCollection(bench.admin, CONFIGMAPS(namespace), (event) => {
    if (event.type !== 'ADDED' || event.object.metadata.name !== FLOOR_PARENT) return;
    const parent = event.object;
    void Promise.all(
      floorChildren(parent).map((child) =>
        bench.admin.apply(child, { fieldManager: 'bench-floor' }),
      ),
    ).then(() =>
      bench.admin.patch(
        { apiVersion: 'v1', kind: 'ConfigMap', namespace, name: FLOOR_PARENT },
        { data: { state: 'Processing' } },
        { type: 'merge' },
      ),
    );
  });
}

async function trial(bench: Bench, way: Way): Promise<Trial> {
  const watch = await observe(bench, way);
  try {
    const started = Date.now();
    await bench.admin.create(way.parent);
    return await watch.wait(started);
  } finally {
    watch.stop();
    await remove(bench, way);
  }
}

export async function benchCreate(bench: Bench, trials: number): Promise<CreateResult> {
  const ours = managerWay('bench-create');
  const floors = floorWay('bench-create-floor');
  await bench.natsNamespace(ours.namespace);
  await createNamespace(bench.admin, floors.namespace);
  const manager = spawnManager(bench, { namespace: ours.namespace });
  const floor = await startFloor(bench, floors.namespace);
  const results = { ours: [] as Trial[], floor: [] as Trial[] };
  try {
    await manager.logged('watch caches synced');
    // One warm-up of each: the first create pays for connections and code paths once.
    for (let n = -1; n < trials; n++) {
      const mine = await trial(bench, ours);
      const theirs = await trial(bench, floors);
      if (n < 0) continue;
      results.ours.push(mine);
      results.floor.push(theirs);
      if (n % 10 === 9) log(`create trial ${String(n + 1)}/${String(trials)}`);
    }
  } finally {
    floor.stop();
    await manager.stop();
  }
  return {
    trials,
    manager: {
      children: spread(results.ours.map((t) => t.children)),
      status: spread(results.ours.map((t) => t.status)),
    },
    floor: {
      children: spread(results.floor.map((t) => t.children)),
      status: spread(results.floor.map((t) => t.status)),
    },
  };
}

export function createRows(result: CreateResult): Row[] {
  const rows: Row[] = [];
  for (const [what, key] of [
    ['all children', 'children'],
    ['status written', 'status'],
  ] as const) {
    for (const p of ['p50', 'p95', 'p99'] as const) {
      rows.push({
        benchmark: '2 create',
        figure: `create -> ${what} ${p}`,
        ours: result.manager[key][p],
        unit: 'ms',
        floor: result.floor[key][p],
        ...(key === 'children' && p === 'p50' ? { go: 93, target: '< 90 ms' } : {}),
      });
    }
  }
  return rows;
}
