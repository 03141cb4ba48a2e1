// Child processes of the local control plane: each in its own process group (so one signal ends
// it and whatever it forked), output to a log file, pid recorded for the reaper.
import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, closeSync, existsSync, openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { signalGroup } from './reaper.ts';

export interface PlaneProcess {
  readonly name: string;
  readonly child: ChildProcess;
  readonly logFile: string;
  exited(): boolean;
}

export function startProcess(
  planeDir: string,
  name: string,
  bin: string,
  args: string[],
): PlaneProcess {
  const logFile = join(planeDir, 'logs', `${name}.log`);
  const fd = openSync(logFile, 'a');
  const child = spawn(bin, args, { detached: true, stdio: ['ignore', fd, fd], cwd: planeDir });
  closeSync(fd);
  if (child.pid === undefined) throw new Error(`could not start ${name} (${bin})`);
  appendFileSync(join(planeDir, 'pids'), `${String(child.pid)}\n`);
  let exited = false;
  child.on('exit', () => {
    exited = true;
  });
  return { name, child, logFile, exited: () => exited };
}

export function logTail(proc: PlaneProcess, lines = 25): string {
  if (!existsSync(proc.logFile)) return '';
  return readFileSync(proc.logFile, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
}

/** SIGTERM, then SIGKILL after the grace period; at once, as a crash, for a grace of 0. */
export async function stopProcess(proc: PlaneProcess, graceMs: number): Promise<void> {
  const pid = proc.child.pid;
  if (pid === undefined || proc.exited()) return;
  if (graceMs > 0) signalGroup(pid, 'SIGTERM');
  const deadline = Date.now() + graceMs;
  while (!proc.exited() && Date.now() < deadline) await sleep(50);
  signalGroup(pid, 'SIGKILL');
  const killDeadline = Date.now() + 5_000;
  while (!proc.exited() && Date.now() < killDeadline) await sleep(20);
}

/** How long a part of the plane may take to become ready. */
export const READY_TIMEOUT_MS = 90_000;

/** Polls `check` until it holds; fails early, with the log's tail, if the process exits. */
export async function waitUntil(
  proc: PlaneProcess,
  what: string,
  check: () => Promise<boolean>,
  timeoutMs = READY_TIMEOUT_MS,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastError = '';
  while (Date.now() < deadline) {
    if (proc.exited()) {
      throw new Error(`${proc.name} exited before ${what}; its log ends with:\n${logTail(proc)}`);
    }
    try {
      if (await check()) return;
    } catch (error) {
      lastError = error instanceof Error ? error.message : String(error);
    }
    await sleep(200);
  }
  throw new Error(
    `timed out waiting for ${what} (${lastError}); ${proc.name} log:\n${logTail(proc)}`,
  );
}
