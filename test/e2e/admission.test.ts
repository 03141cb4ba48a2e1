// The admission webhooks end to end, the way users meet them: kubectl against a real
// kube-apiserver that calls the running manager. The suite has a private plane, because the
// webhooks it installs (one NATS resource only, locked children) would change what every other
// suite on the shared plane sees.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { buildNatsCrd } from '../../src/api/crd.ts';
import { ensureCrd } from '../../src/kube/crd.ts';
import { startLocalPlane, type LocalPlane } from '../../src/localplane/plane.ts';
import * as k8s from '@kubernetes/client-node';
import { eventually } from '../support/kube.ts';

const run = promisify(execFile);
const MAIN = new URL('../../src/manager/main.ts', import.meta.url).pathname;
const DEPLOY_RBAC = new URL('../../deploy/rbac/', import.meta.url).pathname;

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
    await ensureCrd(kc, buildNatsCrd(), 'nats-manager-tests');
    await kubectl(['create', 'namespace', 'kyma-system']);
    await kubectl(['apply', '-f', DEPLOY_RBAC]);
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

  it('fills the defaults on apply, including the file-storage size the CRD schema cannot', async () => {
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
        fileStorage: { storageClassName: 'default', size: '1Gi' },
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
        jetStream: { fileStorage: { size: '5Gi' } },
      }),
    );
    expect(stderr).toContain('spec.cluster.size');
    expect(stderr).toContain('spec.jetStream.fileStorage.size');
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

  it('answers a server-side dry run with the defaulted object and stores nothing', async () => {
    const { stdout } = await kubectl(
      ['apply', '--dry-run=server', '-o', 'jsonpath={.spec.jetStream.fileStorage.size}', '-f', '-'],
      natsManifest('eventing-nats', 'kyma-system', { cluster: { size: 5 } }),
    );
    expect(stdout).toBe('1Gi');
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
    const manifest = natsManifest('eventing-nats', 'kyma-system', { cluster: { size: 3 } });
    const answers: string[] = [];
    const admit = async (): Promise<void> => {
      const { stdout } = await kubectl(
        [
          'apply',
          '--dry-run=server',
          '-o',
          'jsonpath={.spec.jetStream.fileStorage.size}',
          '-f',
          '-',
        ],
        manifest,
      );
      answers.push(stdout);
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
    // Only our mutating webhook sets the file-storage size: every request was answered by it.
    expect(answers.filter((a) => a !== '1Gi')).toEqual([]);
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
