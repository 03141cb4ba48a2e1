// The manager's image holds only what it runs: the bundle, the two webhook manifests it reads,
// Node and the libraries ldd lists for it. Proven by running those files alone (chroot, as the
// image's non-root user, nothing writable): the manager starts and answers its configuration.
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { build } from 'esbuild';
import {
  IMAGE_CONFIG,
  IMAGE_USER,
  imageLayer,
  leaveOutCharsetTables,
  REQUIRE_BANNER,
  linkedLibraries,
  pinnedNodeBinary,
  writeRootfs,
} from '../../src/localplane/manager-image.ts';

const run = promisify(execFile);

describe('the manager image', () => {
  const dir = mkdtempSync(join(tmpdir(), 'nats-manager-image-'));
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it('holds the bundle, the webhook manifests, Node 24 and its libraries, and nothing else', async () => {
    const { layer } = await imageLayer(join(dir, 'work'));
    const files = layer.filter((entry) => entry.content !== undefined).map((entry) => entry.name);
    const libraries = linkedLibraries(pinnedNodeBinary()).map((lib) => lib.slice(1));
    expect(files.sort()).toEqual(
      [
        'app/src/manager/main.mjs',
        'app/deploy/webhooks/mutating-webhook-configuration.yaml',
        'app/deploy/webhooks/validating-webhook-configuration.yaml',
        'usr/local/bin/node',
        ...libraries,
      ].sort(),
    );
    expect(libraries).toEqual(expect.arrayContaining([expect.stringMatching(/libc\.so/)]));
    expect(IMAGE_CONFIG.User).toBe(IMAGE_USER);
    expect(IMAGE_USER.startsWith('0:')).toBe(false);
  }, 60_000);

  it('runs from those files alone as its non-root user, and refuses to start without a cluster', async () => {
    const root = join(dir, 'root');
    await writeRootfs(root, pinnedNodeBinary());
    const [user] = IMAGE_USER.split(':');
    const chroot = (...args: string[]) =>
      run('chroot', [`--userspec=${IMAGE_USER}`, root, ...IMAGE_CONFIG.Entrypoint, ...args], {
        env: { PATH: process.env.PATH ?? '' },
      }).then(
        () => ({ code: 0, stderr: '' }),
        (error: unknown) => error as { code: number; stderr: string },
      );
    const version = await run('chroot', [
      `--userspec=${IMAGE_USER}`,
      root,
      '/usr/local/bin/node',
      '-p',
      'process.version + " " + process.getuid()',
    ]);
    expect(version.stdout.trim()).toBe(`v24.21.0 ${user ?? ''}`);
    const inCluster = await chroot('--in-cluster', '--metrics-bind-address=127.0.0.1:8080');
    expect(inCluster.code).toBe(2);
    expect(inCluster.stderr).toContain(
      '--in-cluster is set, but KUBERNETES_SERVICE_HOST is not set',
    );
    // Without --in-cluster and without a kubeconfig, still no embedded plane: it is not in the image.
    const bare = await chroot('--metrics-bind-address=127.0.0.1:8080');
    expect(bare.code).toBe(2);
    expect(bare.stderr).toContain('this build has no embedded plane');
  }, 60_000);

  it("decodes UTF charsets without iconv-lite's East Asian tables, which it leaves out", async () => {
    const entry = join(dir, 'charsets.mjs');
    writeFileSync(
      entry,
      "import iconv from 'iconv-lite';\n" +
        "export const utf8 = iconv.decode(Buffer.from('h\\u00e9', 'utf8'), 'utf-8');\n" +
        "export const utf16 = iconv.decode(Buffer.from('h\\u00e9', 'utf16le'), 'utf-16le');\n" +
        "export const shiftJis = () => iconv.decode(Buffer.from([0x82, 0xa0]), 'shift_jis');\n",
    );
    const outfile = join(dir, 'charsets.bundle.mjs');
    await build({
      entryPoints: [entry],
      outfile,
      bundle: true,
      platform: 'node',
      format: 'esm',
      nodePaths: [new URL('../../node_modules', import.meta.url).pathname],
      plugins: [leaveOutCharsetTables],
      // As the manager's bundle: its CommonJS dependencies require Node's built-in modules.
      banner: { js: REQUIRE_BANNER },
      logLevel: 'warning',
    });
    const bundled = (await import(pathToFileURL(outfile).href)) as {
      utf8: string;
      utf16: string;
      shiftJis: () => string;
    };
    expect([bundled.utf8, bundled.utf16]).toEqual(['h\u00e9', 'h\u00e9']);
    expect(bundled.shiftJis).toThrow("shiftjis.json: not in the manager's image");
  });
});
