// The local node's container images, without a registry: each is one static binary from a pinned
// Go module, packed by this file as an OCI image archive (a little JSON and one tar layer) and
// imported into containerd under the exact name the manager renders, so the default StatefulSet
// runs unchanged. Archives are cached beside the binaries, keyed by the binaries they hold.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { DEFAULT_IMAGES } from '../render/context.ts';
import { cacheRoot, ensureBinaries, pinnedBinary, type BinaryName, type Log } from './binaries.ts';

export interface ImageSpec {
  /** The fully qualified name containerd stores, as a pod's `image:` normalizes to it. */
  readonly name: string;
  readonly binary: BinaryName;
  /** Where the binary lives in the image. */
  readonly path: string;
  readonly entrypoint: readonly string[];
}

/** The sandbox image the node's containerd runs for every pod; no pod names it. */
export const PAUSE_IMAGE = 'localhost/nats-manager/pause:v1';

const PATH_ENV = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** `nats:2.14.9-alpine` -> `docker.io/library/nats:2.14.9-alpine`, as containerd names it. */
export function normalizeImageName(image: string): string {
  const first = image.split('/')[0] ?? '';
  const hasRegistry =
    image.includes('/') && (first.includes('.') || first.includes(':') || first === 'localhost');
  if (hasRegistry) return image;
  return image.includes('/') ? `docker.io/${image}` : `docker.io/library/${image}`;
}

function imageTag(image: string): string {
  const name = image.slice(image.lastIndexOf('/') + 1);
  const colon = name.lastIndexOf(':');
  return colon < 0 ? 'latest' : name.slice(colon + 1);
}

/**
 * The default images the manager renders, each with the binary built from its pin. A tag that
 * does not name the pinned version (e.g. after the default image moved on) is refused: running
 * another version than the name says would test something else.
 */
export function nodeImages(): ImageSpec[] {
  const specs: ImageSpec[] = [
    {
      name: PAUSE_IMAGE,
      binary: 'pause',
      path: 'pause',
      entrypoint: ['/pause'],
    },
    {
      name: normalizeImageName(DEFAULT_IMAGES.nats),
      binary: 'nats-server',
      path: 'usr/local/bin/nats-server',
      entrypoint: ['nats-server'],
    },
    {
      name: normalizeImageName(DEFAULT_IMAGES.configReloader),
      binary: 'nats-server-config-reloader',
      path: 'usr/local/bin/nats-server-config-reloader',
      entrypoint: ['/usr/local/bin/nats-server-config-reloader'],
    },
    {
      name: normalizeImageName(DEFAULT_IMAGES.metricsExporter),
      binary: 'prometheus-nats-exporter',
      path: 'prometheus-nats-exporter',
      entrypoint: ['/prometheus-nats-exporter'],
    },
  ];
  for (const spec of specs) {
    if (spec.binary === 'pause') continue;
    const pinned = pinnedBinary(spec.binary).version.replace(/^v/, '');
    const tag = imageTag(spec.name);
    if (!tag.startsWith(pinned) || /^[\d.]/.test(tag.slice(pinned.length))) {
      throw new Error(
        `the default image ${spec.name} does not match the pinned ${spec.binary} ${pinned}: ` +
          'move the pin in src/localplane/pins with the default image',
      );
    }
  }
  return specs;
}

// --- a minimal ustar writer: enough for directories and regular files owned by root ---

const BLOCK = 512;

function octal(value: number, width: number): string {
  return value.toString(8).padStart(width - 1, '0') + '\0';
}

function tarHeader(name: string, size: number, mode: number, type: '0' | '5'): Buffer {
  if (Buffer.byteLength(name) > 100) throw new Error(`tar entry name too long: ${name}`);
  const header = Buffer.alloc(BLOCK);
  header.write(name, 0, 100, 'utf8');
  header.write(octal(mode, 8), 100);
  header.write(octal(0, 8), 108);
  header.write(octal(0, 8), 116);
  header.write(octal(size, 12), 124);
  header.write(octal(0, 12), 136);
  header.write('        ', 148);
  header.write(type, 156);
  header.write('ustar\0', 257);
  header.write('00', 263);
  let sum = 0;
  for (const byte of header) sum += byte;
  header.write(octal(sum, 7) + ' ', 148);
  return header;
}

export interface TarEntry {
  readonly name: string;
  /** Absent for a directory. */
  readonly content?: Buffer;
  readonly mode: number;
}

/** A tar stream of the entries, in order, with fixed owners and times (reproducible). */
export function tar(entries: readonly TarEntry[]): Buffer {
  const parts: Buffer[] = [];
  for (const entry of entries) {
    if (entry.content === undefined) {
      parts.push(
        tarHeader(entry.name.endsWith('/') ? entry.name : `${entry.name}/`, 0, entry.mode, '5'),
      );
      continue;
    }
    parts.push(tarHeader(entry.name, entry.content.length, entry.mode, '0'), entry.content);
    const pad = (BLOCK - (entry.content.length % BLOCK)) % BLOCK;
    if (pad > 0) parts.push(Buffer.alloc(pad));
  }
  parts.push(Buffer.alloc(BLOCK * 2));
  return Buffer.concat(parts);
}

function sha256(data: Buffer | string): string {
  return createHash('sha256').update(data).digest('hex');
}

function goArch(): string {
  if (process.arch === 'x64') return 'amd64';
  return process.arch;
}

/** The layer: the binary at its path, its parent directories, and the usual empty ones. */
function layerEntries(spec: ImageSpec, binary: Buffer): TarEntry[] {
  const dirs = new Set<string>(['etc', 'tmp', 'var', 'var/run']);
  const parts = spec.path.split('/');
  for (let i = 1; i < parts.length; i++) dirs.add(parts.slice(0, i).join('/'));
  return [
    ...[...dirs].sort().map((name) => ({ name, mode: name === 'tmp' ? 0o1777 : 0o755 })),
    { name: spec.path, content: binary, mode: 0o755 },
  ];
}

/** An OCI image layout archive holding one single-layer image named `spec.name`. */
export function ociArchive(spec: ImageSpec, binary: Buffer): Buffer {
  return ociImageArchive({
    name: spec.name,
    layer: layerEntries(spec, binary),
    config: { Entrypoint: [...spec.entrypoint], Env: [PATH_ENV], WorkingDir: '/' },
  });
}

export interface ImageConfig {
  readonly Entrypoint: readonly string[];
  readonly Env: readonly string[];
  readonly WorkingDir: string;
  /** `uid:gid`; absent runs as root. */
  readonly User?: string;
}

/** An OCI image layout archive of one image named `name` whose one layer holds `layer`. */
export function ociImageArchive(image: {
  readonly name: string;
  readonly layer: readonly TarEntry[];
  readonly config: ImageConfig;
}): Buffer {
  const layerTar = tar(image.layer);
  const layerDigest = sha256(layerTar);
  const config = JSON.stringify({
    architecture: goArch(),
    os: 'linux',
    config: image.config,
    rootfs: { type: 'layers', diff_ids: [`sha256:${layerDigest}`] },
    history: [{ created_by: 'nats-manager local node image' }],
  });
  const manifest = JSON.stringify({
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: {
      mediaType: 'application/vnd.oci.image.config.v1+json',
      digest: `sha256:${sha256(config)}`,
      size: Buffer.byteLength(config),
    },
    layers: [
      {
        mediaType: 'application/vnd.oci.image.layer.v1.tar',
        digest: `sha256:${layerDigest}`,
        size: layerTar.length,
      },
    ],
  });
  const index = JSON.stringify({
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.index.v1+json',
    manifests: [
      {
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        digest: `sha256:${sha256(manifest)}`,
        size: Buffer.byteLength(manifest),
        annotations: {
          'io.containerd.image.name': image.name,
          'org.opencontainers.image.ref.name': image.name,
        },
      },
    ],
  });
  const blob = (data: Buffer | string): TarEntry => ({
    name: `blobs/sha256/${sha256(data)}`,
    content: Buffer.isBuffer(data) ? data : Buffer.from(data),
    mode: 0o644,
  });
  return tar([
    { name: 'oci-layout', content: Buffer.from('{"imageLayoutVersion":"1.0.0"}'), mode: 0o644 },
    { name: 'index.json', content: Buffer.from(index), mode: 0o644 },
    { name: 'blobs', mode: 0o755 },
    { name: 'blobs/sha256', mode: 0o755 },
    blob(config),
    blob(manifest),
    blob(layerTar),
  ]);
}

export interface BuiltImage {
  readonly name: string;
  readonly archive: string;
}

/** Builds (or finds in the cache) the archive of every node image; binaries built first. */
export async function ensureImages(log: Log): Promise<BuiltImage[]> {
  const specs = nodeImages();
  const bins = await ensureBinaries(
    specs.map((spec) => spec.binary),
    log,
  );
  return specs.map((spec) => {
    const binaryPath = bins[spec.binary];
    const key = sha256(JSON.stringify({ spec, binaryPath, format: 1 })).slice(0, 12);
    const safe = spec.name.replaceAll(/[^A-Za-z0-9.-]/g, '_');
    const archive = join(cacheRoot(), 'images', `${safe}-${key}.tar`);
    if (!existsSync(archive)) {
      mkdirSync(dirname(archive), { recursive: true });
      const partial = `${archive}.partial-${String(process.pid)}`;
      writeFileSync(partial, ociArchive(spec, readFileSync(binaryPath)));
      renameSync(partial, archive);
      log(`packed image ${spec.name} -> ${archive}`);
    }
    return { name: spec.name, archive };
  });
}
