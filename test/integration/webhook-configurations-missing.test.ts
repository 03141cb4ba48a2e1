// The manager starts when its webhook configurations were deleted: it creates them again when its
// RBAC allows, and otherwise keeps serving (and reconciling) and reports what is missing. A
// private plane, because the suite deletes cluster-wide webhook configurations and edits the
// manager's ClusterRole.
import * as k8s from '@kubernetes/client-node';
import { clientFor, KubeApiError, requestJson } from '../../src/kube/api.ts';
import { startLocalPlane, type LocalPlane } from '../../src/localplane/plane.ts';
import { startAdmission } from '../../src/manager/admission.ts';
import { parseConfig } from '../../src/manager/config.ts';
import { prepareEmbeddedPlane } from '../../src/manager/embedded.ts';
import { jsonLogger } from '../../src/base/log.ts';
import { metricTotal } from '../support/prometheus.ts';

const config = parseConfig(['--webhook-port=0', '--cert-check-interval=1'], {});
const VALIDATING = 'ValidatingWebhookConfiguration/nats-manager-validating';
const VALIDATING_PATH =
  '/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/nats-manager-validating';
const CLUSTER_ROLE_PATH = '/apis/rbac.authorization.k8s.io/v1/clusterroles/nats-manager';

interface Rule {
  apiGroups?: string[];
  resources?: string[];
  resourceNames?: string[];
  verbs: string[];
}

describe('the manager without its webhook configurations', () => {
  let plane: LocalPlane | undefined;
  let admin: k8s.KubeConfig;
  let manager: k8s.KubeConfig;

  beforeAll(async () => {
    plane = await startLocalPlane({ controllers: [], log: () => undefined });
    admin = new k8s.KubeConfig();
    admin.loadFromFile(plane.kubeconfigPath);
    manager = await prepareEmbeddedPlane({ kc: admin, source: 'embedded', plane }, config);
  }, 120_000);

  afterAll(async () => {
    await plane?.stop();
  });

  async function deleteValidating(): Promise<void> {
    await requestJson(admin, { method: 'DELETE', path: VALIDATING_PATH }).catch(
      (error: unknown) => {
        if (!(error instanceof KubeApiError && error.status === 404)) throw error;
      },
    );
  }

  async function validatingExists(): Promise<boolean> {
    return requestJson(admin, { method: 'GET', path: VALIDATING_PATH }).then(
      () => true,
      (error: unknown) => {
        if (error instanceof KubeApiError && error.status === 404) return false;
        throw error;
      },
    );
  }

  /** A second NATS resource: only the validating webhook refuses it. */
  async function createSecondNats(): Promise<unknown> {
    return requestJson(admin, {
      method: 'POST',
      path: `/apis/operator.kyma-project.io/v1alpha1/namespaces/${config.natsNamespace}/nats`,
      body: {
        apiVersion: 'operator.kyma-project.io/v1alpha1',
        kind: 'NATS',
        metadata: { name: 'other', namespace: config.natsNamespace },
        spec: {},
      },
    }).then(
      () => undefined,
      (error: unknown) => error,
    );
  }

  async function setCreateAllowed(allowed: boolean): Promise<void> {
    const role = (await requestJson(admin, { method: 'GET', path: CLUSTER_ROLE_PATH })) as {
      rules: Rule[];
    };
    const unnamedCreate = (rule: Rule): boolean =>
      rule.resourceNames === undefined &&
      rule.verbs.includes('create') &&
      (rule.resources ?? []).includes('validatingwebhookconfigurations');
    const rules = role.rules.filter((rule) => !unnamedCreate(rule));
    if (allowed) {
      rules.push({
        apiGroups: ['admissionregistration.k8s.io'],
        resources: ['mutatingwebhookconfigurations', 'validatingwebhookconfigurations'],
        verbs: ['create'],
      });
    }
    await requestJson(admin, { method: 'PUT', path: CLUSTER_ROLE_PATH, body: { ...role, rules } });
  }

  /** Writes the API server has served to webhook configurations, from its own metrics. */
  async function configurationWrites(): Promise<number> {
    const text = await clientFor(admin).request({ method: 'GET', path: '/metrics' });
    return metricTotal(
      String(text),
      'apiserver_request_total',
      (labels) =>
        /resource="(mutating|validating)webhookconfigurations"/.test(labels) &&
        /verb="(POST|PUT|PATCH|APPLY|DELETE)"/.test(labels),
    );
  }

  async function eventually(check: () => Promise<boolean>, ms: number): Promise<void> {
    const deadline = Date.now() + ms;
    while (!(await check())) {
      if (Date.now() > deadline) throw new Error('condition not met in time');
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }

  /** The admission side alone, collecting what it reports missing. */
  async function startReporting(options: { offCluster: boolean }): Promise<{
    admission: Awaited<ReturnType<typeof startAdmission>>;
    reports: (readonly string[])[];
  }> {
    const reports: (readonly string[])[] = [];
    const admission = await startAdmission({
      client: clientFor(manager),
      config,
      log: jsonLogger({}, () => undefined),
      offCluster: options.offCluster,
      onConfigurationsMissing: (missing) => reports.push(missing),
    });
    return { admission, reports };
  }

  it('creates the deleted configuration again, and its webhook refuses at once', async () => {
    await deleteValidating();
    const { admission, reports } = await startReporting({ offCluster: true });
    try {
      expect(await validatingExists()).toBe(true);
      expect(reports[0]).toEqual([]);
      const error = await createSecondNats();
      expect(error).toBeInstanceOf(KubeApiError);
      expect((error as KubeApiError).message).toContain('serves only one NATS resource');
      // The recheck (every second here) changes nothing that is in place, and sends no write:
      // the API server's own count of writes to webhook configurations stays where it was.
      const version = async (): Promise<string> =>
        (
          (await requestJson(admin, { method: 'GET', path: VALIDATING_PATH })) as {
            metadata: { resourceVersion: string };
          }
        ).metadata.resourceVersion;
      const before = await version();
      const writesBefore = await configurationWrites();
      await new Promise((resolve) => setTimeout(resolve, 2_500));
      expect(await version()).toBe(before);
      expect(await configurationWrites()).toBe(writesBefore);
    } finally {
      await admission.close();
    }
  }, 60_000);

  it('keeps serving when it may not create it, reports it, and creates it once allowed', async () => {
    await setCreateAllowed(false);
    await deleteValidating();
    const { admission, reports } = await startReporting({ offCluster: true });
    try {
      expect(reports[0]).toEqual([VALIDATING]);
      expect(await validatingExists()).toBe(false);
      // Retried on the certificate check interval: allowed again, it comes back.
      await setCreateAllowed(true);
      await eventually(validatingExists, 15_000);
      await eventually(() => Promise.resolve(reports.at(-1)?.length === 0), 5_000);
    } finally {
      await admission.close();
    }
  }, 60_000);

  // Last: the configuration it creates addresses the in-cluster Service, which the plane lacks.
  it('in a cluster, creates it again from deploy/ with the CA bundle', async () => {
    await deleteValidating();
    const { admission, reports } = await startReporting({ offCluster: false });
    try {
      expect(reports[0]).toEqual([]);
      const created = (await requestJson(admin, { method: 'GET', path: VALIDATING_PATH })) as {
        webhooks: { clientConfig: { service?: { name: string }; caBundle?: string } }[];
      };
      expect(created.webhooks.length).toBeGreaterThan(0);
      const caPem = admission.certificates.current().caPem;
      for (const webhook of created.webhooks) {
        expect(webhook.clientConfig.service?.name).toBe(config.webhookServiceName);
        expect(Buffer.from(webhook.clientConfig.caBundle ?? '', 'base64').toString()).toContain(
          caPem.trim(),
        );
      }
    } finally {
      await admission.close();
    }
  }, 60_000);

  // cert-manager's CA injector owns the bundle: the manager must not write it back.
  it('with --inject-ca-bundle=false leaves an existing configuration as it is', async () => {
    const before = (await requestJson(admin, { method: 'GET', path: VALIDATING_PATH })) as {
      metadata: { resourceVersion: string };
      webhooks: { clientConfig: { caBundle?: string } }[];
    };
    const injected = Buffer.from('-----BEGIN CERTIFICATE-----\ninjected\n').toString('base64');
    const patched = (await requestJson(admin, {
      method: 'PATCH',
      path: VALIDATING_PATH,
      contentType: 'application/json-patch+json',
      body: before.webhooks.map((_, index) => ({
        op: 'replace',
        path: `/webhooks/${String(index)}/clientConfig/caBundle`,
        value: injected,
      })),
    })) as { metadata: { resourceVersion: string } };
    const admission = await startAdmission({
      client: clientFor(manager),
      config: parseConfig(['--webhook-port=0', '--inject-ca-bundle=false'], {}),
      log: jsonLogger({}, () => undefined),
      offCluster: false,
    });
    try {
      const after = (await requestJson(admin, { method: 'GET', path: VALIDATING_PATH })) as {
        metadata: { resourceVersion: string };
        webhooks: { clientConfig: { caBundle?: string } }[];
      };
      expect(after.metadata.resourceVersion).toBe(patched.metadata.resourceVersion);
      for (const webhook of after.webhooks) expect(webhook.clientConfig.caBundle).toBe(injected);
    } finally {
      await admission.close();
    }
  }, 60_000);
});
