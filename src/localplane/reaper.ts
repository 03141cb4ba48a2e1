// Runs detached beside a local control plane and tears it down when its owner dies without
// doing so itself (kill -9, a test runner interrupted mid-run, a crash): no etcd or
// kube-apiserver outlives the process that started it, and no temp dir is left behind.
//
// Usage: node reaper.ts <owner-pid> <plane-dir>. The plane dir's `pids` file lists the process
// groups to end, one pid per line. The reaper leaves quietly once the plane dir is gone, which is
// what an orderly stop does. A plane with a node also has its host changes undone (host.ts)
// before the directory goes: mounts under it must be gone first.
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { cleanupHost, readSnapshot, unlockNode } from './host.ts';

const POLL_MS = 500;
const GRACE_MS = 3_000;

// A killed owner can linger as a zombie until something reaps it; that counts as dead.
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = readFileSync(`/proc/${String(pid)}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return true;
  }
}

export function readPids(planeDir: string): number[] {
  const file = join(planeDir, 'pids');
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8')
    .split('\n')
    .map((line) => Number.parseInt(line, 10))
    .filter((pid) => Number.isInteger(pid) && pid > 0);
}

export function signalGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // Already gone.
  }
}

async function reap(planeDir: string): Promise<void> {
  const pids = readPids(planeDir).reverse();
  for (const pid of pids) signalGroup(pid, 'SIGTERM');
  const deadline = Date.now() + GRACE_MS;
  while (pids.some(isAlive) && Date.now() < deadline) await sleep(100);
  for (const pid of pids) signalGroup(pid, 'SIGKILL');
  const snapshot = readSnapshot(planeDir);
  if (snapshot !== undefined) cleanupHost(snapshot);
  unlockNode(planeDir);
  rmSync(planeDir, { recursive: true, force: true });
}

async function main(ownerPid: number, planeDir: string): Promise<void> {
  for (;;) {
    if (!existsSync(planeDir)) return;
    if (!isAlive(ownerPid)) {
      await reap(planeDir);
      return;
    }
    await sleep(POLL_MS);
  }
}

if (process.argv[1] !== undefined && import.meta.filename === process.argv[1]) {
  const [ownerPid, planeDir] = process.argv.slice(2);
  if (ownerPid === undefined || planeDir === undefined) {
    process.stderr.write('usage: reaper.ts <owner-pid> <plane-dir>\n');
    process.exit(2);
  }
  // Ctrl-C in the owner's terminal must not take the reaper down before it has reaped.
  process.on('SIGINT', () => undefined);
  process.on('SIGHUP', () => undefined);
  await main(Number.parseInt(ownerPid, 10), planeDir);
}
