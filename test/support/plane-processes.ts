// Finding a plane's own processes, to kill or inspect them in fault tests.
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/**
 * Pids of the processes running `binary` with `planeDir` in their arguments, lowest first.
 * Matched on the program itself, not on the whole command line: kube-apiserver's names etcd
 * (`--etcd-servers`), and once pids wrap a restarted API server can be the lower of the two.
 */
export async function planePids(planeDir: string, binary: string): Promise<number[]> {
  let stdout: string;
  try {
    ({ stdout } = await run('pgrep', ['-f', planeDir]));
  } catch {
    return []; // pgrep exits 1 when nothing matches
  }
  return stdout
    .split('\n')
    .filter(Boolean)
    .map(Number)
    .filter((pid) => {
      try {
        const [program] = readFileSync(`/proc/${String(pid)}/cmdline`, 'utf8').split('\0');
        return program !== undefined && basename(program) === binary;
      } catch {
        return false; // it ended between pgrep and the read
      }
    });
}
