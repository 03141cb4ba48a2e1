// The manager as a process, under its service account, started after its validating webhook
// configuration was deleted and with no right to create it: it must not exit, must say what is
// missing, and must still reconcile (reverting edits the missing webhook would have refused).
// Once it may create the configuration, the running manager puts it back on its next check.
//
// A private plane: the suite deletes a cluster-wide webhook configuration and edits the
// manager's ClusterRole.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as k8s from '@kubernetes/client-node';
import { KubeApiError, requestJson } from '../../src/kube/api.ts';
import { startLocalPlane, type LocalPlane } from '../../src/localplane/plane.ts';
import { parseConfig } from '../../src/manager/config.ts';
import { prepareEmbeddedPlane } from '../../src/manager/embedded.ts';
import { eventually } from '../support/kube.ts';

const MAIN = new URL('../../src/manager/main.ts', import.meta.url).pathname;
const config = parseConfig([], {});
const NS = config.natsNamespace;
const VALIDATING_PATH =
  '/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/nats-manager-validating';
const CLUSTER_ROLE_PATH = '/apis/rbac.authorization.k8s.io/v1/clusterroles/nats-manager';
const MERGE_PATCH = 'application/merge-patch+json';

interface Rule {
  apiGroups?: string[];
  resources?: string[];
  resourceNames?: string[];
  verbs: string[];
}

interface Listed {
  items: { metadata: { name: string }; data?: Record<string, string> }[];
}

describe('the manager process without its validating webhook configuration', () => {
  let plane: LocalPlane | undefined;
  let admin: k8s.KubeConfig;
  let dir: string;
  let child: ChildProcess | undefined;
  let output = '';

  beforeAll(async () => {
    plane = await startLocalPlane({ controllers: [], log: () => undefined });
    admin = new k8s.KubeConfig();
    admin.loadFromFile(plane.kubeconfigPath);
    const manager = await prepareEmbeddedPlane({ kc: admin, source: 'embedded', plane }, config);
    dir = mkdtempSync(join(tmpdir(), 'nats-manager-identity-'));
    writeFileSync(join(dir, 'kubeconfig'), manager.exportConfig(), { mode: 0o600 });

    // The manager may not create webhook configurations, and the validating one is gone.
    await setCreateAllowed(false);
    await requestJson(admin, { method: 'DELETE', path: VALIDATING_PATH });
  }, 120_000);

  afterAll(async () => {
    if (child?.exitCode === null) {
      const running = child;
      const exit = new Promise((resolve) => running.once('exit', resolve));
      running.kill('SIGTERM');
      await exit;
    }
    await plane?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  async function setCreateAllowed(allowed: boolean): Promise<void> {
    const role = (await requestJson(admin, { method: 'GET', path: CLUSTER_ROLE_PATH })) as {
      rules: Rule[];
    };
    const rules = role.rules.filter(
      (rule) =>
        !(
          rule.resourceNames === undefined &&
          rule.verbs.includes('create') &&
          (rule.resources ?? []).includes('validatingwebhookconfigurations')
        ),
    );
    if (allowed) {
      rules.push({
        apiGroups: ['admissionregistration.k8s.io'],
        resources: ['mutatingwebhookconfigurations', 'validatingwebhookconfigurations'],
        verbs: ['create'],
      });
    }
    await requestJson(admin, { method: 'PUT', path: CLUSTER_ROLE_PATH, body: { ...role, rules } });
  }

  it('keeps running, reports what is missing, and still reverts a child edit', async () => {
    const env: NodeJS.ProcessEnv = { ...process.env, KUBECONFIG: join(dir, 'kubeconfig') };
    delete env.KUBERNETES_SERVICE_HOST;
    child = spawn(
      process.execPath,
      [
        '--no-warnings',
        MAIN,
        '--webhook-port=0',
        '--metrics-bind-address=127.0.0.1:0',
        '--health-probe-bind-address=127.0.0.1:0',
        '--cert-check-interval=1',
      ],
      { env, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));

    await eventually(
      'the watch caches to sync',
      () => (output.includes('"msg":"watch caches synced"') ? true : undefined),
      60_000,
    );
    expect(output).toContain('cannot put the webhook configuration in place');
    expect(output).toContain('ValidatingWebhookConfiguration/nats-manager-validating');

    // Created after the start: the Warning Event comes on a later check, once it exists.
    await requestJson(admin, {
      method: 'POST',
      path: `/apis/operator.kyma-project.io/v1alpha1/namespaces/${NS}/nats`,
      body: {
        apiVersion: 'operator.kyma-project.io/v1alpha1',
        kind: 'NATS',
        metadata: { name: config.natsName, namespace: NS },
        spec: {},
      },
    });

    const metricsPort = Number(/"metricsPort":(\d+)/.exec(output)?.[1]);
    const metrics = await (await fetch(`http://127.0.0.1:${String(metricsPort)}/metrics`)).text();
    expect(metrics).toContain(
      'nats_manager_webhook_configuration_missing{configuration="ValidatingWebhookConfiguration/nats-manager-validating"} 1',
    );

    const events = await eventually('the Warning Event', async () => {
      const list = (await requestJson(admin, {
        method: 'GET',
        path: `/api/v1/namespaces/${NS}/events`,
      })) as { items: { type: string; reason: string; message: string }[] };
      const found = list.items.filter((event) => event.reason === 'WebhookConfigurationMissing');
      return found.length > 0 ? found : undefined;
    });
    expect(events[0]?.type).toBe('Warning');
    expect(events[0]?.message).toContain('ValidatingWebhookConfiguration/nats-manager-validating');

    // Reconcile-only: an edit of a child gets through (no webhook refuses it) and is reverted.
    const configMaps = `/api/v1/namespaces/${NS}/configmaps`;
    const configMap = await eventually('the ConfigMap child', async () => {
      const list = (await requestJson(admin, {
        method: 'GET',
        path: `${configMaps}?labelSelector=app.kubernetes.io%2Fmanaged-by%3Dnats-manager`,
      })) as Listed;
      return list.items[0];
    });
    const original = configMap.data;
    await requestJson(admin, {
      method: 'PATCH',
      path: `${configMaps}/${configMap.metadata.name}`,
      body: { data: { 'nats.conf': 'port: 1' } },
      contentType: MERGE_PATCH,
    });
    await eventually('the ConfigMap edit to be reverted', async () => {
      const current = (await requestJson(admin, {
        method: 'GET',
        path: `${configMaps}/${configMap.metadata.name}`,
      })) as { data?: Record<string, string> };
      return JSON.stringify(current.data) === JSON.stringify(original) ? true : undefined;
    });

    // Still not created, and the manager still up.
    const missing = await requestJson(admin, { method: 'GET', path: VALIDATING_PATH }).then(
      () => undefined,
      (error: unknown) => error,
    );
    expect(missing).toBeInstanceOf(KubeApiError);
    expect((missing as KubeApiError).status).toBe(404);
    expect(child.exitCode).toBeNull();
  }, 120_000);

  it('creates the configuration once allowed, and its webhook then refuses a second NATS', async () => {
    await setCreateAllowed(true);
    await eventually('the validating configuration to be created', async () =>
      requestJson(admin, { method: 'GET', path: VALIDATING_PATH }).then(
        () => true,
        () => undefined,
      ),
    );
    // The API server's webhook cache picks the new configuration up within a moment.
    const refusal = await eventually('a second NATS resource to be refused', async () =>
      requestJson(admin, {
        method: 'POST',
        path: `/apis/operator.kyma-project.io/v1alpha1/namespaces/${NS}/nats?dryRun=All`,
        body: {
          apiVersion: 'operator.kyma-project.io/v1alpha1',
          kind: 'NATS',
          metadata: { name: 'other', namespace: NS },
          spec: {},
        },
      }).then(
        () => undefined,
        (error: unknown) => error,
      ),
    );
    expect(refusal).toBeInstanceOf(KubeApiError);
    expect((refusal as KubeApiError).message).toContain('serves only one NATS resource');
    expect(output).toContain('"msg":"webhook configurations trust the current CA"');
    expect(child?.exitCode).toBeNull();
  }, 60_000);
});
