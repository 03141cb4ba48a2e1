// The manager's own image, built without a container engine: an esbuild production bundle of
// src/manager/main.ts, the webhook manifests it reads at run time, the project's pinned Node 24
// binary and the shared libraries that binary links against (found with ldd), packed as an OCI
// archive by images.ts. The Dockerfile builds the same contents for anyone with an engine.
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, readFileSync, realpathSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build, type Plugin } from 'esbuild';
import { natsValidatorModule } from '../api/validator-compile.ts';
import { ociImageArchive, type ImageConfig, type TarEntry } from './images.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
/** Where the image keeps the bundle: the same depth as src/manager, so relative reads resolve. */
export const BUNDLE_PATH = 'app/src/manager/main.mjs';
export const NODE_PATH = 'usr/local/bin/node';
/** Files the manager reads at run time, relative to the repository (and to /app in the image). */
export const RUNTIME_FILES = [
  'deploy/webhooks/mutating-webhook-configuration.yaml',
  'deploy/webhooks/validating-webhook-configuration.yaml',
];
/** The user the image runs as: no name, no home, no shell (as distroless' nonroot). */
export const IMAGE_USER = '65532:65532';
export const LOCAL_MANAGER_IMAGE = 'localhost/nats-manager:dev';

// ESM output, CommonJS dependencies: their require() calls need a require.
export const REQUIRE_BANNER =
  "import { createRequire as __createRequire } from 'node:module';\n" +
  'const require = __createRequire(import.meta.url);';

/** The local plane is the embedded default of `npm start`: a pod never starts one. */
const leaveOutLocalPlane: Plugin = {
  name: 'leave-out-local-plane',
  setup(b) {
    b.onResolve({ filter: /\/localplane\// }, (args) => ({ path: args.path, external: true }));
  },
};

/**
 * The NATS validator as ajv's standalone code, made from the schema when the bundle is: the
 * image starts without compiling it and carries no ajv compiler (src/api/compiled-validator.ts).
 */
export const precompiledValidator: Plugin = {
  name: 'precompiled-validator',
  setup(b) {
    b.onResolve({ filter: /\/compiled-validator\.ts$/ }, (args) => ({
      path: join(args.resolveDir, args.path),
      namespace: 'precompiled-validator',
    }));
    b.onLoad({ filter: /.*/, namespace: 'precompiled-validator' }, (args) => ({
      contents: natsValidatorModule('./validator-schema.ts'),
      resolveDir: dirname(args.path),
      loader: 'js',
    }));
  },
};

/**
 * iconv-lite's tables of East Asian encodings, 0.4 MB of the bundle's source, which V8 holds for
 * as long as the manager runs. body-parser asks iconv-lite only for charsets starting with
 * `utf-` (RFC 8259; anything else is refused with 415 first), none of which reads a table.
 */
export const leaveOutCharsetTables: Plugin = {
  name: 'leave-out-charset-tables',
  setup(b) {
    b.onResolve({ filter: /^\.\/tables\/.*\.json$/ }, (args) =>
      /[\\/]iconv-lite[\\/]encodings$/.test(args.resolveDir)
        ? { path: args.path, namespace: 'left-out-charset-table' }
        : undefined,
    );
    b.onLoad({ filter: /.*/, namespace: 'left-out-charset-table' }, (args) => ({
      contents: `throw new Error(${JSON.stringify(`${args.path}: not in the manager's image`)});`,
      loader: 'js',
    }));
  },
};

export interface Bundle {
  readonly file: string;
  readonly bytes: number;
}

/**
 * Bundles the manager into `outFile` (ESM, Node 24). V8 keeps a module's source in memory for as
 * long as it runs (lazy compilation, stack traces), so the source is kept small: whitespace and
 * comments out (names stay, so stacks still read), and ASCII only. One character outside Latin-1
 * makes V8 hold the whole source as a two-byte string, twice its size; esbuild's
 * `charset: 'ascii'` leaves regular expression literals as written (`µs` in @nats-io/jetstream), and a \u
 * escape means the same there as in strings and identifiers.
 */
export async function bundleManager(outFile: string): Promise<Bundle> {
  await build({
    entryPoints: [join(ROOT, 'src/manager/main.ts')],
    outfile: outFile,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node24',
    banner: { js: REQUIRE_BANNER },
    plugins: [leaveOutLocalPlane, precompiledValidator, leaveOutCharsetTables],
    // 16 MB of the bundle's 21, parsed at every start, for kubeconfigs a pod never has
    // (src/kube/kubeconfig.ts): a pod reads its service account.
    external: ['@kubernetes/client-node'],
    legalComments: 'none',
    minifyWhitespace: true,
    charset: 'ascii',
    logLevel: 'warning',
    define: { 'process.env.NODE_ENV': '"production"' },
  });
  const source = readFileSync(outFile, 'utf8').replace(
    /[^\p{ASCII}]/gu,
    // Each UTF-16 unit on its own: \uD83D\uDE00 reads right in strings and in any regex.
    (char) =>
      Array.from(
        { length: char.length },
        (_, i) => `\\u${char.charCodeAt(i).toString(16).padStart(4, '0')}`,
      ).join(''),
  );
  writeFileSync(outFile, source);
  return { file: outFile, bytes: Buffer.byteLength(source) };
}

/** The project's pinned Node binary (the `node` package), not whatever node runs this. */
export function pinnedNodeBinary(): string {
  const require = createRequire(join(ROOT, 'package.json'));
  return realpathSync(join(dirname(require.resolve('node/package.json')), 'bin', 'node'));
}

/** Absolute paths of what `binary` loads: its libraries and the dynamic loader (ldd's answer). */
export function linkedLibraries(binary: string): string[] {
  const out = execFileSync('ldd', [binary], { encoding: 'utf8' });
  const paths = new Set<string>();
  for (const line of out.split('\n')) {
    // `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)` or `/lib64/ld-linux-x86-64.so.2 (0x...)`
    const match = /(?:=>\s*)?(\/\S+)\s+\(0x[0-9a-f]+\)/.exec(line);
    if (match?.[1] !== undefined) paths.add(match[1]);
  }
  if (paths.size === 0) throw new Error(`ldd found no libraries for ${binary}:\n${out}`);
  return [...paths].sort();
}

/** The directories above each path, parents first. */
function parentDirectories(paths: readonly string[]): string[] {
  const dirs = new Set<string>();
  for (const path of paths) {
    const parts = path.split('/');
    for (let i = 1; i < parts.length; i++) dirs.add(parts.slice(0, i).join('/'));
  }
  return [...dirs].sort();
}

/** A copy of the Node binary without its symbol tables: 108 MB instead of 127 MB. */
function strippedNode(binary: string, workDir: string): Buffer {
  const out = join(workDir, 'node');
  execFileSync('strip', ['--strip-all', '-o', out, binary]);
  return readFileSync(out);
}

export interface ManagerImage {
  readonly name: string;
  readonly archive: string;
  readonly bundleBytes: number;
  readonly archiveBytes: number;
  readonly libraries: readonly string[];
}

/** The image's one layer: bundle, manifests, Node and its libraries, their directories, /tmp. */
export async function imageLayer(
  workDir: string,
  node: string = pinnedNodeBinary(),
): Promise<{ layer: TarEntry[]; bundleBytes: number; libraries: string[] }> {
  mkdirSync(workDir, { recursive: true });
  const bundle = await bundleManager(join(workDir, 'main.mjs'));
  const libraries = linkedLibraries(node);
  const files: TarEntry[] = [
    { name: BUNDLE_PATH, content: readFileSync(bundle.file), mode: 0o644 },
    ...RUNTIME_FILES.map((file) => ({
      name: `app/${file}`,
      content: readFileSync(join(ROOT, file)),
      mode: 0o644,
    })),
    { name: NODE_PATH, content: strippedNode(node, workDir), mode: 0o755 },
    // At the paths ldd printed, which the loader and the binary's interpreter field look up.
    ...libraries.map((lib) => ({ name: lib.slice(1), content: readFileSync(lib), mode: 0o755 })),
  ];
  const dirs = parentDirectories([...files.map((f) => f.name), 'tmp/x']);
  return {
    layer: [...dirs.map((dir) => ({ name: dir, mode: dir === 'tmp' ? 0o1777 : 0o755 })), ...files],
    bundleBytes: bundle.bytes,
    libraries: libraries.map((lib) => relative('/', lib)),
  };
}

/**
 * Node's flags in the image. V8 lets its young generation grow to 16 MiB per semi-space under
 * allocation (admission traffic), and keeps it: at 1 MiB the manager settles about 10 MB lower,
 * and a burst of admission requests no longer raises its RSS for good (bench/README.md,
 * footprint). A controller's allocation rate is low; the extra scavenges cost little. Without
 * Maglev (V8's middle compiler; hot code still reaches TurboFan) the code pages and compiled code
 * it would add are not touched: about 2 MB, at no cost we could measure per admission request.
 * One V8 helper thread, not four: the pod is limited to half a CPU (deploy/manager), and each
 * helper that allocates leaves malloc memory behind, 2-3 MB for the other three.
 */
export const IMAGE_NODE_FLAGS = ['--max-semi-space-size=1', '--no-maglev', '--v8-pool-size=1'];

/**
 * The image's environment for Node. glibc gives each thread that allocates an arena of its own,
 * up to eight per core; V8's helper threads then keep several partly used: two arenas hold the
 * manager 1-5 MB lower, and steadier, after convergence (bench/README.md, footprint).
 */
export const IMAGE_NODE_ENV: Readonly<Record<string, string>> = { MALLOC_ARENA_MAX: '2' };

/** The image's configuration; the Dockerfile says the same (USER, ENTRYPOINT, ENV). */
export const IMAGE_CONFIG: ImageConfig = {
  Entrypoint: [`/${NODE_PATH}`, ...IMAGE_NODE_FLAGS, `/${BUNDLE_PATH}`],
  Env: [
    'NODE_ENV=production',
    'PATH=/usr/local/bin:/usr/bin:/bin',
    ...Object.entries(IMAGE_NODE_ENV).map(([name, value]) => `${name}=${value}`),
  ],
  WorkingDir: '/app',
  User: IMAGE_USER,
};

/** Bundles the manager and packs the image archive `outFile` named `name`. */
export async function buildManagerImage(
  outFile: string,
  name: string = LOCAL_MANAGER_IMAGE,
): Promise<ManagerImage> {
  const built = await imageLayer(join(dirname(outFile), 'image-work'));
  const archive = ociImageArchive({ name, layer: built.layer, config: IMAGE_CONFIG });
  mkdirSync(dirname(outFile), { recursive: true });
  writeFileSync(outFile, archive);
  return {
    name,
    archive: outFile,
    bundleBytes: built.bundleBytes,
    archiveBytes: archive.length,
    libraries: built.libraries,
  };
}

/** The same layer as a directory (the Dockerfile's build stage copies it into a scratch image). */
export async function writeRootfs(dir: string, node: string): Promise<void> {
  const { layer } = await imageLayer(join(dir, '..', 'image-work'), node);
  for (const entry of layer) {
    const path = join(dir, entry.name);
    if (entry.content === undefined) mkdirSync(path, { recursive: true, mode: entry.mode });
    else writeFileSync(path, entry.content, { mode: entry.mode });
  }
  chmodSync(join(dir, 'tmp'), 0o1777);
}
