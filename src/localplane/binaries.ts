// Builds the local control plane's binaries from the pinned Go modules in ./pins and caches them
// by pin. There is no container runtime on the machines this runs on, so etcd, kube-apiserver,
// kube-controller-manager and nats-server come from the Go module proxy, not from images.
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

export type BinaryName = 'etcd' | 'kube-apiserver' | 'kube-controller-manager' | 'nats-server';

interface Recipe {
  /** Folder under ./pins holding the go.mod and go.sum that pin it. */
  readonly pin: string;
  /** The module whose version names the binary. */
  readonly module: string;
  readonly pkg: string;
  readonly ldflags: (version: string) => string[];
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
  const goSum = readFileSync(join(PINS_DIR, recipe.pin, 'go.sum'), 'utf8');
  const required = new RegExp(
    `^\\s*(?:require\\s+)?${recipe.module.replaceAll('.', '\\.')}\\s+(v\\S+)`,
    'm',
  );
  const version = required.exec(goMod)?.[1];
  if (version === undefined) {
    throw new Error(`pins/${recipe.pin}/go.mod does not require ${recipe.module}`);
  }
  // The hash makes any edit of a pin (a replace, a go.sum line) a new cache entry.
  const pinHash = createHash('sha256').update(goMod).update(goSum).digest('hex').slice(0, 10);
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
