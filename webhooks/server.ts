// The admission webhook server: an express app that decodes AdmissionReviews and hands them to
// the pure handlers, and the HTTPS server around it, which presents the current serving
// certificate and swaps in a rotated one without a restart.
import { createServer, type Server } from 'node:https';
import type { IncomingMessage, RequestListener, ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import express, {
  type ErrorRequestHandler,
  type Express,
  type Request,
  type RequestHandler,
  type Response,
} from 'express';
import type { CertificateSource } from '../certs/source.ts';
import type { Logger } from '../src/base/log.ts';
import type { ServedNats } from '../src/api/rules.ts';
import { mutateNats } from './mutate-nats.ts';
import { protectChildren, type ChildProtectionConfig } from './protect-children.ts';
import { errorMessage } from '../src/base/json.ts';
import type { Asked, StreamReplicas } from '../src/nats/peers.ts';
import {
  answerReview,
  decodeAdmissionReview,
  type AdmissionOutcome,
  type AdmissionRequest,
  type AdmissionResponse,
} from './review.ts';
import {
  LIVE_CHECK_BUDGET_MS,
  shrinkOf,
  withLiveCheck,
  type Shrink,
  type StreamLookup,
} from './scale-down-check.ts';
import {
  growthOf,
  withGrowthCheck,
  type ClaimStorageClass,
  type Growth,
  type StorageClassLookup,
} from './storage-growth-check.ts';
import { validateNatsRequest } from './validate-nats.ts';

export type WebhookName = 'mutate-nats' | 'validate-nats' | 'protect-children';

/** What the handlers need from the manager's configuration (and the provider, if known). */
export type AdmissionConfig = ChildProtectionConfig & Pick<ServedNats, 'provider'>;

export interface AdmissionAppDeps {
  /** Called once per request to a webhook route, after the answer is sent. */
  readonly onAdmission?: (webhook: WebhookName, result: AdmissionOutcome, seconds: number) => void;
  readonly log?: Logger;
  /** Asks the cluster for its streams when an update lowers spec.cluster.size; none: not asked. */
  readonly streams?: StreamLookup;
  /**
   * Reads the StorageClass of the claims when an update raises the file-storage size; none: not
   * asked (the growth is then judged by the rules alone).
   */
  readonly storageClasses?: StorageClassLookup;
}

// etcd refuses objects over ~1.5 MiB; a review carries the object twice (old and new), plus a
// little envelope.
export const BODY_LIMIT_BYTES = 3 * 1024 * 1024;

type Handler = (request: AdmissionRequest, config: AdmissionConfig) => AdmissionResponse;

const HANDLERS: Readonly<Record<WebhookName, Handler>> = {
  'mutate-nats': mutateNats,
  'validate-nats': validateNatsRequest,
  'protect-children': protectChildren,
};

/**
 * Writes a JSON answer in one write. Not express's res.json: its res.send work (a Buffer copy,
 * content negotiation for ETags and freshness, which admission never uses) was a fifth of a
 * request's CPU time under load.
 */
function sendJson(res: Response, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'Content-Type': 'application/json; charset=utf-8',
    'Content-Length': Buffer.byteLength(text),
  });
  res.end(text);
}

function sendError(res: Response, status: number, message: string): void {
  sendJson(res, status, { message });
}

// The apiserver always sends application/json; anything else is not a review.
const requireJson: RequestHandler = (req, res, next) => {
  if (req.is('application/json') === 'application/json') {
    next();
    return;
  }
  sendError(res, 415, 'Content-Type must be application/json');
};

// Far deeper than any object these webhooks review (a StatefulSet nests about 15 levels). A body
// of brackets nested this deep is refused before it is parsed: JSON.parse turns 3 MiB of them
// into hundreds of MB of arrays, and a handful at once would take the manager past its memory limit.
export const MAX_JSON_DEPTH = 100;

/** Whether a JSON text nests objects and arrays deeper than `limit`; string contents are skipped. */
export function nestsDeeperThan(body: Uint8Array, limit: number): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < body.length; i++) {
    const byte = body[i];
    if (inString) {
      if (byte === 0x5c)
        i++; // a backslash escapes the next byte
      else if (byte === 0x22) inString = false;
    } else if (byte === 0x22) inString = true;
    else if (byte === 0x7b || byte === 0x5b) {
      if (++depth > limit) return true;
    } else if (byte === 0x7d || byte === 0x5d) depth--;
  }
  return false;
}

const jsonBody = express.json({
  limit: BODY_LIMIT_BYTES,
  strict: true,
  verify: (_req, _res, body) => {
    if (nestsDeeperThan(body, MAX_JSON_DEPTH)) {
      throw Object.assign(new Error('request body nests too deep'), {
        status: 400,
        type: 'entity.too.deep',
      });
    }
  },
  // No compressed bodies: the apiserver never sends them, and they would let a small request
  // cost a lot of work before the limit applies.
  inflate: false,
  type: () => true,
});

interface HttpError {
  readonly status: number;
  readonly type?: string;
}

function isHttpError(error: unknown): error is HttpError {
  return (
    typeof error === 'object' &&
    error !== null &&
    typeof (error as { status?: unknown }).status === 'number'
  );
}

/** A client-facing message for body-parser's errors; never the error's own text or stack. */
function describeBodyError(error: HttpError): { status: number; message: string } {
  switch (error.type) {
    case 'entity.too.large':
      return { status: 413, message: `request body exceeds ${String(BODY_LIMIT_BYTES)} bytes` };
    case 'entity.too.deep':
      return {
        status: 400,
        message: `request body nests deeper than ${String(MAX_JSON_DEPTH)} levels`,
      };
    case 'entity.parse.failed':
      return { status: 400, message: 'request body is not a JSON object' };
    case 'encoding.unsupported':
      return { status: 415, message: 'request body must not be compressed' };
    case 'charset.unsupported':
      return { status: 415, message: 'request body must be UTF-8' };
    default:
      return error.status >= 400 && error.status < 500
        ? { status: error.status, message: 'bad request' }
        : { status: 500, message: 'internal error' };
  }
}

function errorHandler(log: Logger | undefined): ErrorRequestHandler {
  return (error: unknown, req, res, next) => {
    if (res.headersSent) {
      next(error);
      return;
    }
    const { status, message } = isHttpError(error)
      ? describeBodyError(error)
      : { status: 500, message: 'internal error' };
    if (status >= 500) log?.error('webhook request failed', { path: req.path, error });
    sendError(res, status, message);
  };
}

const outcomes = new WeakMap<Response, AdmissionOutcome>();

function measured(webhook: WebhookName, deps: AdmissionAppDeps): RequestHandler {
  return (_req, res, next) => {
    const { onAdmission } = deps;
    if (onAdmission !== undefined) {
      const start = process.hrtime.bigint();
      res.once('finish', () => {
        const seconds = Number(process.hrtime.bigint() - start) / 1e9;
        try {
          onAdmission(webhook, outcomes.get(res) ?? 'error', seconds);
        } catch (error) {
          deps.log?.error('admission metrics callback failed', { error });
        }
      });
    }
    next();
  };
}

function review(
  webhook: WebhookName,
  config: AdmissionConfig,
  deps: AdmissionAppDeps,
): RequestHandler {
  const handle = HANDLERS[webhook];
  return async (req: Request, res: Response) => {
    const live = webhook === 'validate-nats' ? await liveFacts(req.body, config, deps) : {};
    const answer = answerReview(
      req.body,
      (request) => {
        let response = handle(request, config);
        if (live.shrink !== undefined) {
          response = withLiveCheck(response, live.shrink.shrink, live.shrink.asked);
        }
        if (live.growth !== undefined) {
          response = withGrowthCheck(response, live.growth.growth, live.growth.asked);
        }
        return response;
      },
      (error) => deps.log?.error('admission handler failed', { webhook, error }),
    );
    outcomes.set(res, answer.outcome);
    sendJson(res, answer.httpStatus, answer.body);
  };
}

interface LiveFacts {
  readonly shrink?: { shrink: Shrink; asked: Asked<readonly StreamReplicas[]> };
  readonly growth?: { growth: Growth; asked: Asked<readonly ClaimStorageClass[]> };
}

async function asking<T>(ask: () => Promise<Asked<T>>): Promise<Asked<T>> {
  try {
    return await ask();
  } catch (error) {
    return { ok: false, error: errorMessage(error) };
  }
}

/**
 * What an update needs asked of the cluster, each within the budget (both at once): for one
 * that lowers the size, its streams; for one that raises the file-storage size, the claims'
 * StorageClass.
 */
async function liveFacts(
  body: unknown,
  config: AdmissionConfig,
  deps: AdmissionAppDeps,
): Promise<LiveFacts> {
  const decoded = decodeAdmissionReview(body);
  if (!decoded.ok) return {};
  const shrink = deps.streams === undefined ? undefined : shrinkOf(decoded.request);
  const growth =
    deps.storageClasses === undefined ? undefined : growthOf(decoded.request, config.provider?.());
  const { streams, storageClasses } = deps;
  const [shrinkAsked, growthAsked] = await Promise.all([
    shrink === undefined || streams === undefined
      ? undefined
      : asking(() => streams(shrink, LIVE_CHECK_BUDGET_MS)),
    growth === undefined || storageClasses === undefined
      ? undefined
      : asking(() => storageClasses(growth, LIVE_CHECK_BUDGET_MS)),
  ]);
  return {
    ...(shrink === undefined || shrinkAsked === undefined
      ? {}
      : { shrink: { shrink, asked: shrinkAsked } }),
    ...(growth === undefined || growthAsked === undefined
      ? {}
      : { growth: { growth, asked: growthAsked } }),
  };
}

/**
 * The admission app: POST `/mutate-nats`, `/validate-nats`, `/protect-children`, and GET
 * `/healthz`. Every failure is a JSON answer without internals.
 */
export function createAdmissionApp(config: AdmissionConfig, deps: AdmissionAppDeps = {}): Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.get('/healthz', (_req, res) => {
    res.type('text/plain').send('ok');
  });
  for (const webhook of Object.keys(HANDLERS) as WebhookName[]) {
    const path = `/${webhook}`;
    app.post(path, measured(webhook, deps), requireJson, jsonBody, review(webhook, config, deps));
    app.all(path, (_req, res) => {
      res.set('Allow', 'POST');
      sendError(res, 405, `${path} accepts POST only`);
    });
  }
  app.use((req, res) => {
    sendError(res, 404, `no webhook at ${req.path}`);
  });
  app.use(errorHandler(deps.log));
  return app;
}

export interface WebhookTimeouts {
  /** Until the request headers are in. */
  readonly headersMs: number;
  /** Until the whole request is in. */
  readonly requestMs: number;
  /** How long an idle keep-alive connection stays open. */
  readonly keepAliveMs: number;
  readonly tlsHandshakeMs: number;
}

// The apiserver sends a review at once and waits at most 30 s (timeoutSeconds' maximum; ours are
// 5 s), so a request still arriving after that is a slow or stuck client. Idle connections live
// longer than the apiserver's own 90 s idle timeout: it closes them first, and never sends a
// review on a connection the server is closing at that very moment.
export const DEFAULT_TIMEOUTS: WebhookTimeouts = {
  headersMs: 10_000,
  requestMs: 30_000,
  keepAliveMs: 120_000,
  tlsHandshakeMs: 10_000,
};

export interface WebhookServerOptions {
  readonly app: RequestListener;
  readonly host: string;
  /** 0 picks a free port. */
  readonly port: number;
  readonly certificates: CertificateSource;
  readonly timeouts?: Partial<WebhookTimeouts>;
  readonly log?: Logger;
}

export interface WebhookServer {
  readonly server: Server;
  readonly port: number;
  /** Stops accepting connections, lets requests in flight finish, then closes everything. */
  close(): Promise<void>;
}

/** Serves `app` over HTTPS with the source's certificate, swapping it on every rotation. */
export async function startWebhookServer(options: WebhookServerOptions): Promise<WebhookServer> {
  const timeouts = { ...DEFAULT_TIMEOUTS, ...options.timeouts };
  const certificate = options.certificates.current();
  const server = createServer(
    {
      cert: certificate.certPem,
      key: certificate.keyPem,
      minVersion: 'TLSv1.2',
      handshakeTimeout: timeouts.tlsHandshakeMs,
      headersTimeout: timeouts.headersMs,
      requestTimeout: timeouts.requestMs,
      keepAliveTimeout: timeouts.keepAliveMs,
      // Node checks the two timeouts above only this often (30 s by default).
      connectionsCheckingInterval: Math.max(10, Math.min(1_000, timeouts.headersMs / 4)),
    },
    options.app,
  );
  // Existing connections keep the certificate they were opened with; new ones get the new one.
  const unsubscribe = options.certificates.onChange((next) => {
    try {
      server.setSecureContext({ cert: next.certPem, key: next.keyPem });
      options.log?.info('webhook serving certificate replaced');
    } catch (error) {
      options.log?.error('rotated webhook certificate refused; keeping the current one', { error });
    }
  });
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(options.port, options.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } catch (error) {
    unsubscribe();
    throw new Error(`webhook server cannot listen on ${options.host}:${String(options.port)}`, {
      cause: error,
    });
  }
  const { port } = server.address() as AddressInfo;
  const connections = trackConnections(server);
  return {
    server,
    port,
    close: () => closeServer(server, connections, unsubscribe, timeouts.requestMs),
  };
}

interface Connections {
  /** From now on, every connection is closed as soon as it has no request in flight. */
  drain(): void;
  /** Closes every connection at once. */
  destroyAll(): void;
}

/**
 * The connections and the requests in flight on each. The API server keeps its connections
 * alive; Node's own closeIdleConnections() missed some of them, holding a close open until the
 * grace ended, so this keeps its own account.
 */
function trackConnections(server: Server): Connections {
  const open = new Set<Socket>();
  const inFlight = new Map<Socket, number>();
  let draining = false;
  server.on('secureConnection', (socket: Socket) => {
    open.add(socket);
    socket.once('close', () => {
      open.delete(socket);
      inFlight.delete(socket);
    });
  });
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    const socket = req.socket;
    inFlight.set(socket, (inFlight.get(socket) ?? 0) + 1);
    let done = false;
    const finished = (): void => {
      if (done) return;
      done = true;
      const left = (inFlight.get(socket) ?? 1) - 1;
      if (left > 0) {
        inFlight.set(socket, left);
        return;
      }
      inFlight.delete(socket);
      if (draining) socket.end();
    };
    res.once('finish', finished);
    res.once('close', finished);
  });
  return {
    drain: () => {
      draining = true;
      for (const socket of open) if (!inFlight.has(socket)) socket.destroy();
    },
    destroyAll: () => {
      for (const socket of open) socket.destroy();
    },
  };
}

function closeServer(
  server: Server,
  connections: Connections,
  unsubscribe: () => void,
  graceMs: number,
): Promise<void> {
  unsubscribe();
  return new Promise((resolve, reject) => {
    const force = setTimeout(() => {
      connections.destroyAll();
      server.closeAllConnections();
    }, graceMs);
    force.unref();
    server.close((error) => {
      clearTimeout(force);
      if (error) reject(error);
      else resolve();
    });
    server.closeIdleConnections();
    connections.drain();
  });
}
