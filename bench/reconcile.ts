// What a reconcile of a converged NATS resource costs, three ways, side by side on a real local
// kube-apiserver:
//   local drift check   ours: compare the rendered children with the watch cache, send nothing
//   dry-run apply       ask the API server what an apply would change (one request per child)
//   apply always        upstream's way: server-side apply every child on every reconcile
// Prints time per reconcile and requests per reconcile, and the ratios to the drift check.
// Times are medians of interleaved rounds; the machine is small and noisy, compare ratios.
//
//   node bench/reconcile.ts [rounds]
import { findDrift } from '../src/controller/drift.ts';
import { FIELD_MANAGER } from '../src/controller/plan.ts';
import { applyObject, requestJson, type KubeObject } from '../src/kube/api.ts';
import { startLocalPlane } from '../src/localplane/plane.ts';
import { DEFAULT_IMAGES } from '../src/render/context.ts';
import { renderNats } from '../src/render/render.ts';
import { defaultNatsSpec } from '../src/api/defaults.ts';
import * as k8s from '@kubernetes/client-node';

const rounds = Number(process.argv[2] ?? 40);
const namespace = 'bench';

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? 0;
}

const plane = await startLocalPlane({ controllers: [] });
try {
  const kc = new k8s.KubeConfig();
  kc.loadFromFile(plane.kubeconfigPath);
  await requestJson(kc, {
    method: 'POST',
    path: '/api/v1/namespaces',
    body: { apiVersion: 'v1', kind: 'Namespace', metadata: { name: namespace } },
  });
  // The StatefulSet's PriorityClass is not needed: no controller creates pods here.
  const desired = renderNats(
    {
      name: 'eventing-nats',
      namespace,
      uid: '00000000-0000-4000-8000-000000000001',
      spec: defaultNatsSpec({ cluster: { size: 3 } }),
    },
    {
      istioPresent: false,
      systemAccountPassword: 'x'.repeat(60),
      images: DEFAULT_IMAGES,
      clusterDomain: 'cluster.local',
    },
  );
  // The state a watch cache holds after the first reconcile.
  const live: KubeObject[] = [];
  for (const object of desired) {
    live.push(await applyObject(kc, object, { fieldManager: FIELD_MANAGER }));
  }

  const ways: Record<string, { run: () => Promise<void>; requests: number; times: number[] }> = {
    'local drift check': {
      requests: 0,
      times: [],
      run: async () => {
        for (const [i, object] of desired.entries()) {
          const current = live[i];
          if (current !== undefined && findDrift(object, current, FIELD_MANAGER) !== undefined) {
            throw new Error(`unexpected drift in ${object.kind}`);
          }
        }
        await Promise.resolve();
      },
    },
    'dry-run apply': {
      requests: desired.length,
      times: [],
      run: async () => {
        for (const object of desired) {
          await applyObject(kc, object, { fieldManager: FIELD_MANAGER, dryRun: true });
        }
      },
    },
    'apply always': {
      requests: desired.length,
      times: [],
      run: async () => {
        for (const object of desired) {
          await applyObject(kc, object, { fieldManager: FIELD_MANAGER });
        }
      },
    },
  };

  for (let round = 0; round < rounds; round++) {
    for (const way of Object.values(ways)) {
      const started = performance.now();
      await way.run();
      way.times.push(performance.now() - started);
    }
  }

  const base = median(ways['local drift check']?.times ?? []);
  process.stdout.write(
    `reconcile of a converged NATS resource (${String(desired.length)} children), ` +
      `median of ${String(rounds)} interleaved rounds, kube-apiserver on loopback\n\n`,
  );
  process.stdout.write(
    `${'way'.padEnd(20)}${'ms/reconcile'.padStart(14)}${'requests'.padStart(10)}${'x drift check'.padStart(16)}\n`,
  );
  for (const [name, way] of Object.entries(ways)) {
    const ms = median(way.times);
    process.stdout.write(
      `${name.padEnd(20)}${ms.toFixed(3).padStart(14)}${String(way.requests).padStart(10)}` +
        `${(ms / base).toFixed(0).padStart(16)}\n`,
    );
  }
} finally {
  await plane.stop();
}
