// The local node's pure parts: image names and archives, address ranges, and the pin that must
// stay in step with the control plane's.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_IMAGES } from '../../src/render/context.ts';
import { nodeImages, normalizeImageName, ociArchive, tar } from '../../src/localplane/images.ts';
import { nodeUnavailableReason } from '../../src/localplane/host.ts';
import { cidrsOverlap, conflictingRoutes, NODE_NETWORK } from '../../src/localplane/node.ts';

const PINS = new URL('../../src/localplane/pins/', import.meta.url);

describe('node images', () => {
  it('names images as containerd stores them', () => {
    expect(normalizeImageName('nats:2.14.9-alpine')).toBe('docker.io/library/nats:2.14.9-alpine');
    expect(normalizeImageName('natsio/prometheus-nats-exporter:0.20.1')).toBe(
      'docker.io/natsio/prometheus-nats-exporter:0.20.1',
    );
    expect(normalizeImageName('localhost/x/pause:v1')).toBe('localhost/x/pause:v1');
    expect(normalizeImageName('europe-docker.pkg.dev/kyma/nats:1')).toBe(
      'europe-docker.pkg.dev/kyma/nats:1',
    );
  });

  it('builds one image per default image of the manager, at the pinned versions', () => {
    const names = nodeImages().map((image) => image.name);
    for (const image of Object.values(DEFAULT_IMAGES) as string[]) {
      expect(names).toContain(normalizeImageName(image));
    }
  });

  it('packs an OCI layout archive that tar reads and whose blobs match their digests', () => {
    const dir = mkdtempSync(join(tmpdir(), 'oci-'));
    try {
      const archive = ociArchive(
        {
          name: 'docker.io/library/x:1',
          binary: 'pause',
          path: 'usr/local/bin/x',
          entrypoint: ['x'],
        },
        Buffer.from('binary'),
      );
      writeFileSync(join(dir, 'image.tar'), archive);
      execFileSync('tar', ['-xf', join(dir, 'image.tar'), '-C', dir]);
      const index = JSON.parse(readFileSync(join(dir, 'index.json'), 'utf8')) as {
        manifests: { digest: string; annotations: Record<string, string> }[];
      };
      expect(index.manifests[0]?.annotations['io.containerd.image.name']).toBe(
        'docker.io/library/x:1',
      );
      const digest = (index.manifests[0]?.digest ?? '').replace('sha256:', '');
      const sum = execFileSync('sha256sum', [join(dir, 'blobs', 'sha256', digest)], {
        encoding: 'utf8',
      });
      expect(sum.slice(0, 64)).toBe(digest);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('writes tar headers with checksums tar accepts', () => {
    const listing = execFileSync('tar', ['-tvf', '-'], {
      input: tar([
        { name: 'etc', mode: 0o755 },
        { name: 'etc/file', content: Buffer.alloc(513, 1), mode: 0o644 },
      ]),
      encoding: 'utf8',
    });
    expect(listing).toMatch(/^drwxr-xr-x 0\/0 +0 .* etc\/$/m);
    expect(listing).toMatch(/^-rw-r--r-- 0\/0 +513 .* etc\/file$/m);
  });
});

describe('node network', () => {
  it('detects overlapping ranges', () => {
    expect(cidrsOverlap('10.244.0.0/24', '10.244.0.128/25')).toBe(true);
    expect(cidrsOverlap('10.244.0.0/24', '10.244.1.0/24')).toBe(false);
    expect(cidrsOverlap('10.0.0.0/8', NODE_NETWORK.serviceCidr)).toBe(true);
  });

  it('names the host routes the pod or service range would shadow', () => {
    expect(
      conflictingRoutes([
        'default via 192.0.2.1 dev eth0',
        '192.0.2.0/24 dev eth0 proto kernel scope link src 192.0.2.2',
        '10.96.0.0/16 dev tun0',
        'local 127.0.0.1 dev lo table local',
      ]),
    ).toEqual(['10.96.0.0/16 dev tun0']);
  });
});

describe('node pins', () => {
  it('pin the node to the same Kubernetes version and replaces as the control plane', () => {
    const lines = (pin: string): string[] =>
      readFileSync(new URL(`${pin}/go.mod`, PINS), 'utf8')
        .split('\n')
        .filter((line) => /^\s*(require|replace|k8s\.io\/)/.test(line));
    expect(lines('kubernetes-node')).toEqual(lines('kubernetes'));
  });
});

describe('a host that cannot run a node', () => {
  it('is told why at once, before anything starts (here: not root)', () => {
    const started = Date.now();
    // As another user than root: the check reads only /proc and the PATH, and starts nothing.
    expect(nodeUnavailableReason(65534)).toMatch(/^the local node needs root/);
    expect(Date.now() - started).toBeLessThan(1_000);
  });
});
