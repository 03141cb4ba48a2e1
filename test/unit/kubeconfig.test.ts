// The kubeconfig reader the manager starts with instead of @kubernetes/client-node's loader.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type { RequestOptions } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { dump } from 'js-yaml';
import { createCertificateAuthority } from '../../certs/x509.ts';
import { readKubeconfig, staticAccess } from '../../src/kube/kubeconfig.ts';

const b64 = (text: string): string => Buffer.from(text).toString('base64');
/** Real PEMs: the TLS context is built from them. */
const pki = createCertificateAuthority('kubeconfig-test', 1);

function kubeconfig(user: Record<string, unknown>, cluster: Record<string, unknown> = {}): unknown {
  return {
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: 'c', cluster: { server: 'https://127.0.0.1:6443', ...cluster } }],
    users: [{ name: 'u', user }],
    contexts: [
      { name: 'other', context: { cluster: 'missing', user: 'u' } },
      { name: 'ctx', context: { cluster: 'c', user: 'u' } },
    ],
    'current-context': 'ctx',
  };
}

describe('readKubeconfig', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'kubeconfig-'));
  });
  afterEach(() => {
    rmSync(dir, { recursive: true, force: true });
  });
  const write = (content: unknown): string => {
    const path = join(dir, 'config');
    writeFileSync(path, dump(content));
    return path;
  };
  const optionsOf = async (path: string): Promise<RequestOptions> => {
    const access = readKubeconfig(path);
    if (access === undefined) throw new Error('not read');
    const options: RequestOptions = { headers: { Accept: 'application/json' } };
    await access.applyToHTTPSOptions(options);
    return options;
  };

  it('takes the current context: server, inline CA and client certificate', async () => {
    const path = write(
      kubeconfig(
        { 'client-certificate-data': b64(pki.certPem), 'client-key-data': b64(pki.keyPem) },
        { 'certificate-authority-data': b64(pki.certPem) },
      ),
    );
    expect(readKubeconfig(path)?.getCurrentCluster()?.server).toBe('https://127.0.0.1:6443');
    const options = await optionsOf(path);
    expect(options).toMatchObject({ ca: pki.certPem, cert: pki.certPem, key: pki.keyPem });
    expect(options.headers).toEqual({ Accept: 'application/json' });
  });

  it('reads files relative to the kubeconfig, a bearer token, and insecure-skip-tls-verify', async () => {
    writeFileSync(join(dir, 'ca.crt'), 'CA-FILE');
    const path = write(
      kubeconfig(
        { token: 'abc' },
        { 'certificate-authority': 'ca.crt', 'insecure-skip-tls-verify': true },
      ),
    );
    const options = await optionsOf(path);
    expect(options).toMatchObject({ ca: 'CA-FILE', rejectUnauthorized: false });
    expect(options.headers).toEqual({ Accept: 'application/json', Authorization: 'Bearer abc' });
  });

  it('leaves exec and auth-provider users to @kubernetes/client-node', () => {
    expect(readKubeconfig(write(kubeconfig({ exec: { command: 'x' } })))).toBeUndefined();
    expect(
      readKubeconfig(write(kubeconfig({ 'auth-provider': { name: 'oidc' } }))),
    ).toBeUndefined();
  });

  it('says what is missing', () => {
    const config = kubeconfig({ token: 'x' }) as Record<string, unknown>;
    expect(() => readKubeconfig(write({ ...config, 'current-context': 'other' }))).toThrow(
      'no cluster "missing"',
    );
  });
});

describe('staticAccess', () => {
  it('re-reads a token file, so a rotated service account token is used', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'token-'));
    try {
      const tokenFile = join(dir, 'token');
      writeFileSync(tokenFile, 'first\n');
      const access = staticAccess({ server: 'https://10.0.0.1:443', tokenFile });
      const options: RequestOptions = {};
      await access.applyToHTTPSOptions(options);
      expect(options.headers).toEqual({ Authorization: 'Bearer first' });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('gives every request one TLS context, built from its certificates once', async () => {
    const access = staticAccess({
      server: 'https://10.0.0.1:443',
      caPem: pki.certPem,
      certPem: pki.certPem,
      keyPem: pki.keyPem,
    });
    const first: RequestOptions & { secureContext?: unknown } = {};
    const second: RequestOptions & { secureContext?: unknown } = {};
    await access.applyToHTTPSOptions(first);
    await access.applyToHTTPSOptions(second);
    expect(first.secureContext).toHaveProperty('context');
    expect(second.secureContext).toBe(first.secureContext);
    expect(first).toMatchObject({ ca: pki.certPem, cert: pki.certPem, key: pki.keyPem });
  });
});
