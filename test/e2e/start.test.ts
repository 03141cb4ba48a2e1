// `npm start` as a newcomer runs it: with nothing configured it brings up the embedded plane,
// prints a kubeconfig that kubectl can use, and leaves nothing behind on Ctrl-C. With KUBECONFIG
// it uses that cluster and starts no plane.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { isAlive } from '../../src/localplane/reaper.ts';
import { eventually, testKubeConfig } from '../support/kube.ts';

const run = promisify(execFile);
const MAIN = new URL('../../src/manager/main.ts', import.meta.url).pathname;
const SAMPLE = new URL('../../config/samples/nats.yaml', import.meta.url).pathname;

function startManager(env: NodeJS.ProcessEnv): { child: ChildProcess; output: () => string } {
  const child = spawn(process.execPath, ['--no-warnings', MAIN], {
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  return { child, output: () => output };
}

async function exited(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null) return child.exitCode;
  return new Promise((resolve) => child.once('exit', resolve));
}

function withoutCluster(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env.KUBECONFIG;
  delete env.KUBERNETES_SERVICE_HOST;
  return env;
}

describe('npm start', () => {
  it('runs on the embedded plane when no cluster is configured, and cleans up on SIGINT', async () => {
    const manager = startManager(withoutCluster());
    try {
      const kubeconfig = await eventually(
        'the kubeconfig line',
        () => /kubeconfig: (\S+)/.exec(manager.output())?.[1],
        120_000,
      );
      expect(manager.output()).toContain(`kubectl --kubeconfig ${kubeconfig} get`);
      expect(manager.output()).toMatch(/"source":"embedded".*"serverVersion":"v1\.36\.\d+"/);

      const { stdout } = await run('kubectl', [
        '--kubeconfig',
        kubeconfig,
        'get',
        'ns',
        '-o',
        'name',
      ]);
      expect(stdout).toContain('namespace/default');
      const crds = await run('kubectl', ['--kubeconfig', kubeconfig, 'get', 'crd', '-o', 'name']);
      expect(crds.stdout).toContain('nats.operator.kyma-project.io');

      // The sample, as the banner suggests: the manager (its service account) creates the
      // children and reports Processing (there is no kubelet to run the pods).
      await run('kubectl', ['--kubeconfig', kubeconfig, 'apply', '-f', SAMPLE]);
      await eventually('the sample reconciled', async () => {
        const { stdout: state } = await run('kubectl', [
          '--kubeconfig',
          kubeconfig,
          'get',
          'nats',
          '-n',
          'kyma-system',
          'eventing-nats',
          '-o',
          'jsonpath={.status.state}',
        ]);
        return state === 'Processing' ? true : undefined;
      });
      const children = await run('kubectl', [
        '--kubeconfig',
        kubeconfig,
        'get',
        'statefulset,service,configmap,secret,pdb',
        '-n',
        'kyma-system',
        '-l',
        'app.kubernetes.io/managed-by=nats-manager',
        '-o',
        'name',
      ]);
      expect(children.stdout.trim().split('\n')).toHaveLength(5);

      const planeDir = dirname(kubeconfig);
      const { stdout: pids } = await run('pgrep', ['-f', planeDir]);
      const planePids = pids.trim().split('\n').map(Number);
      expect(planePids.length).toBeGreaterThanOrEqual(3);

      manager.child.kill('SIGINT');
      expect(await exited(manager.child)).toBe(0);
      await eventually(
        'the plane to be gone',
        () => (planePids.some(isAlive) || existsSync(planeDir) ? undefined : true),
        20_000,
      );
    } finally {
      manager.child.kill('SIGKILL');
    }
  }, 180_000);

  it('uses the cluster KUBECONFIG names and starts no plane', async () => {
    // The shared plane, but anonymous: enough to connect, and the manager can change nothing
    // there (installing its webhooks would affect every other suite).
    const cluster = testKubeConfig().getCurrentCluster();
    const dir = mkdtempSync(join(tmpdir(), 'nats-manager-start-'));
    const kubeconfig = join(dir, 'kubeconfig');
    writeFileSync(
      kubeconfig,
      JSON.stringify({
        apiVersion: 'v1',
        kind: 'Config',
        clusters: [
          {
            name: 'plane',
            cluster: { server: cluster?.server, 'certificate-authority-data': cluster?.caData },
          },
        ],
        users: [{ name: 'anonymous', user: {} }],
        contexts: [{ name: 'plane', context: { cluster: 'plane', user: 'anonymous' } }],
        'current-context': 'plane',
      }),
    );
    const manager = startManager({ ...withoutCluster(), KUBECONFIG: kubeconfig });
    try {
      await eventually('the connected log line', () =>
        manager.output().includes('"msg":"connected"') ? true : undefined,
      );
      expect(manager.output()).toContain('"source":"kubeconfig"');
      expect(manager.output()).not.toContain('embedded local control plane');
    } finally {
      manager.child.kill('SIGTERM');
      await exited(manager.child);
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
