// Where the API server is and how to prove who we are: what the transport needs from a
// kubeconfig or a pod's service account, and nothing more.
//
// Read here instead of by @kubernetes/client-node's KubeConfig, which the manager would otherwise
// load only for this: importing that package costs about a second and 90 MB of RSS at start
// (bench/README.md). A kubeconfig this reader does not cover (exec and auth-provider plugins,
// several files in KUBECONFIG) is still handed to KubeConfig, loaded only then.
import { readFileSync, statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import type { RequestOptions as HttpsRequestOptions } from 'node:https';
import { createSecureContext, type SecureContext } from 'node:tls';
import { dirname, isAbsolute, join } from 'node:path';
import { load } from 'js-yaml';
import { isRecord } from '../base/json.ts';

/** The API server and the credentials for a request to it; @kubernetes/client-node's KubeConfig is one. */
export interface ClusterAccess {
  getCurrentCluster(): { readonly server: string } | null;
  /** Adds the TLS settings and credentials to the options of one request. */
  applyToHTTPSOptions(options: HttpsRequestOptions): Promise<void>;
}

export const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';
// A projected token is rotated by the kubelet well before it expires; re-read it this often.
const TOKEN_REREAD_MS = 60_000;

export interface StaticCredentials {
  readonly server: string;
  readonly caPem?: string;
  readonly certPem?: string;
  readonly keyPem?: string;
  readonly token?: string;
  /** Read again every minute: a projected service account token rotates. */
  readonly tokenFile?: string;
  readonly insecureSkipTlsVerify?: boolean;
  readonly tlsServerName?: string;
  readonly basicAuth?: { readonly username: string; readonly password: string };
}

/** Access with fixed TLS material and a bearer token, client certificate or basic auth. */
export function staticAccess(credentials: StaticCredentials): ClusterAccess {
  // One TLS context for every connection. Node otherwise builds one per socket from the same
  // PEMs, and every watch has a socket of its own: about 30 KB of memory each, kept while it is
  // open, and the PEMs parsed again at every reconnect.
  let context: SecureContext | undefined;
  const secureContext = (): SecureContext =>
    (context ??= createSecureContext({
      ...(credentials.caPem === undefined ? {} : { ca: credentials.caPem }),
      ...(credentials.certPem === undefined ? {} : { cert: credentials.certPem }),
      ...(credentials.keyPem === undefined ? {} : { key: credentials.keyPem }),
    }));
  let token = credentials.token;
  let tokenReadAt = Number.NEGATIVE_INFINITY;
  const currentToken = async (): Promise<string | undefined> => {
    const file = credentials.tokenFile;
    if (file === undefined) return token;
    if (Date.now() - tokenReadAt > TOKEN_REREAD_MS) {
      token = (await readFile(file, 'utf8')).trim();
      tokenReadAt = Date.now();
    }
    return token;
  };
  return {
    getCurrentCluster: () => ({ server: credentials.server }),
    applyToHTTPSOptions: async (options) => {
      if (credentials.caPem !== undefined) options.ca = credentials.caPem;
      if (credentials.certPem !== undefined) options.cert = credentials.certPem;
      if (credentials.keyPem !== undefined) options.key = credentials.keyPem;
      // https.RequestOptions does not name it, but node:https hands its options to tls.connect.
      Object.assign(options, { secureContext: secureContext() });
      if (credentials.insecureSkipTlsVerify === true) options.rejectUnauthorized = false;
      if (credentials.tlsServerName !== undefined) options.servername = credentials.tlsServerName;
      const headers: Record<string, string> = {
        ...(options.headers as Record<string, string> | undefined),
      };
      const bearer = await currentToken();
      if (bearer !== undefined && bearer !== '') headers.Authorization = `Bearer ${bearer}`;
      else if (credentials.basicAuth !== undefined) {
        const { username, password } = credentials.basicAuth;
        headers.Authorization = `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}`;
      }
      options.headers = headers;
    },
  };
}

/** The pod's service account, as client-go's rest.InClusterConfig() reads it. */
export function inClusterAccess(env: NodeJS.ProcessEnv = process.env): ClusterAccess {
  const host = env.KUBERNETES_SERVICE_HOST ?? '';
  const port = env.KUBERNETES_SERVICE_PORT ?? '443';
  if (host === '') throw new Error('KUBERNETES_SERVICE_HOST is not set: not running in a pod');
  const server = `https://${host.includes(':') ? `[${host}]` : host}:${port}`;
  return staticAccess({
    server,
    caPem: readFileSync(join(SERVICE_ACCOUNT_DIR, 'ca.crt'), 'utf8'),
    tokenFile: join(SERVICE_ACCOUNT_DIR, 'token'),
  });
}

type Entry = Record<string, unknown>;

function named(list: unknown, name: string, what: string): Entry {
  const items: unknown[] = Array.isArray(list) ? list : [];
  const found = items.find((item) => isRecord(item) && item.name === name);
  const body: unknown = isRecord(found) ? found[what] : undefined;
  if (!isRecord(body)) throw new Error(`the kubeconfig has no ${what} "${name}"`);
  return body;
}

function text(entry: Entry, key: string): string | undefined {
  const value = entry[key];
  return typeof value === 'string' && value !== '' ? value : undefined;
}

/** Inline base64 data, else the file it names (relative to the kubeconfig's directory). */
function material(entry: Entry, key: string, base: string): string | undefined {
  const data = text(entry, `${key}-data`);
  if (data !== undefined) return Buffer.from(data, 'base64').toString('utf8');
  const file = text(entry, key);
  if (file === undefined) return undefined;
  return readFileSync(isAbsolute(file) ? file : join(base, file), 'utf8');
}

/**
 * The current context of one kubeconfig file, or undefined when it needs what only
 * @kubernetes/client-node does (an exec or auth-provider plugin).
 */
export function readKubeconfig(path: string): ClusterAccess | undefined {
  const config = load(readFileSync(path, 'utf8'));
  if (!isRecord(config)) throw new Error(`${path} is not a kubeconfig`);
  const contextName = text(config, 'current-context');
  if (contextName === undefined) throw new Error(`${path} has no current-context`);
  const context = named(config.contexts, contextName, 'context');
  const cluster = named(config.clusters, text(context, 'cluster') ?? '', 'cluster');
  const userName = text(context, 'user');
  const user = userName === undefined ? {} : named(config.users, userName, 'user');
  if (user.exec !== undefined || user['auth-provider'] !== undefined) return undefined;
  const server = text(cluster, 'server');
  if (server === undefined)
    throw new Error(`${path}: cluster of context ${contextName} has no server`);
  const base = dirname(path);
  const tokenFile = text(user, 'tokenFile');
  const username = text(user, 'username');
  return staticAccess({
    server,
    caPem: material(cluster, 'certificate-authority', base),
    certPem: material(user, 'client-certificate', base),
    keyPem: material(user, 'client-key', base),
    token: text(user, 'token'),
    ...(tokenFile === undefined
      ? {}
      : { tokenFile: isAbsolute(tokenFile) ? tokenFile : join(base, tokenFile) }),
    insecureSkipTlsVerify: cluster['insecure-skip-tls-verify'] === true,
    tlsServerName: text(cluster, 'tls-server-name'),
    ...(username === undefined
      ? {}
      : { basicAuth: { username, password: text(user, 'password') ?? '' } }),
  });
}

/**
 * The cluster KUBECONFIG names. One file of the usual kinds is read here; anything else goes to
 * @kubernetes/client-node's loader, imported only then.
 */
export async function loadKubeconfig(env: NodeJS.ProcessEnv = process.env): Promise<ClusterAccess> {
  const paths = (env.KUBECONFIG ?? '').split(':').filter((p) => p !== '');
  const [only] = paths;
  if (paths.length === 1 && only !== undefined && statSync(only).isFile()) {
    const access = readKubeconfig(only);
    if (access !== undefined) return access;
  }
  let loader: typeof import('@kubernetes/client-node');
  try {
    loader = await import('@kubernetes/client-node');
  } catch (error) {
    // The image's bundle leaves the loader out (src/localplane/manager-image.ts).
    throw new Error(
      `KUBECONFIG ${JSON.stringify(env.KUBECONFIG ?? '')} needs @kubernetes/client-node ` +
        '(several files, or a user with exec or an auth provider), which this build does not ' +
        'include: give one file with a certificate, a token or basic auth, or run from the sources',
      { cause: error },
    );
  }
  const kc = new loader.KubeConfig();
  kc.loadFromDefault();
  return kc;
}
