// 3. Restore: every kind of out-of-band edit of the restore table and every deleted child, sent
// by a break-glass identity (so the protect webhook lets it through), until the watch shows the
// child exactly as before. The floor in the same run: a restorer in this process that, on the
// watch event, applies the rendered child back (one watch event plus one apply on loopback),
// on an identical set of children in a namespace of its own; trials interleaved.
import { refOf, type KubeObject } from '../src/base/object.ts';
import { isApiStatus } from '../src/kube/transport.ts';
import {
  childCollections,
  childrenExist,
  createNamespace,
  log,
  owned,
  resourceVersionOf,
  floorChildren,
  floorParent,
  natsObject,
  spawnManager,
  spread,
  watchCollection,
  type Bench,
  type Row,
  type Spread,
} from './lib.ts';

interface Edit {
  readonly name: string;
  readonly kind: string;
  readonly merge?: unknown;
  readonly json?: unknown[];
}

// The kinds of edit of the full-state restore test (test/integration/reconcile.test.ts).
const EDITS: readonly Edit[] = [
  {
    name: 'ConfigMap nats.conf changed',
    kind: 'ConfigMap',
    merge: { data: { 'nats.conf': 'port: 1\n' } },
  },
  { name: 'ConfigMap key added', kind: 'ConfigMap', merge: { data: { extra: 'x' } } },
  {
    name: 'ConfigMap label added',
    kind: 'ConfigMap',
    merge: { metadata: { labels: { extra: 'x' } } },
  },
  {
    name: 'ConfigMap ownerReference removed',
    kind: 'ConfigMap',
    json: [{ op: 'remove', path: '/metadata/ownerReferences' }],
  },
  { name: 'Secret key added', kind: 'Secret', merge: { data: { extra: 'eA==' } } },
  {
    name: 'Service port changed',
    kind: 'Service',
    json: [{ op: 'replace', path: '/spec/ports/0/port', value: 4223 }],
  },
  {
    name: 'Service selector added',
    kind: 'Service',
    merge: { spec: { selector: { extra: 'x' } } },
  },
  { name: 'StatefulSet replicas changed', kind: 'StatefulSet', merge: { spec: { replicas: 4 } } },
  {
    name: 'StatefulSet image changed',
    kind: 'StatefulSet',
    json: [{ op: 'replace', path: '/spec/template/spec/containers/0/image', value: 'nats:0.0.1' }],
  },
  {
    name: 'StatefulSet pod annotation added',
    kind: 'StatefulSet',
    merge: { spec: { template: { metadata: { annotations: { 'example.com/x': 'y' } } } } },
  },
  {
    name: 'PodDisruptionBudget maxUnavailable changed',
    kind: 'PodDisruptionBudget',
    merge: { spec: { maxUnavailable: 2 } },
  },
];
const ALLOCATED: Record<string, readonly string[]> = {
  Service: ['clusterIP', 'clusterIPs', 'ipFamilies', 'ipFamilyPolicy'],
};
const DELETES = ['ConfigMap', 'Secret', 'Service', 'StatefulSet', 'PodDisruptionBudget'];

export interface RestoreResult {
  readonly rounds: number;
  readonly manager: { all: Spread; edits: Spread; deletes: Spread; byCase: Record<string, number> };
  readonly floor: { all: Spread; edits: Spread; deletes: Spread };
}

/** What an out-of-band edit changes and a restore must put back; bookkeeping left out. */
function canonical(object: KubeObject): string {
  const metadata: Record<string, unknown> = { ...object.metadata };
  for (const key of [
    'resourceVersion',
    'managedFields',
    'generation',
    'uid',
    'creationTimestamp',
  ]) {
    metadata[key] = undefined;
  }
  const sorted = (value: unknown): unknown => {
    if (Array.isArray(value)) return value.map(sorted);
    if (typeof value !== 'object' || value === null) return value;
    return Object.fromEntries(
      Object.keys(value)
        .sort()
        .map((key) => [key, sorted((value as Record<string, unknown>)[key])]),
    );
  };
  // A list's items carry no apiVersion; the kind is known from the collection.
  return JSON.stringify(sorted({ ...object, apiVersion: undefined, metadata, status: undefined }));
}

interface Side {
  readonly namespace: string;
  /** The child of each kind as it should be. */
  readonly before: Map<string, string>;
  readonly names: Map<string, string>;
  /**
   * Resolves at the first event after the edit that shows `kind` as it should be: a creation
   * for a delete, else a change newer than `editedAt` (the edit's resourceVersion). An event of
   * an earlier write (the StatefulSet controller's status) arriving late is not a restore.
   */
  restored(kind: string, editedAt: number | 'deleted'): Promise<number>;
  stop(): void;
}

async function side(bench: Bench, namespace: string): Promise<Side> {
  const before = new Map<string, string>();
  const names = new Map<string, string>();
  const restores = new Map<string, { at: number; version: number; created: boolean }[]>();
  const waiters = new Map<string, () => void>();
  const collections = childCollections(namespace);
  for (const [kind, path] of Object.entries(collections)) {
    const list = await bench.admin.list(path);
    const child = (list.items ?? []).find((i) => owned(i));
    if (child === undefined) throw new Error(`no ${kind} in ${namespace}`);
    before.set(kind, canonical({ ...child, kind }));
    names.set(kind, child.metadata.name ?? '');
  }
  const watches = await Promise.all(
    Object.entries(collections).map(([kind, path]) =>
      watchCollection(bench.admin, path, (event) => {
        if (event.type === 'DELETED' || event.object.metadata.name !== names.get(kind)) return;
        const object = { ...event.object, kind };
        // Created again: that is the restore of a delete, and the state edits are judged by
        // from now on (a Secret created again has a new password).
        const created = event.type === 'ADDED';
        if (created) before.set(kind, canonical(object));
        else if (canonical(object) !== before.get(kind)) return;
        const version = Number(resourceVersionOf(event.object));
        (restores.get(kind) ?? restores.set(kind, []).get(kind))?.push({
          at: event.at,
          version,
          created,
        });
        waiters.get(kind)?.();
      }),
    ),
  );
  return {
    namespace,
    before,
    names,
    restored: (kind, editedAt) => {
      const found = (): number | undefined =>
        restores.get(kind)?.find((r) => (editedAt === 'deleted' ? r.created : r.version > editedAt))
          ?.at;
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          waiters.delete(kind);
          reject(new Error(`${kind} in ${namespace} not restored within 30 s`));
        }, 30_000);
        const check = (): void => {
          const at = found();
          if (at === undefined) return;
          clearTimeout(timer);
          waiters.delete(kind);
          restores.delete(kind);
          resolve(at);
        };
        waiters.set(kind, check);
        check();
      });
    },
    stop: () => {
      for (const watch of watches) watch.stop();
    },
  };
}

/** The floor's restorer: any event that is not its own write gets the child applied back. */
async function startFloor(bench: Bench, namespace: string): Promise<{ stop(): void }> {
  const parent = await bench.admin.create(floorParent(namespace));
  const desired = floorChildren(parent);
  const written = new Set<string>();
  const apply = async (child: KubeObject): Promise<void> => {
    const result = await bench.admin.apply(child, { fieldManager: 'bench-floor' });
    written.add(resourceVersionOf(result));
  };
  const replace = async (child: KubeObject, live: KubeObject, kind: string): Promise<void> => {
    const spec = { ...(child.spec as Record<string, unknown> | undefined) };
    const liveSpec = live.spec as Record<string, unknown> | undefined;
    // What Kubernetes allocated stays (a Service's cluster IPs).
    for (const field of ALLOCATED[kind] ?? []) {
      if (liveSpec?.[field] !== undefined) spec[field] = liveSpec[field];
    }
    const object = { ...child, ...(child.spec === undefined ? {} : { spec }) };
    const put = (resourceVersion: string): Promise<KubeObject> =>
      bench.admin.update({ ...object, metadata: { ...child.metadata, resourceVersion } });
    const result = await put(resourceVersionOf(live)).catch(async (error: unknown) => {
      // The StatefulSet controller wrote its status meanwhile: once more on the latest.
      if (!isApiStatus(error, 409)) throw error;
      const latest = await bench.admin.get(refOf(child));
      return put(latest === undefined ? '' : resourceVersionOf(latest));
    });
    written.add(resourceVersionOf(result));
  };
  await Promise.all(desired.map(apply));
  const watches = await Promise.all(
    Object.entries(childCollections(namespace)).map(([kind, collection]) =>
      watchCollection(bench.admin, collection, (event) => {
        const child = desired.find((d) => d.kind === kind);
        if (child === undefined || event.object.metadata.name !== child.metadata.name) return;
        if (written.has(resourceVersionOf(event.object))) return;
        // Status writes of the StatefulSet controller are no edit of ours to put back.
        if (
          event.type === 'MODIFIED' &&
          canonical({ ...event.object, kind }) === canonical(child)
        ) {
          return;
        }
        // A deleted child is created again; an edited one replaced whole in one write (an
        // apply alone would leave fields another manager added), as the manager does.
        const write = event.type === 'DELETED' ? apply(child) : replace(child, event.object, kind);
        write.catch((error: unknown) => {
          log(`floor apply failed: ${String(error)}`);
        });
      }),
    ),
  );
  return {
    stop: () => {
      for (const watch of watches) watch.stop();
    },
  };
}

async function edit(bench: Bench, target: Side, change: Edit): Promise<number> {
  const path = `${childCollections(target.namespace)[change.kind] ?? ''}/${target.names.get(change.kind) ?? ''}`;
  const started = Date.now();
  const edited = (await bench.admin.request({
    method: 'PATCH',
    path,
    body: change.json ?? change.merge,
    contentType:
      change.json === undefined ? 'application/merge-patch+json' : 'application/json-patch+json',
  })) as KubeObject;
  return (await target.restored(change.kind, Number(resourceVersionOf(edited)))) - started;
}

async function remove(bench: Bench, target: Side, kind: string): Promise<number> {
  const path = `${childCollections(target.namespace)[kind] ?? ''}/${target.names.get(kind) ?? ''}`;
  const started = Date.now();
  await bench.admin.request({ method: 'DELETE', path });
  return (await target.restored(kind, 'deleted')) - started;
}

type Pair = (
  name: string,
  into: 'edits' | 'deletes',
  run: (target: Side) => Promise<number>,
) => Promise<void>;

/** Every edit, then every delete, each on the manager's children and then on the floor's. */
async function oneRound(bench: Bench, pair: Pair): Promise<void> {
  for (const change of EDITS) {
    await pair(change.name, 'edits', (target) => edit(bench, target, change));
  }
  for (const kind of DELETES) {
    await pair(`${kind} deleted`, 'deletes', (target) => remove(bench, target, kind));
  }
}

export async function benchRestore(bench: Bench, rounds: number): Promise<RestoreResult> {
  const served = 'bench-restore';
  const floorNs = 'bench-restore-floor';
  await bench.natsNamespace(served);
  await createNamespace(bench.admin, floorNs);
  const manager = spawnManager(bench, { namespace: served });
  const floor = await startFloor(bench, floorNs);
  const byCase: Record<string, number[]> = {};
  const times = {
    manager: { edits: [] as number[], deletes: [] as number[] },
    floor: { edits: [] as number[], deletes: [] as number[] },
  };
  try {
    await manager.logged('watch caches synced');
    await bench.admin.create(natsObject(served));
    await manager.logged('status written');
    await childrenExist(bench, served);
    // Settled: the first reconciles and the StatefulSet controller's status writes are done.
    await new Promise((resolve) => setTimeout(resolve, 2_000));
    const ours = await side(bench, served);
    const floors = await side(bench, floorNs);
    try {
      const pair: Pair = async (name, into, run) => {
        const ms = await run(ours);
        times.manager[into].push(ms);
        (byCase[name] ??= []).push(ms);
        times.floor[into].push(await run(floors));
      };
      for (let round = 0; round < rounds; round++) {
        await oneRound(bench, pair);
        log(`restore round ${String(round + 1)}/${String(rounds)}`);
      }
    } finally {
      ours.stop();
      floors.stop();
    }
  } finally {
    floor.stop();
    await manager.stop();
  }
  const all = (t: { edits: number[]; deletes: number[] }): Spread =>
    spread([...t.edits, ...t.deletes]);
  return {
    rounds,
    manager: {
      all: all(times.manager),
      edits: spread(times.manager.edits),
      deletes: spread(times.manager.deletes),
      byCase: Object.fromEntries(Object.entries(byCase).map(([k, v]) => [k, spread(v).p50])),
    },
    floor: {
      all: all(times.floor),
      edits: spread(times.floor.edits),
      deletes: spread(times.floor.deletes),
    },
  };
}

export function restoreRows(result: RestoreResult): Row[] {
  const rows: Row[] = [];
  for (const p of ['p50', 'p95', 'p99'] as const) {
    rows.push({
      benchmark: '3 restore',
      figure: `edit or delete -> restored ${p} (n=${String(result.manager.all.n)})`,
      ours: result.manager.all[p],
      unit: 'ms',
      floor: result.floor.all[p],
      ...(p === 'p50'
        ? { go: 52, target: '< 25 ms' }
        : p === 'p99'
          ? { go: 148, target: '< 75 ms' }
          : {}),
    });
  }
  rows.push({
    benchmark: '3 restore',
    figure: 'edits only p50',
    ours: result.manager.edits.p50,
    unit: 'ms',
    floor: result.floor.edits.p50,
  });
  rows.push({
    benchmark: '3 restore',
    figure: 'deletes only p50',
    ours: result.manager.deletes.p50,
    unit: 'ms',
    floor: result.floor.deletes.p50,
  });
  return rows;
}
