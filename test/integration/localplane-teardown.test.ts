// A test run or `npm start` that dies without cleaning up (kill -9) must not leave etcd,
// kube-apiserver or the plane's temp dir behind.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { isAlive } from '../../src/localplane/reaper.ts';
import { eventually } from '../support/kube.ts';

describe('local plane teardown', () => {
  it('reaps every process and the temp dir when its owner is killed with SIGKILL', async () => {
    const script = fileURLToPath(new URL('../support/plane-owner.ts', import.meta.url));
    const owner = spawn(process.execPath, ['--no-warnings', script], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const firstLine = await new Promise<string>((resolve, reject) => {
      createInterface({ input: owner.stdout }).once('line', resolve);
      owner.once('exit', (code) => {
        reject(new Error(`plane owner exited early (${String(code)})`));
      });
    });
    const { dir, pids } = JSON.parse(firstLine) as { dir: string; pids: number[] };
    expect(pids).toHaveLength(2);
    expect(pids.every(isAlive)).toBe(true);
    expect(existsSync(dir)).toBe(true);

    owner.kill('SIGKILL');

    await eventually(
      'the plane to be reaped',
      () => (!pids.some(isAlive) && !existsSync(dir) ? true : undefined),
      20_000,
    );
  });
});
