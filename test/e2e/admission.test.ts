// The admission webhooks end to end, the way users meet them: kubectl against a real
// kube-apiserver that calls the running manager. The suite has a private plane, because the
// webhooks it installs (one NATS resource only, locked children) would change what every other
// suite on the shared plane sees.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { buildNatsCrd } from '../../src/api/crd.ts';
import { clientFor } from '../../src/kube/api.ts';
import { ensureCrd } from '../../src/kube/crd.ts';
import { DEFAULT_OVERLAY, kubectlKustomize } from '../../src/manager/render-release.ts';
import { startLocalPlane, type LocalPlane } from '../../src/localplane/plane.ts';
import * as k8s from '@kubernetes/client-node';
import { loadAll } from 'js-yaml';
import { eventually } from '../support/kube.ts';
import { metricTotal } from '../support/prometheus.ts';

const run = promisify(execFile);
const MAIN = new URL('../../src/manager/main.ts', import.meta.url).pathname;
const RBAC_KINDS = ['ServiceAccount', 'ClusterRole', 'ClusterRoleBinding', 'Role', 'RoleBinding'];

/** The RBAC of the default overlay, its namespace filled in by kustomize, as one List. */
function deployedRbac(): string {
  const objects = loadAll(kubectlKustomize(DEFAULT_OVERLAY)) as { kind?: string }[];
  const items = objects.filter((o) => RBAC_KINDS.includes(o.kind ?? ''));
  return JSON.stringify({ apiVersion: 'v1', kind: 'List', items });
}

const MANAGER = 'system:serviceaccount:kyma-system:nats-manager';
const MANAGED = 'app.kubernetes.io/managed-by=nats-manager';

function natsManifest(name: string, namespace: string, spec: unknown): string {
  return JSON.stringify({
    apiVersion: 'operator.kyma-project.io/v1alpha1',
    kind: 'NATS',
    metadata: { name, namespace },
    spec,
  });
}

describe('admission webhooks through kubectl', () => {
  let plane: LocalPlane | undefined;
  let manager: ChildProcess | undefined;
  let managerOutput = '';

  async function kubectl(
    args: readonly string[],
    input?: string,
  ): Promise<{ stdout: string; stderr: string }> {
    if (plane === undefined) throw new Error('no plane');
    const child = run('kubectl', ['--kubeconfig', plane.kubeconfigPath, ...args], {
      encoding: 'utf8',
      // The API server's /metrics is several MB.
      maxBuffer: 64 * 1024 * 1024,
    });
    if (input !== undefined) child.child.stdin?.end(input);
    return child;
  }

  /** The error text kubectl prints when the request is refused. */
  async function refusal(args: readonly string[], input?: string): Promise<string> {
    try {
      await kubectl(args, input);
    } catch (error) {
      return (error as { stderr: string }).stderr;
    }
    throw new Error(`kubectl ${args.join(' ')} was not refused`);
  }

  beforeAll(async () => {
    // The built-in edit role is filled by kube-controller-manager's aggregation controller.
    plane = await startLocalPlane({
      controllers: ['clusterrole-aggregation'],
      log: () => undefined,
    });
    const kc = new k8s.KubeConfig();
    kc.loadFromFile(plane.kubeconfigPath);
    await ensureCrd(clientFor(kc), buildNatsCrd(), 'nats-manager-tests');
    await kubectl(['create', 'namespace', 'kyma-system']);
    await kubectl(['apply', '-f', '-'], deployedRbac());
    // jane may edit in kyma-system as far as RBAC goes; only the webhook stands in her way.
    await kubectl([
      'create',
      'rolebinding',
      'jane-edit',
      '-n',
      'kyma-system',
      '--clusterrole=edit',
      '--user=jane',
      '--user=breakglass',
    ]);

    const env: NodeJS.ProcessEnv = {
      ...process.env,
      KUBECONFIG: plane.kubeconfigPath,
      BREAK_GLASS_USERS: 'breakglass',
    };
    delete env.KUBERNETES_SERVICE_HOST;
    manager = spawn(
      process.execPath,
      [
        '--no-warnings',
        MAIN,
        '--webhook-port=0',
        '--cert-check-interval=1',
        // Free ports, so that no other manager a test runs can be in the way.
        '--metrics-bind-address=127.0.0.1:0',
        '--health-probe-bind-address=127.0.0.1:0',
      ],
      {
        env,
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    manager.stdout?.on('data', (chunk: Buffer) => (managerOutput += chunk.toString()));
    manager.stderr?.on('data', (chunk: Buffer) => (managerOutput += chunk.toString()));
    await eventually(
      'the webhooks to be served',
      () => (managerOutput.includes('admission webhooks serving') ? true : undefined),
      60_000,
    );
  }, 120_000);

  afterAll(async () => {
    manager?.kill('SIGTERM');
    await plane?.stop();
  });

  // As the Go manager: no file-storage size is persisted, so that one can be set later.
  it('fills the defaults on apply, and persists no file-storage size', async () => {
    const { stdout } = await kubectl(
      ['apply', '-f', '-'],
      natsManifest('eventing-nats', 'kyma-system', { cluster: { size: 3 } }),
    );
    expect(stdout).toContain('nats.operator.kyma-project.io/eventing-nats created');
    const { stdout: yaml } = await kubectl([
      'get',
      'nats',
      '-n',
      'kyma-system',
      'eventing-nats',
      '-o',
      'jsonpath={.spec}',
    ]);
    expect(JSON.parse(yaml)).toEqual({
      cluster: { size: 3 },
      jetStream: {
        memStorage: { enabled: true, size: '1Gi' },
        fileStorage: { storageClassName: 'default' },
      },
      logging: { debug: false, trace: false },
      resources: {
        limits: { cpu: '500m', memory: '1Gi' },
        requests: { cpu: '40m', memory: '64Mi' },
      },
    });
  });

  it('refuses an invalid spec at once, every violation with its field path', async () => {
    const stderr = await refusal(
      ['apply', '-f', '-'],
      natsManifest('eventing-nats', 'kyma-system', {
        cluster: { size: 1 },
        jetStream: { fileStorage: { storageClassName: 'fast' }, memStorage: { size: '1GB' } },
      }),
    );
    // A CEL rule, an immutable field and the schema's pattern, in one answer.
    expect(stderr).toContain('cannot be set to 1 if size was greater than 1');
    expect(stderr).toContain('fileStorage is immutable once it was set');
    expect(stderr).toContain('spec.jetStream.memStorage.size');
  });

  it('refuses a second NATS resource with the single-instance message', async () => {
    const stderr = await refusal(['apply', '-f', '-'], natsManifest('other', 'kyma-system', {}));
    expect(stderr).toContain(
      'metadata.name: Forbidden: the NATS Manager serves only one NATS resource, kyma-system/eventing-nats',
    );
  });

  it('prints warnings for risky but legal specs', async () => {
    const { stderr } = await kubectl(
      ['apply', '--dry-run=server', '-f', '-'],
      natsManifest('eventing-nats', 'kyma-system', {
        cluster: { size: 3 },
        jetStream: { memStorage: { size: '4Gi' }, fileStorage: { size: '1Gi' } },
      }),
    );
    expect(stderr).toMatch(/^Warning: .*spec\.jetStream\.memStorage\.size/m);
  });

  // The plane has no StorageClass at first; the resource leaves its class to the default.
  it('raises the file-storage size only where the StorageClass allows volume expansion', async () => {
    const raise = ['--type=merge', '-p', '{"spec":{"jetStream":{"fileStorage":{"size":"2Gi"}}}}'];
    const noDefault = await refusal([
      'patch',
      'nats',
      '-n',
      'kyma-system',
      'eventing-nats',
      ...raise,
    ]);
    expect(noDefault).toContain(
      'spec.jetStream.fileStorage.size: Forbidden: fileStorage is immutable once it was set: its size cannot be raised from 1Gi to 2Gi: the ' +
        "spec leaves the StorageClass to the cluster's default, and the cluster has none",
    );
    await kubectl(
      ['apply', '-f', '-'],
      JSON.stringify({
        apiVersion: 'storage.k8s.io/v1',
        kind: 'StorageClass',
        metadata: {
          name: 'standard',
          annotations: { 'storageclass.kubernetes.io/is-default-class': 'true' },
        },
        provisioner: 'example.com/fixed',
      }),
    );
    const fixed = await refusal(['patch', 'nats', '-n', 'kyma-system', 'eventing-nats', ...raise]);
    expect(fixed).toContain(
      'fileStorage is immutable once it was set: its size cannot be raised from 1Gi to 2Gi: StorageClass "standard" (of the cluster default) ' +
        'does not allow volume expansion (allowVolumeExpansion is not true), so the volume ' +
        'claims cannot grow',
    );
    await kubectl([
      'patch',
      'storageclass',
      'standard',
      '--type=merge',
      '-p',
      '{"allowVolumeExpansion":true}',
    ]);
    // Allowed now; a dry run, so that the manager grows nothing on this plane without a node.
    const { stdout } = await kubectl([
      'patch',
      'nats',
      '-n',
      'kyma-system',
      'eventing-nats',
      '--dry-run=server',
      '-o',
      'jsonpath={.spec.jetStream.fileStorage.size}',
      ...raise,
    ]);
    expect(stdout).toBe('2Gi');
  });

  it('answers a server-side dry run with the defaulted object and stores nothing', async () => {
    const { stdout } = await kubectl(
      ['apply', '--dry-run=server', '-o', 'jsonpath={.spec.cluster.size}', '-f', '-'],
      natsManifest('eventing-nats', 'kyma-system', { cluster: { size: 5 } }),
    );
    expect(stdout).toBe('5');
    const { stdout: size } = await kubectl([
      'get',
      'nats',
      '-n',
      'kyma-system',
      'eventing-nats',
      '-o',
      'jsonpath={.spec.cluster.size}',
    ]);
    expect(size).toBe('3');
  });

  it('drops no admission request while the certificate and its CA are replaced', async () => {
    if (plane === undefined) throw new Error('no plane');
    const apiserverLog = join(plane.dir, 'logs', 'kube-apiserver.log');
    const failedCalls = (): number =>
      readFileSync(apiserverLog, 'utf8')
        .split('\n')
        .filter((l) => l.includes('Failed calling webhook')).length;
    const failedBefore = failedCalls();
    const writesBefore = managerOutput.split('webhook certificate Secret written').length;
    // Only our webhooks refuse a second NATS resource: every refusal is an answer from them.
    const manifest = natsManifest('second-nats', 'kyma-system', { cluster: { size: 3 } });
    const BY_WEBHOOK = 'refused by the webhook';
    const answers: string[] = [];
    const admit = async (): Promise<void> => {
      try {
        await kubectl(['apply', '--dry-run=server', '-f', '-'], manifest);
        answers.push('accepted');
      } catch (error) {
        const { stderr } = error as { stderr: string };
        answers.push(stderr.includes('serves only one NATS resource') ? BY_WEBHOOK : stderr);
      }
    };

    await admit();
    // Losing the Secret means a new CA: the hardest rotation there is.
    await kubectl(['delete', 'secret', '-n', 'kyma-system', 'nats-manager-webhook-certs']);
    const rotatedAt = Date.now();
    while (managerOutput.split('webhook certificate Secret written').length === writesBefore) {
      if (Date.now() - rotatedAt > 30_000)
        throw new Error('the manager did not replace the Secret');
      await admit();
    }
    // Keep going until well after the new certificate is served.
    const until = Date.now() + 5_000;
    while (Date.now() < until) await admit();

    expect(answers.length).toBeGreaterThan(10);
    expect(answers.filter((a) => a !== BY_WEBHOOK)).toEqual([]);
    expect(failedCalls() - failedBefore).toBe(0);
  }, 60_000);

  describe('managed children', () => {
    // The running manager reconciles kyma-system/eventing-nats (applied above): its children
    // are real, created by the manager's own identity.
    beforeAll(async () => {
      await eventually('the manager to create the children', async () => {
        const { stdout } = await kubectl([
          'get',
          'configmap,secret,statefulset',
          '-n',
          'kyma-system',
          '-l',
          MANAGED,
          '-o',
          'name',
        ]);
        return stdout.trim().split('\n').length === 3 ? true : undefined;
      });
    });

    const EDIT_INSTEAD =
      /is managed by NATS kyma-system\/eventing-nats: (.*; )?edit the NATS resource instead/;
    const CONFIG_MAP = ['configmap', 'eventing-nats-config'];

    it.each([
      [
        'edit by merge patch',
        ['patch', ...CONFIG_MAP, '--type=merge', '-p', '{"data":{"a":"y"}}'],
        EDIT_INSTEAD,
      ],
      [
        'edit by JSON patch',
        [
          'patch',
          ...CONFIG_MAP,
          '--type=json',
          '-p',
          '[{"op":"add","path":"/data/x","value":"1"}]',
        ],
        EDIT_INSTEAD,
      ],
      [
        'removing the managed-by label',
        ['label', ...CONFIG_MAP, 'app.kubernetes.io/managed-by-'],
        EDIT_INSTEAD,
      ],
      ['deleting a child', ['delete', ...CONFIG_MAP], EDIT_INSTEAD],
      [
        'scaling the StatefulSet',
        ['scale', 'statefulset', 'eventing-nats', '--replicas=5'],
        /is managed by NATS kyma-system\/eventing-nats: set spec.cluster.size of the NATS resource instead/,
      ],
      [
        'squatting a child name',
        ['create', 'secret', 'generic', 'eventing-nats-secret', '--from-literal=a=b'],
        /"eventing-nats-secret" is reserved for NATS kyma-system\/eventing-nats/,
      ],
    ])('refuses %s by another user, naming the NATS resource', async (_, args, message) => {
      expect(await refusal(['--as', 'jane', '-n', 'kyma-system', ...args])).toMatch(message);
    });

    it.each([
      ['another managed-by value', { 'app.kubernetes.io/managed-by': 'someone-else' }],
      ['unrelated labels only', { team: 'jane' }],
    ])('refuses squatting a child name with %s', async (_, labels) => {
      const squatter = {
        apiVersion: 'v1',
        kind: 'ConfigMap',
        metadata: { name: 'eventing-nats-config', namespace: 'kyma-system', labels },
        data: { 'nats.conf': 'squatted' },
      };
      expect(
        await refusal(['--as', 'jane', 'create', '-f', '-'], JSON.stringify(squatter)),
      ).toMatch(/"eventing-nats-config" is reserved for NATS kyma-system\/eventing-nats/);
    });

    it("sends the guard webhook only objects bearing a child's name", async () => {
      // The API server's own count of calls to the guard entry (its matchConditions decide).
      const guardCalls = async (): Promise<number> =>
        metricTotal(
          (await kubectl(['get', '--raw', '/metrics'])).stdout,
          'apiserver_admission_webhook_request_total',
          (labels) => labels.includes('name="guard.children.nats.operator.kyma-project.io"'),
        );
      const before = await guardCalls();
      const unrelated = ['team-settings', 'eventing-nats-config-copy', 'nats'];
      for (const name of unrelated) {
        await kubectl(['--as', 'jane', '-n', 'kyma-system', 'create', 'configmap', name]);
      }
      expect(await guardCalls()).toBe(before);
      expect(
        await refusal([
          '--as',
          'jane',
          '-n',
          'kyma-system',
          'create',
          'configmap',
          'eventing-nats-config',
        ]),
      ).toMatch(/"eventing-nats-config" is reserved for NATS kyma-system\/eventing-nats/);
      expect(await guardCalls()).toBe(before + 1);
      await kubectl(['-n', 'kyma-system', 'delete', 'configmap', ...unrelated]);
    });

    it('lets the manager and the break-glass user change children; the manager undoes it', async () => {
      const nats = async (): Promise<string> =>
        (
          await kubectl([
            '-n',
            'kyma-system',
            'get',
            'configmap',
            'eventing-nats-config',
            '-o',
            'jsonpath={.data.nats\\.conf}',
          ])
        ).stdout;
      const rendered = await nats();
      for (const user of [MANAGER, 'breakglass']) {
        const { stderr } = await kubectl([
          '--as',
          user,
          '-n',
          'kyma-system',
          'patch',
          'configmap',
          'eventing-nats-config',
          '--type=merge',
          '-p',
          `{"data":{"nats.conf":"by ${user}"}}`,
        ]);
        if (user === 'breakglass') expect(stderr).toContain('break-glass UPDATE');
        await eventually('the manager to restore nats.conf', async () =>
          (await nats()) === rendered ? true : undefined,
        );
      }
    });
  });
});
