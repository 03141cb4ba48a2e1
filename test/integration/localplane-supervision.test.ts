// A plane people use by hand restarts what they kill, as a kubelet restarts static pods: the
// manager then meets a real API server restart, and everything still ends with stop().
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { startLocalPlane, type LocalPlane } from '../../src/localplane/plane.ts';
import { eventually } from '../support/kube.ts';
import { planePids } from '../support/plane-processes.ts';

const run = promisify(execFile);

async function kubectlWorks(plane: LocalPlane): Promise<boolean> {
  try {
    await run('kubectl', ['--kubeconfig', plane.kubeconfigPath, 'get', 'ns', 'default']);
    return true;
  } catch {
    return false;
  }
}

describe('local plane with restartOnExit', () => {
  it('starts a killed kube-apiserver and etcd again, and stop() still ends everything', async () => {
    const lines: string[] = [];
    const plane = await startLocalPlane({
      controllers: [],
      restartOnExit: true,
      log: (line) => lines.push(line),
    });
    try {
      for (const binary of ['kube-apiserver', 'etcd']) {
        const [pid] = await planePids(plane.dir, binary);
        expect(pid).toBeDefined();
        process.kill(pid ?? 0, 'SIGKILL');
        const killed = Date.now();
        await eventually(
          `${binary} back`,
          async () => {
            const [next] = await planePids(plane.dir, binary);
            return next !== undefined && next !== pid && (await kubectlWorks(plane))
              ? true
              : undefined;
          },
          60_000,
        );
        process.stdout.write(
          `[localplane] ${binary} killed; the plane answered again after ${String(Date.now() - killed)} ms\n`,
        );
        await eventually(`the plane to say ${binary} is back`, () =>
          lines.includes(`${binary} is back`) ? true : undefined,
        );
      }
    } finally {
      await plane.stop();
    }
    expect(await planePids(plane.dir, 'kube-apiserver')).toEqual([]);
    expect(await planePids(plane.dir, 'etcd')).toEqual([]);
  }, 120_000);
});
