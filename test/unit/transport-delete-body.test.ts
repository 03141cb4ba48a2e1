// A DELETE with a body (DeleteOptions with a uid precondition) over the pooled keep-alive
// connection: the body arrives framed, and the next request on the same connection is read as
// a request. Without a Content-Length Node sends a DELETE body unframed, and the API server read
// it as the start of the next request, answering that one "400 Bad Request".
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { KubeConfig } from '@kubernetes/client-node';
import { createTransport } from '../../src/kube/transport.ts';

let server: Server;
const seen: { method: string; url: string; body: string }[] = [];
const sockets = new Set<unknown>();

async function bodyOf(req: IncomingMessage): Promise<string> {
  let text = '';
  for await (const chunk of req) text += String(chunk);
  return text;
}

beforeAll(async () => {
  server = createServer((req, res) => {
    sockets.add(req.socket);
    void bodyOf(req).then((body) => {
      seen.push({ method: req.method ?? '', url: req.url ?? '', body });
      res.setHeader('Content-Type', 'application/json');
      res.end(JSON.stringify({ kind: 'Status', status: 'Success' }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

it('frames a DELETE body, and the next request on the kept-alive connection arrives whole', async () => {
  const kc = new KubeConfig();
  const { port } = server.address() as AddressInfo;
  kc.loadFromOptions({
    clusters: [{ name: 'c', server: `http://127.0.0.1:${String(port)}`, skipTLSVerify: true }],
    users: [{ name: 'u' }],
    contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
    currentContext: 'x',
  });
  const transport = createTransport(kc, { timeoutMs: 5_000 });
  const options = { apiVersion: 'v1', kind: 'DeleteOptions', preconditions: { uid: 'uid-1' } };
  await transport.json({
    method: 'DELETE',
    path: '/api/v1/namespaces/ns/pods/p-0',
    body: options,
  });
  await transport.json({ method: 'POST', path: '/api/v1/namespaces/ns/events', body: { a: 1 } });
  expect(seen).toEqual([
    { method: 'DELETE', url: '/api/v1/namespaces/ns/pods/p-0', body: JSON.stringify(options) },
    { method: 'POST', url: '/api/v1/namespaces/ns/events', body: '{"a":1}' },
  ]);
  // One pooled connection carried both.
  expect(sockets.size).toBe(1);
});
