import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensureBinaries, pinnedBinary } from '../../src/localplane/binaries.ts';

describe('pinned binaries', () => {
  const saved = { PATH: process.env.PATH, NATS_MANAGER_CACHE: process.env.NATS_MANAGER_CACHE };
  let emptyCache = '';

  beforeEach(() => {
    emptyCache = mkdtempSync(join(tmpdir(), 'nats-manager-cache-'));
    process.env.NATS_MANAGER_CACHE = emptyCache;
  });

  afterEach(() => {
    process.env.PATH = saved.PATH;
    if (saved.NATS_MANAGER_CACHE === undefined) delete process.env.NATS_MANAGER_CACHE;
    else process.env.NATS_MANAGER_CACHE = saved.NATS_MANAGER_CACHE;
    rmSync(emptyCache, { recursive: true, force: true });
  });

  it('names each binary by its pinned version and a hash of the pin', () => {
    expect(pinnedBinary('kube-apiserver').version).toBe('v1.36.3');
    expect(pinnedBinary('kube-controller-manager').version).toBe('v1.36.3');
    expect(pinnedBinary('etcd').version).toMatch(/^v3\.6\.\d+$/);
    expect(pinnedBinary('nats-server').version).toMatch(/^v2\.(1[4-9]|[2-9]\d)\.\d+$/);
    expect(pinnedBinary('etcd').path).toMatch(
      new RegExp(`^${emptyCache}/bin/etcd-v3\\.6\\.\\d+-[0-9a-f]{10}/etcd$`),
    );
  });

  it('says clearly that Go is needed when a binary must be built and go is missing', async () => {
    process.env.PATH = '/nonexistent';
    await expect(ensureBinaries(['etcd'], () => undefined)).rejects.toThrow(
      /Go is needed once to build the local control plane.*`go` was not found on the PATH/s,
    );
  });
});
