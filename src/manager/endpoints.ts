// The manager's plain-HTTP endpoints: /metrics for Prometheus on one port, /healthz and /readyz
// for the kubelet on another. Two ports as in controller-runtime managers, so that a
// NetworkPolicy can open the probes to the node without opening the metrics, and the other way
// round. No express: three fixed GET routes do not need a router.
import type { RequestListener, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import { ConfigError } from './config.ts';
import { http } from '../base/http.ts';
import type { Logger } from '../base/log.ts';

export interface BindAddress {
  /** undefined: every interface. */
  readonly host: string | undefined;
  /** 0 asks the system for a free port. */
  readonly port: number;
}

// `[host]:port` with an optional host, brackets around an IPv6 address; a bare port too.
const BIND_ADDRESS = /^(?:(?:\[([0-9A-Fa-f:.]+)\]|([^\s:[\]]*)):)?(\d{1,5})$/;

/** `:8080` (every interface), `127.0.0.1:0`, `[::1]:8080`, `0` (a free port). */
export function parseBindAddress(value: string, name = 'bind address'): BindAddress {
  const match = BIND_ADDRESS.exec(value);
  const port = Number(match?.[3]);
  if (match === null || port > 65_535) {
    throw new ConfigError(
      `${name}: "${value}" is not [host]:port with a port of 0-65535 (e.g. ":8080", "127.0.0.1:0", "[::1]:8080")`,
    );
  }
  const host = match[1] ?? match[2];
  return { host: host === '' ? undefined : host, port };
}

export interface ReadinessCheck {
  /** Shown in /readyz answers; unique among the checks. */
  readonly name: string;
  /** true when ready, else the reason it is not (false: "not ready"). */
  readonly check: () => boolean | string;
}

export interface EndpointsOptions {
  /** In the form of `--metrics-bind-address`: see parseBindAddress. */
  readonly metricsAddress: string;
  /** In the form of `--health-probe-bind-address`. */
  readonly probeAddress: string;
  readonly registry: Registry;
  readonly readinessChecks?: readonly ReadinessCheck[];
  readonly log?: Logger;
}

export interface Endpoints {
  readonly metricsPort: number;
  readonly probePort: number;
  /** Closes both servers and their connections, keep-alive ones included. */
  close(): Promise<void>;
}

interface Answer {
  readonly status: number;
  readonly body: string;
  readonly contentType?: string;
}

type Route = (query: URLSearchParams) => Answer | Promise<Answer>;

const TEXT = 'text/plain; charset=utf-8';

function send(res: ServerResponse, answer: Answer, headers: Record<string, string> = {}): void {
  res.writeHead(answer.status, {
    'Content-Type': answer.contentType ?? TEXT,
    'X-Content-Type-Options': 'nosniff',
    ...headers,
  });
  res.end(answer.body);
}

function listener(routes: ReadonlyMap<string, Route>, log: Logger | undefined): RequestListener {
  return (req, res) => {
    const url = req.url ?? '';
    const queryAt = url.indexOf('?');
    const path = queryAt === -1 ? url : url.slice(0, queryAt);
    const query = new URLSearchParams(queryAt === -1 ? '' : url.slice(queryAt + 1));
    const route = routes.get(path);
    if (route === undefined) {
      send(res, { status: 404, body: '404 page not found\n' });
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      send(res, { status: 405, body: `${path} accepts GET only\n` }, { Allow: 'GET, HEAD' });
      return;
    }
    Promise.resolve()
      .then(() => route(query))
      .then(
        (answer) => {
          send(res, answer);
        },
        (error: unknown) => {
          log?.error('endpoint failed', { path, error });
          if (!res.headersSent) send(res, { status: 500, body: 'internal error\n' });
        },
      );
  };
}

function reasonNotReady(check: ReadinessCheck): string | undefined {
  let result: boolean | string;
  try {
    result = check.check();
  } catch (error) {
    result = `check failed: ${error instanceof Error ? error.message : String(error)}`;
  }
  if (result === true) return undefined;
  // One line per check, whatever the reason holds.
  const reason = result === false ? '' : result.replace(/\s+/g, ' ').trim();
  return reason === '' ? 'not ready' : reason;
}

/** kube-apiserver's format: `[+]name ok` (verbose only), `[-]name: reason`, then a verdict. */
function readyz(checks: readonly ReadinessCheck[], verbose: boolean): Answer {
  const results = checks.map((check) => ({ name: check.name, reason: reasonNotReady(check) }));
  const ready = results.every((result) => result.reason === undefined);
  if (ready && !verbose) return { status: 200, body: 'ok' };
  const lines = results
    .filter((result) => verbose || result.reason !== undefined)
    .map(({ name, reason }) => (reason === undefined ? `[+]${name} ok` : `[-]${name}: ${reason}`));
  lines.push(ready ? 'readyz check passed' : 'readyz check failed');
  return { status: ready ? 200 : 503, body: `${lines.join('\n')}\n` };
}

function validateChecks(checks: readonly ReadinessCheck[]): void {
  const seen = new Set<string>();
  for (const { name } of checks) {
    if (!/^[\w.-]+$/.test(name)) throw new Error(`readiness check name "${name}" is not a word`);
    if (seen.has(name)) throw new Error(`readiness check "${name}" is given twice`);
    seen.add(name);
  }
}

async function listen(server: Server, address: BindAddress, what: string): Promise<number> {
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(address.port, address.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } catch (error) {
    const where = `${address.host ?? ''}:${String(address.port)}`;
    throw new Error(`${what} server cannot listen on ${where}`, { cause: error });
  }
  return (server.address() as AddressInfo).port;
}

// Scrapes and probes are short and retried, so nothing is worth waiting for: close at once.
function closeServer(server: Server): Promise<void> {
  if (!server.listening) return Promise.resolve();
  return new Promise((resolve, reject) => {
    server.close((error) => {
      if (error) reject(error);
      else resolve();
    });
    server.closeAllConnections();
  });
}

/** Listens on both addresses; rejects (with nothing left listening) if either cannot. */
export async function startEndpoints(options: EndpointsOptions): Promise<Endpoints> {
  const metricsAt = parseBindAddress(options.metricsAddress, '--metrics-bind-address');
  const probeAt = parseBindAddress(options.probeAddress, '--health-probe-bind-address');
  const checks = options.readinessChecks ?? [];
  validateChecks(checks);
  const { registry, log } = options;

  const metricsServer = http.createServer(
    listener(
      new Map<string, Route>([
        [
          '/metrics',
          async () => ({
            status: 200,
            body: await registry.metrics(),
            contentType: registry.contentType,
          }),
        ],
      ]),
      log,
    ),
  );
  const probeServer = http.createServer(
    listener(
      new Map<string, Route>([
        // Answering at all is the liveness signal: a blocked event loop answers nothing.
        ['/healthz', () => ({ status: 200, body: 'ok' })],
        ['/readyz', (query) => readyz(checks, query.has('verbose'))],
      ]),
      log,
    ),
  );

  const metricsPort = await listen(metricsServer, metricsAt, 'metrics');
  let probePort: number;
  try {
    probePort = await listen(probeServer, probeAt, 'health probe');
  } catch (error) {
    await closeServer(metricsServer);
    throw error;
  }
  let closing: Promise<void> | undefined;
  return {
    metricsPort,
    probePort,
    close: () =>
      (closing ??= Promise.all([closeServer(metricsServer), closeServer(probeServer)]).then(
        () => undefined,
      )),
  };
}
