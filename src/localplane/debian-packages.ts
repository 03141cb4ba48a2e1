// The Debian packages a local worker node runs on (runc, the CNI plugins, nftables for
// kube-proxy, iptables for the kubelet, iproute2 for the pod bridge), found by the files they
// install, and installed with apt-get where that is possible: `npm start` and `npm test` on a
// fresh machine need nothing installed by hand.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

export const CNI_BIN_DIR = '/usr/lib/cni';

function onPath(tool: string): boolean {
  const dirs = (process.env.PATH ?? '').split(':').concat(['/usr/sbin', '/sbin']);
  return dirs.some((dir) => dir !== '' && existsSync(join(dir, tool)));
}

const PACKAGES: readonly { readonly name: string; readonly present: () => boolean }[] = [
  { name: 'runc', present: () => onPath('runc') },
  {
    name: 'containernetworking-plugins',
    present: () =>
      ['bridge', 'host-local', 'loopback'].every((p) => existsSync(join(CNI_BIN_DIR, p))),
  },
  { name: 'nftables', present: () => onPath('nft') },
  { name: 'iptables', present: () => onPath('iptables') },
  { name: 'iproute2', present: () => onPath('ip') },
];

/** The node's packages that are not installed. */
export function missingNodePackages(): string[] {
  return PACKAGES.filter((p) => !p.present()).map((p) => p.name);
}

function run(args: readonly string[]): { ok: boolean; output: string } {
  const result = spawnSync(args[0] ?? '', args.slice(1), {
    encoding: 'utf8',
    env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
    stdio: ['ignore', 'pipe', 'pipe'],
    timeout: 600_000,
  });
  return { ok: result.status === 0, output: `${result.stdout}${result.stderr}`.trim() };
}

/**
 * Installs the missing packages when this process may (root, apt-get present). Returns what is
 * still missing: where it may not, the node's start says which packages and why.
 */
export function installNodePackages(log: (line: string) => void): string[] {
  const missing = missingNodePackages();
  if (missing.length === 0) return [];
  if (process.getuid?.() !== 0 || !onPath('apt-get')) return missing;
  log(`installing Debian packages for the local node: ${missing.join(' ')}`);
  const update = run(['apt-get', 'update', '-qq']);
  const install = update.ok
    ? run(['apt-get', 'install', '-y', '-qq', '--no-install-recommends', ...missing])
    : update;
  if (!install.ok) log(`apt-get failed:\n${install.output.split('\n').slice(-10).join('\n')}`);
  return missingNodePackages();
}
