// The mounted-files source on a real directory, laid out and updated the way the kubelet does:
// files are symlinks through `..data`, and an update swaps that one symlink atomically.
import { mkdir, mkdtemp, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  CERTIFICATE_FILES,
  type FileCertificateSource,
  startFileCertificateSource,
} from '../../certs/file-source.ts';
import type { ServingCertificate } from '../../certs/source.ts';
import { createCertificateAuthority, issueCertificate, type KeyPair } from '../../certs/x509.ts';
import { eventually } from '../support/kube.ts';

function contents(pair: KeyPair, ca: KeyPair): Record<string, string> {
  return {
    [CERTIFICATE_FILES.cert]: pair.certPem,
    [CERTIFICATE_FILES.key]: pair.keyPem,
    [CERTIFICATE_FILES.ca]: ca.certPem,
  };
}

let generation = 0;

/** What the kubelet does on every update of a mounted Secret. */
async function atomicWrite(dir: string, files: Record<string, string>): Promise<void> {
  const version = `..version_${String(++generation)}`;
  await mkdir(join(dir, version));
  for (const [name, text] of Object.entries(files)) await writeFile(join(dir, version, name), text);
  await symlink(version, join(dir, '..data_tmp'));
  await rename(join(dir, '..data_tmp'), join(dir, '..data'));
  for (const name of Object.keys(files)) {
    await symlink(join('..data', name), join(dir, name)).catch((error: unknown) => {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    });
  }
}

describe('file certificate source', () => {
  let ca: KeyPair;
  let first: KeyPair;
  let second: KeyPair;
  let dir = '';
  let source: FileCertificateSource | undefined;

  const issue = (): KeyPair =>
    issueCertificate(ca, {
      commonName: 'webhook',
      dnsNames: ['webhook'],
      ipAddresses: ['127.0.0.1'],
      usage: 'server',
      validDays: 90,
    });

  beforeAll(() => {
    ca = createCertificateAuthority('files-test-ca', 365);
    first = issue();
    second = issue();
  });

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'certs-file-source-'));
  });

  afterEach(async () => {
    await source?.close();
    source = undefined;
    await rm(dir, { recursive: true, force: true });
  });

  it('serves the mounted pair and hot-swaps it when the kubelet swaps ..data', async () => {
    await atomicWrite(dir, contents(first, ca));
    source = await startFileCertificateSource({ dir, pollIntervalMs: 60_000 });
    expect(source.current()).toEqual({ ...first, caPem: ca.certPem });
    const seen: ServingCertificate[] = [];
    source.onChange((certificate) => seen.push(certificate));

    await atomicWrite(dir, contents(second, ca));
    // Only the directory watch can see this: the poll is a minute away.
    await eventually('the swapped pair', () => (seen.length > 0 ? true : undefined), 10_000);
    expect(seen).toEqual([{ ...second, caPem: ca.certPem }]);
    expect(source.current().certPem).toBe(second.certPem);
  });

  it('keeps the old pair while a new one is half-written, then takes it whole', async () => {
    await atomicWrite(dir, contents(first, ca));
    source = await startFileCertificateSource({ dir, pollIntervalMs: 60_000 });
    const seen: ServingCertificate[] = [];
    source.onChange((certificate) => seen.push(certificate));

    // Written in place, one file at a time, as a careless writer would.
    await rm(join(dir, 'tls.crt'));
    await writeFile(join(dir, 'tls.crt'), second.certPem);
    await source.reload();
    expect(source.current().certPem).toBe(first.certPem);
    await rm(join(dir, 'tls.key'));
    await writeFile(join(dir, 'tls.key'), second.keyPem.slice(0, 100));
    await source.reload();
    expect(source.current().certPem).toBe(first.certPem);
    await writeFile(join(dir, 'tls.key'), second.keyPem);
    await source.reload();
    expect(source.current()).toEqual({ ...second, caPem: ca.certPem });
    expect(seen.map((certificate) => certificate.certPem)).toEqual([second.certPem]);
  });

  it('polls when no change event arrives', async () => {
    await atomicWrite(dir, contents(first, ca));
    source = await startFileCertificateSource({ dir, pollIntervalMs: 100 });
    const changed = new Promise<ServingCertificate>((resolve) => source?.onChange(resolve));
    // Rewritten behind the symlinks' backs: plain file writes inside the current version.
    await writeFile(join(dir, `..version_${String(generation)}`, 'tls.crt'), second.certPem);
    await writeFile(join(dir, `..version_${String(generation)}`, 'tls.key'), second.keyPem);
    expect((await changed).certPem).toBe(second.certPem);
  });

  it('keeps the old pair when ca.crt is not a certificate', async () => {
    await atomicWrite(dir, contents(first, ca));
    source = await startFileCertificateSource({ dir, pollIntervalMs: 60_000 });
    await atomicWrite(dir, { ...contents(second, ca), 'ca.crt': 'not yet' });
    await source.reload();
    expect(source.current().certPem).toBe(first.certPem);
  });

  it.each<[string, () => Record<string, string>, string]>([
    ['is empty', () => ({}), 'cannot read tls.crt: ENOENT'],
    [
      'holds the key of another certificate',
      () => ({ ...contents(first, ca), 'tls.key': second.keyPem }),
      'tls.crt: private key does not match the certificate',
    ],
    [
      'holds no certificate',
      () => ({ ...contents(first, ca), 'tls.crt': 'pending' }),
      'tls.crt: certificate is not a PEM certificate',
    ],
  ])('refuses to start when the directory %s', async (_, files, problem) => {
    await atomicWrite(dir, files());
    await expect(startFileCertificateSource({ dir })).rejects.toThrow(
      `no usable serving certificate in ${dir}: ${problem}`,
    );
  });
});
