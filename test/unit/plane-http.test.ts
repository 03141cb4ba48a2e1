// The local plane's readiness checks go through the project's one exchange: each has a deadline,
// so an endpoint that accepts and never answers (or stops half-way through its body) fails the
// check in time instead of hanging the plane's start.
import { createServer, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { httpGet, planeRequest } from '../../src/localplane/http.ts';
import { exchange, RequestTimeoutError } from '../../src/kube/transport.ts';

interface Endpoint {
  readonly url: string;
  close(): Promise<void>;
}

/** A TCP server that answers each connection with `reply` (or nothing) and keeps it open. */
async function endpoint(reply: string | undefined): Promise<Endpoint> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => undefined);
    if (reply !== undefined) socket.write(reply);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${String(port)}`,
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) =>
        server.close(() => {
          resolve();
        }),
      );
    },
  };
}

const OK = 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok';
const HALF = 'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npart';

let open: Endpoint[] = [];
afterEach(async () => {
  await Promise.all(open.map((e) => e.close()));
  open = [];
});

async function serve(reply: string | undefined): Promise<string> {
  const e = await endpoint(reply);
  open.push(e);
  return e.url;
}

test('a readiness check reads the status and body', async () => {
  const url = await serve(OK);
  await expect(httpGet(`${url}/health`)).resolves.toEqual({ status: 200, body: 'ok' });
});

test('an endpoint that never answers fails the check at its deadline', async () => {
  const url = await serve(undefined);
  const started = Date.now();
  await expect(httpGet(`${url}/readyz`, 300)).rejects.toThrow(RequestTimeoutError);
  const tookMs = Date.now() - started;
  expect(tookMs).toBeGreaterThanOrEqual(250);
  expect(tookMs).toBeLessThan(2_000);
});

test('a body that stops half-way fails at the deadline too', async () => {
  const url = await serve(HALF);
  await expect(
    planeRequest(`${url}/api/v1/persistentvolumes`, {}, { deadlineMs: 300 }),
  ).rejects.toThrow(RequestTimeoutError);
});

test('the caller’s signal ends an exchange before its deadline', async () => {
  const url = await serve(undefined);
  const controller = new AbortController();
  const pending = exchange({
    url: new URL(url),
    method: 'GET',
    timeoutMs: 10_000,
    signal: controller.signal,
  });
  setTimeout(() => {
    controller.abort(new Error('stopping'));
  }, 50);
  const started = Date.now();
  await expect(pending).rejects.toThrow('stopping');
  expect(Date.now() - started).toBeLessThan(2_000);
});
