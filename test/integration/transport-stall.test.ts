// A connection to the API server that goes silent (a half-open TCP path: no bytes, no FIN, no
// RST) no longer stalls other work: the request on it fails at its deadline, the next request
// gets a fresh connection, and a work queue keeps processing other keys meanwhile.
import { createKubeClient } from '../../src/kube/client.ts';
import { RequestTimeoutError } from '../../src/kube/transport.ts';
import { createWorkQueue } from '../../src/controller/work-queue.ts';
import { eventually, testKubeConfig } from '../support/kube.ts';
import { kubeConfigVia, startStallProxy, type StallProxy } from '../support/stall-proxy.ts';

const kc = testKubeConfig();
const NAMESPACES = { apiVersion: 'v1', kind: 'Namespace', name: 'default' };
let proxy: StallProxy;

beforeAll(async () => {
  proxy = await startStallProxy(kc.getCurrentCluster()?.server ?? '');
});

afterAll(async () => {
  await proxy.close();
});

afterEach(() => {
  proxy.heal();
});

test('a request on a silent connection fails at its deadline; the next one gets through', async () => {
  const client = createKubeClient(kubeConfigVia(kc, proxy.server), { timeoutMs: 1_000 });
  expect(await client.get(NAMESPACES)).toBeDefined();
  proxy.stall();
  const started = Date.now();
  await expect(client.get(NAMESPACES)).rejects.toThrow(RequestTimeoutError);
  const tookMs = Date.now() - started;
  expect(tookMs).toBeGreaterThanOrEqual(900);
  expect(tookMs).toBeLessThan(5_000);
  proxy.heal();
  // The stalled socket was destroyed, not returned to the pool: a new connection is opened.
  const opened = proxy.connectionsOpened();
  expect(await client.get(NAMESPACES)).toBeDefined();
  expect(proxy.connectionsOpened()).toBeGreaterThan(opened);
});

test('a caller can abort a request that hangs, long before its deadline', async () => {
  const client = createKubeClient(kubeConfigVia(kc, proxy.server), { timeoutMs: 60_000 });
  proxy.stall();
  const abort = new AbortController();
  const request = client.get(NAMESPACES, { signal: abort.signal });
  setTimeout(() => {
    abort.abort(new Error('the reconcile was cancelled'));
  }, 200);
  const started = Date.now();
  await expect(request).rejects.toThrow('the reconcile was cancelled');
  expect(Date.now() - started).toBeLessThan(2_000);
});

test('while one key hangs on a silent connection, the queue keeps processing the others', async () => {
  const stalled = createKubeClient(kubeConfigVia(kc, proxy.server), { timeoutMs: 3_000 });
  const healthy = createKubeClient(kc);
  const done: string[] = [];
  const failed: unknown[] = [];
  const queue = createWorkQueue<string>({
    concurrency: 4,
    process: async (key) => {
      await (key === 'hung' ? stalled : healthy).get(NAMESPACES);
      done.push(key);
    },
    backoff: { initialMs: 60_000, maxMs: 60_000 },
    onError: (_key, error) => failed.push(error),
  });
  try {
    proxy.stall();
    queue.add('hung');
    for (const key of ['a', 'b', 'c', 'd', 'e']) queue.add(key);
    await eventually('the other keys processed', () =>
      Promise.resolve(done.length === 5 ? true : undefined),
    );
    // Still waiting on the silent connection while the others were done.
    expect(queue.inFlight()).toBe(1);
    expect(done).not.toContain('hung');
    await eventually('the hung request timed out', () =>
      Promise.resolve(failed.length === 1 ? true : undefined),
    );
    expect(failed[0]).toBeInstanceOf(RequestTimeoutError);
  } finally {
    await queue.shutdown();
  }
});
