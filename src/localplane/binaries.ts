// Builds the local control plane's binaries from the pinned Go modules in ./pins and caches them
// by pin. There is no container runtime on the machines this runs on, so etcd, kube-apiserver,
// kube-controller-manager and nats-server come from the Go module proxy, not from images; so do
// the local node's kubelet, kube-scheduler, kube-proxy, containerd and CoreDNS, and the programs
// inside the NATS pods' images.
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

export type BinaryName =
  | 'etcd'
  | 'kube-apiserver'
  | 'kube-controller-manager'
  | 'nats-server'
  | NodeBinaryName
  | ImageBinaryName;

/** What the local node runs on the host. */
export type NodeBinaryName =
  | 'kubelet'
  | 'kube-scheduler'
  | 'kube-proxy'
  | 'containerd'
  | 'containerd-shim-runc-v2'
  | 'ctr'
  | 'coredns';

/** What the local node's images hold, besides nats-server. */
export type ImageBinaryName = 'nats-server-config-reloader' | 'prometheus-nats-exporter' | 'pause';

export const NODE_BINARIES: readonly NodeBinaryName[] = [
  'containerd',
  'containerd-shim-runc-v2',
  'ctr',
  'kubelet',
  'kube-scheduler',
  'kube-proxy',
  'coredns',
];

export const IMAGE_BINARIES: readonly (ImageBinaryName | 'nats-server')[] = [
  'pause',
  'nats-server',
  'nats-server-config-reloader',
  'prometheus-nats-exporter',
];

interface Recipe {
  /** Folder under ./pins holding the go.mod and go.sum that pin it. */
  readonly pin: string;
  /** The module whose version names the binary; none for a program of the pin folder itself. */
  readonly module?: string;
  readonly pkg: string;
  readonly ldflags: (version: string) => string[];
  readonly tags?: readonly string[];
}

// Without these stamps the binaries report v0.0.0, and clients that check versions balk.
function kubernetesVersionStamp(version: string): string[] {
  const [major, minor] = version.replace(/^v/, '').split('.');
  return ['k8s.io/component-base/version', 'k8s.io/client-go/pkg/version'].flatMap((pkg) => [
    `-X ${pkg}.gitVersion=${version}`,
    `-X ${pkg}.gitMajor=${major ?? ''}`,
    `-X ${pkg}.gitMinor=${minor ?? ''}`,
    `-X ${pkg}.gitTreeState=clean`,
  ]);
}

// containerd without the snapshotters and storage drivers the node does not use, and pure Go so
// that it needs no C toolchain; the shim also without its gRPC server (it speaks ttrpc).
const CONTAINERD_TAGS = [
  'no_btrfs',
  'no_devmapper',
  'no_zfs',
  'urfave_cli_no_docs',
  'osusergo',
  'netgo',
];

function containerdVersionStamp(version: string): string[] {
  return [
    `-X github.com/containerd/containerd/v2/version.Version=${version}`,
    '-X github.com/containerd/containerd/v2/version.Package=github.com/containerd/containerd/v2',
  ];
}

function kubernetesNode(command: string): Recipe {
  return {
    pin: 'kubernetes-node',
    module: 'k8s.io/kubernetes',
    pkg: `k8s.io/kubernetes/cmd/${command}`,
    ldflags: kubernetesVersionStamp,
  };
}

function containerd(command: string, tags: readonly string[] = CONTAINERD_TAGS): Recipe {
  return {
    pin: 'containerd',
    module: 'github.com/containerd/containerd/v2',
    pkg: `github.com/containerd/containerd/v2/cmd/${command}`,
    ldflags: containerdVersionStamp,
    tags,
  };
}

const RECIPES: Record<BinaryName, Recipe> = {
  etcd: {
    pin: 'etcd',
    module: 'go.etcd.io/etcd/server/v3',
    pkg: 'go.etcd.io/etcd/server/v3',
    ldflags: () => [],
  },
  'kube-apiserver': {
    pin: 'kubernetes',
    module: 'k8s.io/kubernetes',
    pkg: 'k8s.io/kubernetes/cmd/kube-apiserver',
    ldflags: kubernetesVersionStamp,
  },
  'kube-controller-manager': {
    pin: 'kubernetes',
    module: 'k8s.io/kubernetes',
    pkg: 'k8s.io/kubernetes/cmd/kube-controller-manager',
    ldflags: kubernetesVersionStamp,
  },
  'nats-server': {
    pin: 'nats',
    module: 'github.com/nats-io/nats-server/v2',
    pkg: 'github.com/nats-io/nats-server/v2',
    ldflags: () => [],
  },
  kubelet: kubernetesNode('kubelet'),
  'kube-scheduler': kubernetesNode('kube-scheduler'),
  'kube-proxy': kubernetesNode('kube-proxy'),
  containerd: containerd('containerd'),
  'containerd-shim-runc-v2': containerd('containerd-shim-runc-v2', [...CONTAINERD_TAGS, 'no_grpc']),
  ctr: containerd('ctr'),
  coredns: {
    pin: 'coredns',
    module: 'github.com/coredns/coredns',
    pkg: 'localplane/coredns',
    ldflags: () => [],
  },
  'nats-server-config-reloader': {
    pin: 'nats-reloader',
    module: 'github.com/nats-io/nack',
    pkg: 'github.com/nats-io/nack/cmd/nats-server-config-reloader',
    ldflags: () => [],
  },
  'prometheus-nats-exporter': {
    pin: 'nats-exporter',
    module: 'github.com/nats-io/prometheus-nats-exporter',
    pkg: 'github.com/nats-io/prometheus-nats-exporter',
    ldflags: (version) => [`-X main.version=${version.replace(/^v/, '')}`],
  },
  pause: { pin: 'pause', pkg: 'localplane/pause', ldflags: () => [] },
};

const PINS_DIR = join(dirname(fileURLToPath(import.meta.url)), 'pins');
const PROJECT_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** Where built binaries live: NATS_MANAGER_CACHE, else the ignored .cache folder of the project. */
export function cacheRoot(): string {
  return process.env.NATS_MANAGER_CACHE ?? join(PROJECT_ROOT, '.cache');
}

export interface PinnedBinary {
  readonly name: BinaryName;
  readonly version: string;
  readonly path: string;
}

export function pinnedBinary(name: BinaryName): PinnedBinary {
  const recipe = RECIPES[name];
  const goMod = readFileSync(join(PINS_DIR, recipe.pin, 'go.mod'), 'utf8');
  const pinFiles = readdirSync(join(PINS_DIR, recipe.pin))
    .filter((file) => file !== 'go.mod')
    .sort();
  let version = 'v0';
  if (recipe.module !== undefined) {
    const required = new RegExp(
      `^\\s*(?:require\\s+)?${recipe.module.replaceAll('.', '\\.')}\\s+(v\\S+)`,
      'm',
    );
    const pinned = required.exec(goMod)?.[1];
    if (pinned === undefined) {
      throw new Error(`pins/${recipe.pin}/go.mod does not require ${recipe.module}`);
    }
    version = pinned;
  }
  // The hash makes any edit of a pin (a replace, a go.sum line, its own main.go) a new cache
  // entry. go.mod first, then go.sum: the hash of a pin of go.mod and go.sum alone stays as it was.
  const hash = createHash('sha256').update(goMod);
  for (const file of pinFiles) hash.update(readFileSync(join(PINS_DIR, recipe.pin, file)));
  const pinHash = hash.digest('hex').slice(0, 10);
  const path = join(cacheRoot(), 'bin', `${name}-${version}-${pinHash}`, name);
  return { name, version, path };
}

export type Log = (line: string) => void;

function requireGo(): void {
  const probe = spawnSync('go', ['version'], { encoding: 'utf8', env: process.env });
  if (probe.error !== undefined || probe.status !== 0) {
    throw new Error(
      'Go is needed once to build the local control plane (etcd, kube-apiserver, ' +
        'kube-controller-manager, nats-server) from pinned modules, and `go` was not found on ' +
        'the PATH. Install Go 1.26 or newer and run again, or point KUBECONFIG at an existing ' +
        'cluster.',
    );
  }
}

async function build(binary: PinnedBinary, log: Log): Promise<void> {
  const recipe = RECIPES[binary.name];
  const outDir = dirname(binary.path);
  const partial = `${binary.path}.partial-${String(process.pid)}`;
  mkdirSync(outDir, { recursive: true });
  const ldflags = ['-s', '-w', ...recipe.ldflags(binary.version)].join(' ');
  const args = [
    'build',
    '-mod=readonly',
    '-trimpath',
    '-v',
    `-ldflags=${ldflags}`,
    ...(recipe.tags === undefined ? [] : [`-tags=${recipe.tags.join(',')}`]),
    '-o',
    partial,
    recipe.pkg,
  ];
  log(`building ${binary.name} ${binary.version} with ${goVersion()} (cached after the first run)`);
  const started = Date.now();
  const child = spawn('go', args, {
    cwd: join(PINS_DIR, recipe.pin),
    env: { ...process.env, GOWORK: 'off', CGO_ENABLED: '0' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let compiled = 0;
  let downloaded = 0;
  const tail: string[] = [];
  createInterface({ input: child.stderr }).on('line', (line) => {
    if (line.startsWith('go: downloading')) downloaded++;
    else compiled++;
    tail.push(line);
    if (tail.length > 30) tail.shift();
  });
  const progress = setInterval(() => {
    const secs = Math.round((Date.now() - started) / 1000);
    log(
      `  ${binary.name}: ${String(downloaded)} modules downloaded, ${String(compiled)} packages compiled, ${String(secs)}s`,
    );
  }, 15_000);
  const code = await new Promise<number | null>((done) => child.on('close', done));
  clearInterval(progress);
  if (code !== 0) {
    rmSync(partial, { force: true });
    throw new Error(
      `go build of ${binary.name} failed (exit ${String(code)}):\n${tail.join('\n')}`,
    );
  }
  renameSync(partial, binary.path);
  log(
    `built ${binary.name} in ${String(Math.round((Date.now() - started) / 1000))}s -> ${binary.path}`,
  );
}

function goVersion(): string {
  return spawnSync('go', ['env', 'GOVERSION'], { encoding: 'utf8' }).stdout.trim();
}

/** Returns the path of each binary, building those not in the cache yet. */
export async function ensureBinaries<N extends BinaryName>(
  names: readonly N[],
  log: Log = (line) => {
    process.stderr.write(`[localplane] ${line}\n`);
  },
): Promise<Record<N, string>> {
  const paths = {} as Record<N, string>;
  for (const name of names) {
    const binary = pinnedBinary(name);
    if (!existsSync(binary.path)) {
      requireGo();
      await build(binary, log);
    }
    paths[name] = binary.path;
  }
  return paths;
}
