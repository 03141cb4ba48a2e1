// What operators apply from deploy/ must be accepted by a real apiserver as it is: every overlay
// passes a server-side dry-run (cert-manager's and the Prometheus Operator's CRDs as fixtures),
// none holds a Namespace, and the committed release files are what kustomize renders.
import { readFileSync } from 'node:fs';
import { loadAll } from 'js-yaml';
import {
  kubectlKustomize,
  RELEASE_CR_FILE,
  RELEASE_MANAGER_FILE,
  renderRelease,
} from '../../src/manager/render-release.ts';
import { eventually, kubectl } from '../support/kube.ts';

const OVERLAYS = ['default', 'cert-manager', 'prometheus'];
const FIXTURES = ['test/fixtures/cert-manager-crds.yaml', 'test/fixtures/monitoring-crds.yaml'];

interface Rendered {
  kind: string;
  metadata: { name: string; namespace?: string };
}

function rendered(overlay: string): Rendered[] {
  return loadAll(kubectlKustomize(`deploy/overlays/${overlay}`)) as Rendered[];
}

/** `kind.group/name` as kubectl prints what it applied. */
function printed(object: Rendered & { apiVersion?: string }): string {
  const apiVersion = object.apiVersion ?? '';
  const group = apiVersion.includes('/') ? apiVersion.slice(0, apiVersion.indexOf('/')) : '';
  const kind = object.kind.toLowerCase();
  return `${group === '' ? kind : `${kind}.${group}`}/${object.metadata.name}`;
}

describe('deploy/ manifests', () => {
  beforeAll(async () => {
    // Namespaced objects are only dry-run checked when their namespace exists.
    await kubectl(['create', 'namespace', 'kyma-system']).catch((error: unknown) => {
      if (!String(error).includes('AlreadyExists')) throw error;
    });
    for (const fixture of FIXTURES) await kubectl(['apply', '--server-side', '-f', fixture]);
    for (const crd of ['certificates.cert-manager.io', 'podmonitors.monitoring.coreos.com']) {
      await eventually(`${crd} established`, async () => {
        const { stdout } = await kubectl([
          'get',
          'crd',
          crd,
          '-o',
          'jsonpath={.status.conditions[?(@.type=="Established")].status}',
        ]);
        return stdout === 'True' ? true : undefined;
      });
    }
  }, 60_000);

  it('the release files are what kustomize and the sample render (run `npm run release`)', () => {
    const release = renderRelease(kubectlKustomize);
    for (const file of [RELEASE_MANAGER_FILE, RELEASE_CR_FILE]) {
      expect(readFileSync(new URL(`../../${file}`, import.meta.url), 'utf8')).toBe(release[file]);
    }
  });

  it.each(OVERLAYS)(
    'overlay %s holds no Namespace; its objects are in kyma-system, the shoot-info Role in kube-system',
    (overlay) => {
      const objects = rendered(overlay);
      expect(objects.filter((o) => o.kind === 'Namespace')).toEqual([]);
      const cluster = new Set([
        'CustomResourceDefinition',
        'ClusterRole',
        'ClusterRoleBinding',
        'PriorityClass',
        'MutatingWebhookConfiguration',
        'ValidatingWebhookConfiguration',
      ]);
      for (const object of objects.filter((o) => !cluster.has(o.kind))) {
        expect([object.kind, object.metadata.name, object.metadata.namespace]).toEqual([
          object.kind,
          object.metadata.name,
          object.metadata.name === 'nats-manager-shoot-info' ? 'kube-system' : 'kyma-system',
        ]);
      }
    },
  );

  it.each(OVERLAYS)(
    'overlay %s passes a server-side dry-run, every object of it',
    async (overlay) => {
      const { stdout } = await kubectl([
        'apply',
        '--server-side',
        '--dry-run=server',
        '-k',
        `deploy/overlays/${overlay}`,
      ]);
      const applied = stdout.trim().split('\n');
      expect(applied.every((line) => line.endsWith('(server dry run)'))).toBe(true);
      const names = applied.map((line) => line.split(' ')[0]).sort();
      expect(names).toEqual(rendered(overlay).map(printed).sort());
    },
    60_000,
  );
});
