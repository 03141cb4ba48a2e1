// On the embedded plane the manager runs as its service account, held to deploy/rbac, not as the
// plane's admin. The suite has a private plane: prepareEmbeddedPlane signs with LocalPlane.ca,
// which the shared plane does not hand to test workers, and the cluster-wide RBAC, namespaces and
// webhook configurations it installs are not for other suites.
import * as k8s from '@kubernetes/client-node';
import { clientFor, KubeApiError, requestJson, type KubeObject } from '../../src/kube/api.ts';
import type { Cluster } from '../../src/manager/cluster.ts';
import { startLocalPlane, type LocalPlane } from '../../src/localplane/plane.ts';
import { startAdmission } from '../../src/manager/admission.ts';
import { parseConfig } from '../../src/manager/config.ts';
import { prepareEmbeddedPlane } from '../../src/manager/embedded.ts';
import { jsonLogger } from '../../src/base/log.ts';

// Not the defaults, so that a namespace or account name left as in the manifests shows.
const config = parseConfig(
  [
    '--namespace=nats-ops',
    '--service-account=nats-operator',
    '--nats-cr-namespace=nats-data',
    '--webhook-port=0',
  ],
  {},
);
const MANAGER_NS = config.managerNamespace;
const NATS_NS = config.natsNamespace;
const NATS_PATH = `/apis/operator.kyma-project.io/v1alpha1/namespaces/${NATS_NS}/nats`;
const LEASES = (namespace: string): string =>
  `/apis/coordination.k8s.io/v1/namespaces/${namespace}/leases`;
const MERGE_PATCH = 'application/merge-patch+json';

interface Named {
  metadata: { name: string; resourceVersion: string };
}

describe('the manager identity on the embedded plane', () => {
  let plane: LocalPlane | undefined;
  let admin: k8s.KubeConfig;
  let cluster: Cluster;
  let manager: k8s.KubeConfig;

  beforeAll(async () => {
    // No controller manager: nothing here needs one, and the plane starts faster.
    plane = await startLocalPlane({ controllers: [], log: () => undefined });
    admin = new k8s.KubeConfig();
    admin.loadFromFile(plane.kubeconfigPath);
    cluster = { kc: admin, source: 'embedded', plane };
    manager = await prepareEmbeddedPlane(cluster, config);
  }, 120_000);

  afterAll(async () => {
    await plane?.stop();
  });

  async function expectForbidden(request: Promise<unknown>): Promise<void> {
    const error: unknown = await request.then(
      () => undefined,
      (thrown: unknown) => thrown,
    );
    expect(error).toBeInstanceOf(KubeApiError);
    expect((error as KubeApiError).status).toBe(403);
    expect((error as KubeApiError).message).toContain(config.managerUsername);
  }

  async function whoAmI(kc: k8s.KubeConfig): Promise<{ username: string; groups: string[] }> {
    const review = (await requestJson(kc, {
      method: 'POST',
      path: '/apis/authentication.k8s.io/v1/selfsubjectreviews',
      body: { apiVersion: 'authentication.k8s.io/v1', kind: 'SelfSubjectReview' },
    })) as { status: { userInfo: { username: string; groups?: string[] } } };
    return {
      username: review.status.userInfo.username,
      groups: [...(review.status.userInfo.groups ?? [])].sort(),
    };
  }

  it('is seen by the API server as the service account, with its groups', async () => {
    expect(config.managerUsername).toBe('system:serviceaccount:nats-ops:nats-operator');
    expect(await whoAmI(manager)).toEqual({
      username: config.managerUsername,
      groups: ['system:authenticated', 'system:serviceaccounts', 'system:serviceaccounts:nats-ops'],
    });
  });

  it('creates and patches a ConfigMap and a StatefulSet in the NATS namespace', async () => {
    const configMap = `/api/v1/namespaces/${NATS_NS}/configmaps`;
    await requestJson(manager, {
      method: 'POST',
      path: configMap,
      body: { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'eventing-nats-config' } },
    });
    const patchedConfigMap = (await requestJson(manager, {
      method: 'PATCH',
      path: `${configMap}/eventing-nats-config`,
      body: { data: { 'nats.conf': 'port: 4222' } },
      contentType: MERGE_PATCH,
    })) as { data?: Record<string, string> };
    expect(patchedConfigMap.data).toEqual({ 'nats.conf': 'port: 4222' });

    const statefulSets = `/apis/apps/v1/namespaces/${NATS_NS}/statefulsets`;
    const labels = { 'app.kubernetes.io/name': 'nats' };
    await requestJson(manager, {
      method: 'POST',
      path: statefulSets,
      body: {
        apiVersion: 'apps/v1',
        kind: 'StatefulSet',
        metadata: { name: 'eventing-nats' },
        spec: {
          replicas: 1,
          selector: { matchLabels: labels },
          serviceName: 'eventing-nats-headless',
          template: {
            metadata: { labels },
            spec: { containers: [{ name: 'nats', image: 'nats:2.14' }] },
          },
        },
      },
    });
    const patchedStatefulSet = (await requestJson(manager, {
      method: 'PATCH',
      path: `${statefulSets}/eventing-nats`,
      body: { spec: { replicas: 3 } },
      contentType: MERGE_PATCH,
    })) as { spec: { replicas: number } };
    expect(patchedStatefulSet.spec.replicas).toBe(3);
  });

  it('lists NATS resources and writes their status, but creates and deletes none', async () => {
    const nats: KubeObject = {
      apiVersion: 'operator.kyma-project.io/v1alpha1',
      kind: 'NATS',
      metadata: { name: 'eventing-nats', namespace: NATS_NS },
      spec: { cluster: { size: 3 } },
    };
    await expectForbidden(requestJson(manager, { method: 'POST', path: NATS_PATH, body: nats }));
    await requestJson(admin, { method: 'POST', path: NATS_PATH, body: nats });

    const list = (await requestJson(manager, {
      method: 'GET',
      path: '/apis/operator.kyma-project.io/v1alpha1/nats',
    })) as { items: Named[] };
    expect(list.items.map((item) => item.metadata.name)).toEqual(['eventing-nats']);

    const patched = (await requestJson(manager, {
      method: 'PATCH',
      path: `${NATS_PATH}/eventing-nats/status`,
      body: { status: { state: 'Processing' } },
      contentType: MERGE_PATCH,
    })) as { status?: { state?: string } };
    expect(patched.status?.state).toBe('Processing');

    await expectForbidden(
      requestJson(manager, { method: 'DELETE', path: `${NATS_PATH}/eventing-nats` }),
    );
  });

  it('gets and updates its leader-election Lease, only in its own namespace', async () => {
    const lease = {
      apiVersion: 'coordination.k8s.io/v1',
      kind: 'Lease',
      metadata: { name: config.leaderElectionId },
      spec: { holderIdentity: 'replica-a', leaseDurationSeconds: 15 },
    };
    await requestJson(manager, { method: 'POST', path: LEASES(MANAGER_NS), body: lease });
    const current = (await requestJson(manager, {
      method: 'GET',
      path: `${LEASES(MANAGER_NS)}/${config.leaderElectionId}`,
    })) as Named & { spec: Record<string, unknown> };
    const updated = (await requestJson(manager, {
      method: 'PUT',
      path: `${LEASES(MANAGER_NS)}/${config.leaderElectionId}`,
      body: { ...current, spec: { ...current.spec, holderIdentity: 'replica-b' } },
    })) as { spec: { holderIdentity: string } };
    expect(updated.spec.holderIdentity).toBe('replica-b');

    await expectForbidden(
      requestJson(manager, { method: 'POST', path: LEASES(NATS_NS), body: lease }),
    );
  });

  it('is refused what the ClusterRole does not grant', async () => {
    await expectForbidden(
      requestJson(manager, {
        method: 'POST',
        path: '/apis/rbac.authorization.k8s.io/v1/clusterroles',
        body: {
          apiVersion: 'rbac.authorization.k8s.io/v1',
          kind: 'ClusterRole',
          metadata: { name: 'nats-manager-escalated' },
          rules: [{ apiGroups: ['*'], resources: ['*'], verbs: ['*'] }],
        },
      }),
    );
    await expectForbidden(
      requestJson(manager, { method: 'DELETE', path: `/api/v1/namespaces/${NATS_NS}` }),
    );
    await expectForbidden(
      requestJson(manager, {
        method: 'POST',
        path: '/api/v1/namespaces/kube-system/serviceaccounts/default/token',
        body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenRequest', spec: {} },
      }),
    );
  });

  it('reads Secrets only in the NATS namespace, and only its own certificate Secret elsewhere', async () => {
    await requestJson(manager, { method: 'GET', path: `/api/v1/namespaces/${NATS_NS}/secrets` });
    for (const path of [
      '/api/v1/secrets',
      '/api/v1/namespaces/kube-system/secrets',
      `/api/v1/namespaces/${MANAGER_NS}/secrets`,
      `/api/v1/namespaces/${MANAGER_NS}/secrets/someone-elses`,
    ]) {
      await expectForbidden(requestJson(manager, { method: 'GET', path }));
    }
    // Children only where the NATS resource lives.
    await expectForbidden(
      requestJson(manager, {
        method: 'POST',
        path: `/api/v1/namespaces/${MANAGER_NS}/configmaps`,
        body: { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'not-a-child' } },
      }),
    );
    // Cluster-wide only the CRDs it needs, by name.
    await expectForbidden(
      requestJson(manager, {
        method: 'GET',
        path: '/apis/apiextensions.k8s.io/v1/customresourcedefinitions',
      }),
    );
    await requestJson(manager, {
      method: 'GET',
      path: '/apis/apiextensions.k8s.io/v1/customresourcedefinitions?fieldSelector=metadata.name%3Ddestinationrules.networking.istio.io',
    });
  });

  it('runs the admission side as the manager does on the embedded plane', async () => {
    const admission = await startAdmission({
      client: clientFor(manager),
      config,
      log: jsonLogger({}, () => undefined),
      offCluster: true,
    });
    try {
      // The certificate Secret the manager created in its namespace.
      const secret = (await requestJson(admin, {
        method: 'GET',
        path: `/api/v1/namespaces/${MANAGER_NS}/secrets/${config.certificateSecretName}`,
      })) as { type: string };
      expect(secret.type).toBe('kubernetes.io/tls');
      for (const kind of ['mutating', 'validating']) {
        const configuration = (await requestJson(admin, {
          method: 'GET',
          path: `/apis/admissionregistration.k8s.io/v1/${kind}webhookconfigurations/nats-manager-${kind}`,
        })) as { webhooks?: { clientConfig: { url?: string } }[] };
        const urls = (configuration.webhooks ?? []).map((webhook) => webhook.clientConfig.url);
        expect(urls.length).toBeGreaterThan(0);
        for (const url of urls) {
          expect(url).toMatch(new RegExp(`^https://127\\.0\\.0\\.1:${String(admission.port)}/`));
        }
      }
    } finally {
      await admission.close();
    }
  });

  // After the admission test: a re-run must not undo what the manager wrote into the webhook
  // configurations.
  it('changes nothing when run again, and the new identity is the same user', async () => {
    const paths = [
      `/api/v1/namespaces/${MANAGER_NS}`,
      `/api/v1/namespaces/${NATS_NS}`,
      `/api/v1/namespaces/${MANAGER_NS}/serviceaccounts/nats-operator`,
      '/apis/apiextensions.k8s.io/v1/customresourcedefinitions/nats.operator.kyma-project.io',
      '/apis/rbac.authorization.k8s.io/v1/clusterroles/nats-manager',
      '/apis/rbac.authorization.k8s.io/v1/clusterroles/nats-manager-nats-viewer',
      '/apis/rbac.authorization.k8s.io/v1/clusterroles/nats-manager-nats-editor',
      '/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/nats-manager',
      `/apis/rbac.authorization.k8s.io/v1/namespaces/${MANAGER_NS}/roles/nats-manager`,
      `/apis/rbac.authorization.k8s.io/v1/namespaces/${MANAGER_NS}/rolebindings/nats-manager`,
      `/apis/rbac.authorization.k8s.io/v1/namespaces/${NATS_NS}/roles/nats-manager-children`,
      `/apis/rbac.authorization.k8s.io/v1/namespaces/${NATS_NS}/rolebindings/nats-manager-children`,
      '/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/nats-manager-mutating',
      '/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/nats-manager-validating',
    ];
    const versions = async (): Promise<string[]> =>
      Promise.all(
        paths.map(
          async (path) =>
            ((await requestJson(admin, { method: 'GET', path })) as Named).metadata.resourceVersion,
        ),
      );
    const before = await versions();
    const again = await prepareEmbeddedPlane(cluster, config);
    expect(await versions()).toEqual(before);
    expect((await whoAmI(again)).username).toBe(config.managerUsername);
    expect((await whoAmI(manager)).username).toBe(config.managerUsername);
  });
});
