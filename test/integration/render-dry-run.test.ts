// Every object of every render golden file is one the real kube-apiserver accepts, and stores as
// rendered: a server-side dry-run create must succeed and echo each rendered field unchanged
// (so quantities are already in the canonical form the apiserver would store).
import { readFileSync, readdirSync } from 'node:fs';
import { loadAll, load } from 'js-yaml';
import { findDrift } from '../../src/controller/drift.ts';
import { ensureCrd } from '../../src/kube/crd.ts';
import {
  KubeApiError,
  applyObject,
  clientFor,
  createObject,
  type KubeObject,
} from '../../src/kube/api.ts';
import {
  createTestNamespace,
  deleteTestNamespace,
  eventually,
  testKubeConfig,
} from '../support/kube.ts';

const GOLDEN_DIR = new URL('../golden/render/', import.meta.url);
const DESTINATION_RULE_CRD = new URL('../fixtures/destinationrule-crd.yaml', import.meta.url);

const goldenFiles = readdirSync(GOLDEN_DIR)
  .filter((file) => file.endsWith('.yaml'))
  .sort();

function goldenObjects(file: string): KubeObject[] {
  return loadAll(readFileSync(new URL(file, GOLDEN_DIR), 'utf8')).filter(
    (document): document is KubeObject => typeof document === 'object' && document !== null,
  );
}

async function installDestinationRuleCrd(kc: ReturnType<typeof testKubeConfig>): Promise<void> {
  // Apply is idempotent, so suites and earlier runs on this plane may have installed it already.
  await ensureCrd(
    clientFor(kc),
    load(readFileSync(DESTINATION_RULE_CRD, 'utf8')) as KubeObject,
    'nats-manager-tests',
  );
}

describe('rendered objects against the real apiserver (server-side dry run)', () => {
  const kc = testKubeConfig();
  let namespace = '';

  beforeAll(async () => {
    namespace = await createTestNamespace(kc, 'render-dry-run');
    await installDestinationRuleCrd(kc);
  });

  afterAll(async () => {
    if (namespace !== '') await deleteTestNamespace(kc, namespace);
  });

  it('has golden files to check', () => {
    expect(goldenFiles.length).toBeGreaterThan(0);
  });

  it.each(goldenFiles)('accepts every object of %s unchanged', async (file) => {
    for (const rendered of goldenObjects(file)) {
      const object = { ...rendered, metadata: { ...rendered.metadata, namespace } };
      const what = `${object.kind} ${object.metadata.name ?? '?'} of ${file}`;
      // Right after the CRD is Established, discovery can still miss the new kind for a moment.
      const created = await eventually(`the apiserver to accept ${what}`, async () => {
        try {
          return await createObject(kc, object, { dryRun: true });
        } catch (error) {
          if (error instanceof KubeApiError && error.status === 404) return undefined;
          throw new Error(`the apiserver rejected ${what}`, { cause: error });
        }
      });
      expect(created).toMatchObject(object);
    }
  });

  // What lets an idle reconcile skip every write: once applied, the stored object holds every
  // rendered field unchanged, and our managed fields are exactly what was rendered.
  it.each(goldenFiles)('finds no drift between %s and what the apiserver stored', async (file) => {
    const own = await createTestNamespace(kc, 'drift');
    try {
      for (const rendered of goldenObjects(file)) {
        const object = { ...rendered, metadata: { ...rendered.metadata, namespace: own } };
        const stored = await eventually(`${object.kind} applied`, async () => {
          try {
            return await applyObject(kc, object, { fieldManager: 'nats-manager' });
          } catch (error) {
            if (error instanceof KubeApiError && error.status === 404) return undefined;
            throw error;
          }
        });
        expect({ kind: object.kind, drift: findDrift(object, stored, 'nats-manager') }).toEqual({
          kind: object.kind,
          drift: undefined,
        });
        // A label no longer rendered is drift: the apply that follows removes it.
        const { labels = {} } = object.metadata as { labels?: Record<string, string> };
        const [dropped] = Object.keys(labels);
        if (dropped !== undefined) {
          const kept = Object.fromEntries(
            Object.entries(labels).filter(([key]) => key !== dropped),
          );
          const fewer = { ...object, metadata: { ...object.metadata, labels: kept } };
          expect(findDrift(fewer, stored, 'nats-manager')).toBe(`metadata.labels.${dropped}`);
        }
      }
    } finally {
      await deleteTestNamespace(kc, own);
    }
  });
});
