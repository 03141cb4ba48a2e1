// What the local node changes on the host, and how it is put back. A real kubelet and containerd
// mount, create cgroups, network namespaces, a bridge and veths, add nftables/iptables rules and
// set sysctls. Before the node starts, the host's state is recorded in <plane>/node/host.json;
// cleanupHost() puts every one of those things back. It is synchronous and idempotent, so the
// reaper (after kill -9 of the owner) and an exit handler can run it as well as stop().
import { spawnSync } from 'node:child_process';
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  rmdirSync,
  rmSync,
  statSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { missingNodePackages } from './debian-packages.ts';

/** Sysctls the kubelet, kube-proxy or the CNI bridge plugin may set. */
export const WATCHED_SYSCTLS = [
  'vm/overcommit_memory',
  'vm/panic_on_oom',
  'kernel/panic',
  'kernel/panic_on_oops',
  'kernel/keys/root_maxkeys',
  'kernel/keys/root_maxbytes',
  'net/ipv4/ip_forward',
  'net/ipv4/conf/all/forwarding',
  'net/ipv4/conf/all/route_localnet',
  'net/ipv6/conf/all/forwarding',
  'net/bridge/bridge-nf-call-iptables',
  'net/bridge/bridge-nf-call-ip6tables',
  'net/netfilter/nf_conntrack_max',
  'net/netfilter/nf_conntrack_tcp_timeout_established',
  'net/netfilter/nf_conntrack_tcp_timeout_close_wait',
] as const;

/** Fixed host paths the node's parts create when missing, whatever their configured dirs. */
export const FIXED_PATHS = [
  '/run/containerd',
  '/var/run/netns',
  '/run/netns',
  '/var/lib/kubelet',
  '/var/log/pods',
  '/var/log/containers',
  '/var/lib/cni',
  '/etc/cni',
  '/opt/cni',
  '/opt/containerd',
  '/run/nri',
  '/var/run/nri',
] as const;

/** Mount points under these (besides the plane dir) belong to the node while it runs. */
const NODE_MOUNT_PREFIXES = ['/run/containerd', '/run/netns', '/var/run/netns', '/var/lib/kubelet'];

/** One node per host: kube-proxy's nftables table and containerd's /run paths are per host. */
export const NODE_LOCK = '/run/nats-manager-node.lock';

export interface HostSnapshot {
  readonly planeDir: string;
  readonly bridge: string;
  readonly containerdSockets: readonly string[];
  /** Cgroups, relative to each hierarchy, that hold the nodes' pods. */
  readonly cgroupNames: readonly string[];
  readonly sysctls: Record<string, string>;
  readonly mounts: readonly string[];
  /** Each fixed path that existed, with the entries it had. */
  readonly paths: Record<string, readonly string[] | null>;
  readonly nftRulesetFile: string;
  readonly cgroupRoots: readonly string[];
}

export class NodeUnavailableError extends Error {
  override readonly name = 'NodeUnavailableError';
}

function run(cmd: string, args: readonly string[], input?: string): { ok: boolean; out: string } {
  const result = spawnSync(cmd, args, {
    encoding: 'utf8',
    timeout: 20_000,
    input,
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  return {
    ok: result.status === 0,
    out: `${result.stdout}${result.stderr}`,
  };
}

export { CNI_BIN_DIR } from './debian-packages.ts';

interface CgroupMount {
  readonly path: string;
  readonly version: 1 | 2;
}

function mountInfo(): { mountPoint: string; fsType: string }[] {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .trim()
    .split('\n')
    .map((line) => {
      const fields = line.split(' ');
      const dash = fields.indexOf('-');
      const mountPoint = (fields[4] ?? '').replaceAll('\\040', ' ');
      return { mountPoint, fsType: fields[dash + 1] ?? '' };
    });
}

export function cgroupMountPoints(): string[] {
  return cgroupMounts().map((m) => m.path);
}

function cgroupMounts(): CgroupMount[] {
  return mountInfo()
    .filter((m) => m.fsType === 'cgroup' || m.fsType === 'cgroup2')
    .map((m) => ({ path: m.mountPoint, version: m.fsType === 'cgroup2' ? 2 : 1 }));
}

/**
 * Why this host cannot run the node, or undefined when it can: root, overlayfs, usable cgroups,
 * the Debian packages. Checked before anything is started, so the answer is quick and clear.
 */
export function nodeUnavailableReason(
  uid: number | undefined = process.getuid?.(),
): string | undefined {
  if (process.platform !== 'linux') return 'the local node runs on Linux only';
  if (uid !== 0) {
    return 'the local node needs root (kubelet, containerd and runc create mounts, cgroups and network namespaces)';
  }
  const filesystems = readFileSync('/proc/filesystems', 'utf8');
  if (!/\toverlay$/m.test(filesystems)) {
    return 'the kernel has no overlayfs (containerd unpacks images with it); try `modprobe overlay`';
  }
  const cgroups = cgroupMounts();
  if (cgroups.length === 0) return 'no cgroup filesystem is mounted under /sys/fs/cgroup';
  const memory = cgroups.find((m) => m.version === 2 || m.path.endsWith('/memory'));
  if (memory === undefined) return 'no memory cgroup controller is mounted';
  const probe = join(memory.path, `nats-manager-probe-${String(process.pid)}`);
  try {
    mkdirSync(probe);
    rmdirSync(probe);
  } catch (error) {
    return `cgroups are not usable (cannot create ${probe}: ${(error as Error).message})`;
  }
  // `npm start`, `npm test` and `npm run plane` install them first where they can.
  const missing = missingNodePackages();
  if (missing.length > 0) {
    return `missing Debian packages: ${missing.join(', ')} (npm run install:packages, as root)`;
  }
  return undefined;
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Takes the host's node lock for `planeDir`; a live holder is an error naming it. */
export function lockNode(planeDir: string): void {
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(NODE_LOCK, 'wx', 0o644);
      writeFileSync(fd, JSON.stringify({ pid: process.pid, planeDir }));
      closeSync(fd);
      return;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    let holder: { pid?: number; planeDir?: string } = {};
    try {
      holder = JSON.parse(readFileSync(NODE_LOCK, 'utf8')) as typeof holder;
    } catch {
      // A lock half written: treat as stale.
    }
    if (
      holder.pid !== undefined &&
      pidAlive(holder.pid) &&
      holder.planeDir !== undefined &&
      existsSync(holder.planeDir)
    ) {
      throw new NodeUnavailableError(
        `another local plane with a node runs on this host (pid ${String(holder.pid)}, ${holder.planeDir}); ` +
          'a host has one node (kube-proxy, kubelet and containerd share host-wide tables and paths): ' +
          'stop it first, or start this plane without a node',
      );
    }
    // The holder died without cleaning up (its reaper cleans its host changes): take over.
    rmSync(NODE_LOCK, { force: true });
  }
  throw new NodeUnavailableError(`could not take ${NODE_LOCK}`);
}

export function unlockNode(planeDir: string): void {
  try {
    const holder = JSON.parse(readFileSync(NODE_LOCK, 'utf8')) as { planeDir?: string };
    if (holder.planeDir === planeDir) unlinkSync(NODE_LOCK);
  } catch {
    // Not ours or gone.
  }
}

function readSysctl(name: string): string | undefined {
  try {
    return readFileSync(`/proc/sys/${name}`, 'utf8').trim();
  } catch {
    return undefined;
  }
}

function entries(path: string): string[] | null {
  try {
    return statSync(path).isDirectory() ? readdirSync(path).sort() : [];
  } catch {
    return null;
  }
}

/** Records what cleanupHost() restores; written before the node changes anything. */
export function snapshotHost(
  planeDir: string,
  bridge: string,
  containerdSockets: readonly string[],
  cgroupNames: readonly string[],
): HostSnapshot {
  const nodeDir = join(planeDir, 'node');
  mkdirSync(nodeDir, { recursive: true });
  const sysctls: Record<string, string> = {};
  for (const name of WATCHED_SYSCTLS) {
    const value = readSysctl(name);
    if (value !== undefined) sysctls[name] = value;
  }
  const nftRulesetFile = join(nodeDir, 'nft-ruleset.before');
  const ruleset = run('nft', ['list', 'ruleset']);
  if (!ruleset.ok) throw new NodeUnavailableError(`nft list ruleset failed: ${ruleset.out}`);
  writeFileSync(nftRulesetFile, ruleset.out);
  const paths: Record<string, readonly string[] | null> = {};
  for (const path of FIXED_PATHS) paths[path] = entries(path);
  const snapshot: HostSnapshot = {
    planeDir,
    bridge,
    containerdSockets,
    cgroupNames,
    sysctls,
    mounts: mountInfo().map((m) => m.mountPoint),
    paths,
    nftRulesetFile,
    cgroupRoots: cgroupMounts().map((m) => m.path),
  };
  writeFileSync(join(nodeDir, 'host.json'), JSON.stringify(snapshot, null, 2));
  return snapshot;
}

export function readSnapshot(planeDir: string): HostSnapshot | undefined {
  const file = join(planeDir, 'node', 'host.json');
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as HostSnapshot;
  } catch {
    return undefined;
  }
}

function processCmdlines(): { pid: number; cmdline: string }[] {
  const out: { pid: number; cmdline: string }[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      out.push({
        pid: Number(name),
        cmdline: readFileSync(`/proc/${name}/cmdline`, 'utf8').replaceAll('\0', ' '),
      });
    } catch {
      // Gone.
    }
  }
  return out;
}

function cgroupDirs(root: string): string[] {
  // Deepest first, so rmdir works bottom-up.
  const found: string[] = [];
  const walk = (dir: string): void => {
    let names: string[];
    try {
      names = readdirSync(dir, { withFileTypes: true })
        .filter((d) => d.isDirectory())
        .map((d) => d.name);
    } catch {
      return;
    }
    for (const name of names) walk(join(dir, name));
    found.push(dir);
  };
  walk(root);
  return found;
}

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** The snapshot's cgroups under one hierarchy's root, deepest first. */
function nodeCgroupDirs(snapshot: HostSnapshot, root: string): string[] {
  return snapshot.cgroupNames.flatMap((name) => cgroupDirs(join(root, name)));
}

function killQuietly(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // Gone.
  }
}

/** SIGKILLs what the cgroup holds; how many processes that was. */
function killCgroupProcesses(dir: string): number {
  let pids: number[];
  try {
    pids = readFileSync(join(dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean).map(Number);
  } catch {
    return 0;
  }
  for (const pid of pids) killQuietly(pid);
  return pids.length;
}

/** Every process of the node's pods: what is in its kubepods cgroups. */
function killPods(snapshot: HostSnapshot): void {
  for (let round = 0; round < 50; round++) {
    let alive = 0;
    for (const root of snapshot.cgroupRoots) {
      for (const dir of nodeCgroupDirs(snapshot, root)) alive += killCgroupProcesses(dir);
    }
    if (alive === 0) return;
    sleepSync(100);
  }
}

/** A process of the node: it names one of its containerd sockets or runs from its directory. */
function isNodeProcess(snapshot: HostSnapshot, cmdline: string): boolean {
  return (
    snapshot.containerdSockets.some((socket) => cmdline.includes(socket)) ||
    cmdline.includes(`${snapshot.planeDir}/node/`)
  );
}

/** The node's host processes that may have outlived their process group: shims above all. */
function killNodeProcesses(snapshot: HostSnapshot): void {
  for (let round = 0; round < 30; round++) {
    const mine = processCmdlines().filter(
      (p) => p.pid !== process.pid && isNodeProcess(snapshot, p.cmdline),
    );
    if (mine.length === 0) return;
    for (const p of mine) killQuietly(p.pid);
    sleepSync(100);
  }
}

function unmountNew(snapshot: HostSnapshot): void {
  const before = new Set(snapshot.mounts);
  const prefixes = [`${snapshot.planeDir}/`, ...NODE_MOUNT_PREFIXES];
  for (let round = 0; round < 5; round++) {
    const mine = mountInfo()
      .map((m) => m.mountPoint)
      .filter(
        (p) =>
          !before.has(p) &&
          prefixes.some((prefix) => p === prefix.replace(/\/$/, '') || p.startsWith(prefix)),
      )
      .sort((a, b) => b.length - a.length);
    if (mine.length === 0) return;
    for (const point of mine) run('umount', ['-l', point]);
  }
}

function restorePaths(snapshot: HostSnapshot): void {
  for (const [path, had] of Object.entries(snapshot.paths)) {
    if (had === null) {
      rmSync(path, { recursive: true, force: true });
      continue;
    }
    const now = entries(path) ?? [];
    for (const entry of now) {
      if (!had.includes(entry)) rmSync(join(path, entry), { recursive: true, force: true });
    }
  }
}

function removeLinks(snapshot: HostSnapshot): void {
  const attached = run('ip', ['-o', 'link', 'show', 'master', snapshot.bridge]);
  if (attached.ok) {
    for (const line of attached.out.split('\n')) {
      const name = /^\d+: ([^@:]+)/.exec(line)?.[1];
      if (name !== undefined) run('ip', ['link', 'del', name]);
    }
  }
  if (run('ip', ['link', 'show', snapshot.bridge]).ok) run('ip', ['link', 'del', snapshot.bridge]);
}

function restoreNft(snapshot: HostSnapshot): void {
  if (!existsSync(snapshot.nftRulesetFile)) return;
  const before = readFileSync(snapshot.nftRulesetFile, 'utf8');
  const now = run('nft', ['list', 'ruleset']);
  if (now.ok && now.out === before) return;
  run('nft', ['flush', 'ruleset']);
  if (before.trim() !== '') run('nft', ['-f', '-'], before);
}

function restoreSysctls(snapshot: HostSnapshot): void {
  for (const [name, value] of Object.entries(snapshot.sysctls)) {
    if (readSysctl(name) === value) continue;
    try {
      writeFileSync(`/proc/sys/${name}`, value);
    } catch {
      // Read-only here; nothing to restore.
    }
  }
}

/** Removes an empty cgroup; false when it is still there (busy or not yet empty). */
function removeCgroup(dir: string): boolean {
  try {
    rmdirSync(dir);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'ENOENT';
  }
}

/** Removes the snapshot's cgroups under one root, deepest first; how many are still there. */
function removeNodeCgroups(snapshot: HostSnapshot, root: string): number {
  let left = 0;
  for (const dir of nodeCgroupDirs(snapshot, root)) if (!removeCgroup(dir)) left++;
  return left;
}

function removeCgroups(snapshot: HostSnapshot): void {
  for (let round = 0; round < 20; round++) {
    let left = 0;
    for (const root of snapshot.cgroupRoots) left += removeNodeCgroups(snapshot, root);
    if (left === 0) return;
    sleepSync(100);
  }
}

/**
 * Puts the host back as the snapshot found it: pods' and the node's processes killed, mounts and
 * network namespaces removed, bridge and veths deleted, nftables ruleset and sysctls restored,
 * kubepods cgroups and the fixed paths removed, the lock released. Best effort on every step.
 */
export function cleanupHost(snapshot: HostSnapshot): void {
  killPods(snapshot);
  killNodeProcesses(snapshot);
  unmountNew(snapshot);
  restorePaths(snapshot);
  removeLinks(snapshot);
  restoreNft(snapshot);
  restoreSysctls(snapshot);
  removeCgroups(snapshot);
  unlockNode(snapshot.planeDir);
}

function mountDifferences(snapshot: HostSnapshot): string[] {
  const before = new Set(snapshot.mounts);
  return mountInfo()
    .filter((m) => !before.has(m.mountPoint))
    .map((m) => `mount ${m.mountPoint} (${m.fsType})`);
}

function pathDifferences(snapshot: HostSnapshot): string[] {
  return Object.entries(snapshot.paths)
    .filter(([path, had]) => JSON.stringify(entries(path)) !== JSON.stringify(had))
    .map(([path]) => `path ${path}`);
}

function networkDifferences(snapshot: HostSnapshot, nftBefore: string): string[] {
  const diffs: string[] = [];
  if (run('ip', ['link', 'show', snapshot.bridge]).ok) diffs.push(`link ${snapshot.bridge}`);
  const veths = run('ip', ['-o', 'link', 'show', 'type', 'veth']);
  if (veths.ok && veths.out.trim() !== '') diffs.push(`veths: ${veths.out.trim()}`);
  const nft = run('nft', ['list', 'ruleset']);
  if (nft.out !== nftBefore) diffs.push('nftables ruleset');
  return diffs;
}

function sysctlDifferences(snapshot: HostSnapshot): string[] {
  return Object.entries(snapshot.sysctls)
    .filter(([name, value]) => readSysctl(name) !== value)
    .map(([name]) => `sysctl ${name}`);
}

function cgroupDifferences(snapshot: HostSnapshot): string[] {
  return snapshot.cgroupRoots.flatMap((root) =>
    snapshot.cgroupNames
      .filter((name) => existsSync(join(root, name)))
      .map((name) => `cgroup ${root}/${name}`),
  );
}

function processDifferences(snapshot: HostSnapshot): string[] {
  return processCmdlines()
    .filter((p) => isNodeProcess(snapshot, p.cmdline))
    .map((p) => `process ${String(p.pid)} ${p.cmdline.slice(0, 80)}`);
}

/** What differs from the snapshot, as lines; empty when the host is as it was. For tests. */
export function hostDifferences(
  snapshot: HostSnapshot,
  nftBefore = readFileSync(snapshot.nftRulesetFile, 'utf8'),
): string[] {
  return [
    ...mountDifferences(snapshot),
    ...pathDifferences(snapshot),
    ...networkDifferences(snapshot, nftBefore),
    ...sysctlDifferences(snapshot),
    ...cgroupDifferences(snapshot),
    ...processDifferences(snapshot),
    ...(existsSync(NODE_LOCK) ? [`lock ${NODE_LOCK}`] : []),
  ];
}
