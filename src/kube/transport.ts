// The one way this project talks HTTP to kube-apiserver. Every exchange has a deadline and can
// be aborted: a request that hangs (a half-open connection, an API server that stopped
// answering) fails after its deadline instead of holding up whatever waits on it.
//
// Plain node:http(s) instead of the typed clients of @kubernetes/client-node: those serialize
// bodies through generated models, which drop keys the model does not know (x-kubernetes-
// validations in a CRD schema, fields newer than the client), take no AbortSignal, and lose the
// Status body of a failed watch. A ClusterAccess (src/kube/kubeconfig.ts) supplies the server,
// TLS and credentials.
import type { Agent as HttpAgent, ClientRequest, IncomingMessage } from 'node:http';
import {
  Agent as HttpsAgent,
  request as httpsRequest,
  type RequestOptions as HttpsRequestOptions,
} from 'node:https';
import type { ClusterAccess } from './kubeconfig.ts';
import { http } from '../base/http.ts';
import { isRecord } from '../base/json.ts';

export class KubeApiError extends Error {
  readonly status: number;
  readonly reason: string | undefined;
  readonly body: unknown;

  constructor(method: string, path: string, status: number, body: unknown) {
    const fields = isRecord(body) ? body : {};
    const message = typeof fields.message === 'string' ? fields.message : JSON.stringify(body);
    super(`${method} ${path}: ${String(status)} ${message}`);
    this.name = 'KubeApiError';
    this.status = status;
    this.reason = typeof fields.reason === 'string' ? fields.reason : undefined;
    this.body = body;
  }
}

/** The request's deadline passed before the exchange ended. */
export class RequestTimeoutError extends Error {
  constructor(what: string, ms: number) {
    super(`${what}: no answer within ${String(ms)} ms`);
    this.name = 'RequestTimeoutError';
  }
}

/** Whether the API answered `status` (404 not found, 409 conflict or already exists, ...). */
export function isApiStatus(error: unknown, status: number): boolean {
  return error instanceof KubeApiError && error.status === status;
}

export interface CallOptions {
  /** Aborts the exchange: the reconcile it belongs to was cancelled, the manager stops. */
  readonly signal?: AbortSignal;
  /** Deadline of the whole exchange; the transport's default when absent. */
  readonly timeoutMs?: number;
}

export type Method = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

export interface HttpRequest extends CallOptions {
  readonly method: Method;
  readonly path: string;
  readonly query?: Readonly<Record<string, string | undefined>>;
  readonly body?: unknown;
  readonly contentType?: string;
}

export interface StreamRequest {
  readonly path: string;
  readonly query?: Readonly<Record<string, string | undefined>>;
  /** Ends the stream; required: a stream without a way to end it is a leak. */
  readonly signal: AbortSignal;
  /** Deadline for the response headers; the body is the caller's to time. */
  readonly timeoutMs?: number;
}

export interface Transport {
  /** The API server's URL. */
  readonly server: string;
  /**
   * One JSON exchange: the body of a 2xx answer; a KubeApiError for any other status, a
   * RequestTimeoutError after the deadline, the signal's reason when aborted.
   */
  json(request: HttpRequest): Promise<unknown>;
  /** A streaming GET (a watch), on a connection of its own; resolves once headers arrived. */
  stream(request: StreamRequest): Promise<IncomingMessage>;
  /** Closes idle pooled connections. */
  close(): void;
}

export interface TransportSettings {
  /** Default deadline of an exchange. 30 s, as kubectl's default request timeout is none but
   * kube-apiserver ends a request after 60 s: half of that leaves room for one retry. */
  readonly timeoutMs?: number;
}

export const DEFAULT_TIMEOUT_MS = 30_000;

interface Deadline {
  readonly signal: AbortSignal;
  clear(): void;
}

/** A signal that fires at the deadline or when `parent` does, whichever comes first. */
function deadline(what: string, ms: number, parent: AbortSignal | undefined): Deadline {
  const controller = new AbortController();
  const timer = setTimeout(() => {
    controller.abort(new RequestTimeoutError(what, ms));
  }, ms);
  const onParent = (): void => {
    controller.abort(abortReason(parent));
  };
  if (parent?.aborted === true) onParent();
  else parent?.addEventListener('abort', onParent, { once: true });
  return {
    signal: controller.signal,
    clear: () => {
      clearTimeout(timer);
      parent?.removeEventListener('abort', onParent);
    },
  };
}

function abortReason(signal: AbortSignal | undefined): Error {
  const reason: unknown = signal?.reason;
  if (reason instanceof Error) return reason;
  const error = new Error(typeof reason === 'string' ? reason : 'the request was aborted');
  error.name = 'AbortError';
  return error;
}

function parseBody(text: string): unknown {
  if (text === '') return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    // Not JSON: keep the text for the error message.
    return text;
  }
}

function readAll(res: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    res.on('data', (chunk: Buffer) => chunks.push(chunk));
    res.on('end', () => {
      resolve(Buffer.concat(chunks).toString('utf8'));
    });
    res.on('error', reject);
    res.on('aborted', () => {
      reject(new Error('connection closed before the response ended'));
    });
  });
}

/** One exchange, as `exchange` takes it. */
export interface RawRequest {
  readonly url: URL;
  readonly method: Method;
  /** Names the exchange in a timeout error. */
  readonly what?: string;
  readonly timeoutMs: number;
  readonly signal?: AbortSignal | undefined;
  readonly payload?: string | undefined;
  /** TLS settings and headers, as node:https takes them. */
  readonly options?: HttpsRequestOptions;
  /** Completes the options inside the deadline (credentials that may have to be fetched). */
  readonly prepare?: (options: HttpsRequestOptions) => Promise<void>;
  /** A keep-alive pool, or false for a connection of its own. */
  readonly agent?: HttpAgent | false;
}

/** What an exchange answered, whatever the status. */
export interface RawResponse {
  readonly status: number;
  readonly text: string;
}

/**
 * One HTTP(S) request and its whole answer under a deadline, also abortable by `signal`. Every
 * request/response exchange of the project goes through here: those of the client below and the
 * local plane's readiness checks. A hung connection is destroyed at the deadline, so a pooled
 * socket that went silent never serves again.
 */
export async function exchange(request: RawRequest): Promise<RawResponse> {
  const what = request.what ?? `${request.method} ${request.url.pathname}`;
  const limit = deadline(what, request.timeoutMs, request.signal);
  try {
    const options: HttpsRequestOptions = { ...request.options, method: request.method };
    await request.prepare?.(options);
    limit.signal.throwIfAborted();
    const send = request.url.protocol === 'http:' ? http.request : httpsRequest;
    const req = send(request.url, {
      ...options,
      agent: request.agent ?? false,
      signal: limit.signal,
    });
    const response = new Promise<IncomingMessage>((resolve, reject) => {
      req.on('response', resolve);
      req.on('error', reject);
    });
    req.end(request.payload);
    const res = await response;
    const text = await Promise.race([readAll(res), rejectOnAbort(limit.signal)]);
    return { status: res.statusCode ?? 0, text };
  } catch (error) {
    if (limit.signal.aborted) throw abortReason(limit.signal);
    throw error;
  } finally {
    limit.clear();
  }
}

function rejectOnAbort(signal: AbortSignal): Promise<never> {
  return new Promise<never>((_resolve, reject) => {
    const fail = (): void => {
      reject(abortReason(signal));
    };
    if (signal.aborted) fail();
    else signal.addEventListener('abort', fail, { once: true });
  });
}

export function createTransport(kc: ClusterAccess, settings: TransportSettings = {}): Transport {
  const cluster = kc.getCurrentCluster();
  if (cluster === null) throw new Error('the kubeconfig has no current cluster');
  const server = cluster.server;
  const secure = new URL(server).protocol !== 'http:';
  const send = secure ? httpsRequest : http.request;
  // Pooled: a reconcile's requests reuse warm TLS connections. A hung one is destroyed at its
  // deadline, so it never goes back to the pool.
  const agent = secure ? new HttpsAgent({ keepAlive: true }) : new http.Agent({ keepAlive: true });
  const defaultTimeoutMs = settings.timeoutMs ?? DEFAULT_TIMEOUT_MS;

  // A watch's connection: a fresh one each time (a pooled socket may be the one that went
  // silent), open until the caller's signal ends it.
  const open = async (
    request: HttpRequest,
    signal: AbortSignal,
  ): Promise<{ req: ClientRequest; response: Promise<IncomingMessage>; url: URL }> => {
    const url = new URL(request.path, server);
    for (const [key, value] of Object.entries(request.query ?? {})) {
      if (value !== undefined) url.searchParams.set(key, value);
    }
    const options: HttpsRequestOptions = { method: request.method };
    // Per request: credentials may rotate (a projected service account token).
    await kc.applyToHTTPSOptions(options);
    const payload = request.body === undefined ? undefined : JSON.stringify(request.body);
    const headers = {
      ...(options.headers as Record<string, string> | undefined),
      Accept: 'application/json',
      ...(payload === undefined
        ? {}
        : { 'Content-Type': request.contentType ?? 'application/json' }),
    };
    signal.throwIfAborted();
    const req = send(url, { ...options, headers, agent: false, signal });
    const response = new Promise<IncomingMessage>((resolve, reject) => {
      req.on('response', resolve);
      req.on('error', (error) => {
        reject(signal.aborted ? abortReason(signal) : error);
      });
    });
    req.end(payload);
    return { req, response, url };
  };

  return {
    server,
    json: async (request) => {
      const url = new URL(request.path, server);
      for (const [key, value] of Object.entries(request.query ?? {})) {
        if (value !== undefined) url.searchParams.set(key, value);
      }
      const payload = request.body === undefined ? undefined : JSON.stringify(request.body);
      const { status, text } = await exchange({
        url,
        method: request.method,
        what: `${request.method} ${request.path}`,
        timeoutMs: request.timeoutMs ?? defaultTimeoutMs,
        signal: request.signal,
        agent,
        payload,
        // Per request: credentials may rotate (a projected service account token).
        prepare: async (options) => {
          await kc.applyToHTTPSOptions(options);
          options.headers = {
            ...(options.headers as Record<string, string> | undefined),
            Accept: 'application/json',
            // Content-Length always: Node frames no body of a DELETE by itself (no chunked
            // encoding by default there), and the API server then reads the body as the next
            // request on the kept-alive connection ("400 Bad Request").
            ...(payload === undefined
              ? {}
              : {
                  'Content-Type': request.contentType ?? 'application/json',
                  'Content-Length': String(Buffer.byteLength(payload)),
                }),
          };
        },
      });
      const body = parseBody(text);
      if (status >= 200 && status < 300) return body;
      throw new KubeApiError(request.method, url.pathname, status, body);
    },
    stream: async (request) => {
      const ms = request.timeoutMs ?? defaultTimeoutMs;
      const limit = deadline(`WATCH ${request.path}`, ms, request.signal);
      // A fresh connection each time: a pooled socket may be the one that went silent. The
      // caller's signal ends the stream; the deadline only the wait for its headers.
      const { req, response } = await open(
        { method: 'GET', path: request.path, query: request.query },
        request.signal,
      );
      const onLimit = (): void => {
        req.destroy(abortReason(limit.signal));
      };
      if (limit.signal.aborted) onLimit();
      else limit.signal.addEventListener('abort', onLimit, { once: true });
      try {
        return await response;
      } catch (error) {
        if (limit.signal.aborted) throw abortReason(limit.signal);
        throw error;
      } finally {
        limit.signal.removeEventListener('abort', onLimit);
        limit.clear();
      }
    },
    close: () => {
      agent.destroy();
    },
  };
}
