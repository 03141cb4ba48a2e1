// The plane's own HTTP: readiness checks and the few objects the node's harness writes, before
// any kubeconfig exists. Each goes through the project's one exchange (src/kube/transport.ts),
// so it has a deadline like every other request.
import { exchange, type Method } from '../kube/transport.ts';

export interface TlsClient {
  readonly ca?: string;
  readonly cert?: string;
  readonly key?: string;
}

export interface PlaneResponse {
  readonly status: number;
  readonly body: string;
}

const DEFAULT_DEADLINE_MS = 5_000;
const CHECK_DEADLINE_MS = 2_000;

export async function planeRequest(
  url: string,
  tls: TlsClient,
  options: { method?: Method; body?: unknown; contentType?: string; deadlineMs?: number } = {},
): Promise<PlaneResponse> {
  const payload = options.body === undefined ? undefined : JSON.stringify(options.body);
  const { status, text } = await exchange({
    url: new URL(url),
    method: options.method ?? 'GET',
    timeoutMs: options.deadlineMs ?? DEFAULT_DEADLINE_MS,
    payload,
    options: {
      ...tls,
      // Without a CA the caller checks a loopback port it just started, not an identity.
      rejectUnauthorized: tls.ca !== undefined,
      headers:
        payload === undefined
          ? {}
          : {
              'content-type': options.contentType ?? 'application/json',
              'content-length': String(Buffer.byteLength(payload)),
            },
    },
  });
  return { status, body: text };
}

export async function httpsGet(url: string, tls: TlsClient): Promise<PlaneResponse> {
  return planeRequest(url, tls, { deadlineMs: CHECK_DEADLINE_MS });
}

/** A plain-HTTP readiness endpoint on loopback (etcd, CoreDNS, kube-proxy). */
export async function httpGet(url: string, deadlineMs = CHECK_DEADLINE_MS): Promise<PlaneResponse> {
  return planeRequest(url, {}, { deadlineMs });
}
