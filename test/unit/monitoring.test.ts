// The monitoring client (src/nats/monitoring.ts) against a scripted fetch: what it asks, how it
// reads the answers of a real server (fixture), and its deadline: a server that does not answer
// is reported unreachable within the budget, never waited for.
import { readFileSync } from 'node:fs';
import { clusterHealth, serverHealth, type Fetch } from '../../src/nats/monitoring.ts';

const fixture = JSON.parse(
  readFileSync(new URL('../fixtures/jsz-three-servers.json', import.meta.url), 'utf8'),
) as Record<string, unknown>;

function answering(
  routes: Record<string, { status: number; body: unknown }>,
  asked: string[] = [],
): Fetch {
  return (url) => {
    asked.push(url);
    const path = url.replace(/^http:\/\/[^/]+/, '');
    const route = routes[path] ?? { status: 404, body: 'not found' };
    return Promise.resolve(new Response(JSON.stringify(route.body), { status: route.status }));
  };
}

function healthyRoutes(server: string): Record<string, { status: number; body: unknown }> {
  return {
    '/healthz?js-enabled-only=true': { status: 200, body: { status: 'ok' } },
    '/healthz': { status: 200, body: { status: 'ok' } },
    '/jsz?streams=true&raft=true': { status: 200, body: fixture[server] },
  };
}

describe('the monitoring client', () => {
  it('asks the three endpoints on the pod IP and reads a stream leader', async () => {
    const asked: string[] = [];
    const health = await serverHealth(
      { name: 'eventing-nats-1', ip: '10.244.0.12' },
      { fetch: answering(healthyRoutes('eventing-nats-1'), asked) },
    );
    expect(asked.sort()).toEqual([
      'http://10.244.0.12:8222/healthz',
      'http://10.244.0.12:8222/healthz?js-enabled-only=true',
      'http://10.244.0.12:8222/jsz?streams=true&raft=true',
    ]);
    expect(health).toMatchObject({
      pod: 'eventing-nats-1',
      reachable: true,
      jetStreamEnabled: true,
      healthy: true,
      metaLeader: 'eventing-nats-2',
      metaClusterSize: 3,
      storageUsed: 2150,
      storageMax: 805306368,
      ledStreams: [
        {
          account: '$G',
          name: 'orders',
          replicas: [
            { name: 'eventing-nats-0', current: true, lag: 0, offline: false },
            { name: 'eventing-nats-2', current: true, lag: 0, offline: false },
          ],
        },
      ],
    });
    // Not the meta leader: its view of the meta group is not kept.
    expect(health.reachable && health.metaReplicas).toBeUndefined();
  });

  it('asks another port when the server is not a pod (servers on loopback)', async () => {
    const asked: string[] = [];
    await serverHealth(
      { name: 'eventing-nats-1', ip: '127.0.0.1', port: 40123 },
      { fetch: answering(healthyRoutes('eventing-nats-1'), asked) },
    );
    expect(asked.map((url) => new URL(url).host)).toEqual([
      '127.0.0.1:40123',
      '127.0.0.1:40123',
      '127.0.0.1:40123',
    ]);
  });

  it('keeps the meta leader its view of the group, and a follower leads nothing', async () => {
    const leader = await serverHealth(
      { name: 'eventing-nats-2', ip: '10.0.0.2' },
      { fetch: answering(healthyRoutes('eventing-nats-2')) },
    );
    expect(leader.reachable && leader.metaReplicas?.map((r) => r.name)).toEqual([
      'eventing-nats-0',
      'eventing-nats-1',
    ]);
    const follower = await serverHealth(
      { name: 'eventing-nats-0', ip: '10.0.0.0' },
      { fetch: answering(healthyRoutes('eventing-nats-0')) },
    );
    expect(follower.reachable && follower.ledStreams).toEqual([]);
  });

  it('reports a failing health check with its error, and JetStream off', async () => {
    const routes = {
      ...healthyRoutes('eventing-nats-0'),
      '/healthz?js-enabled-only=true': {
        status: 503,
        body: { status: 'unavailable', error: 'JetStream not enabled' },
      },
      '/healthz': { status: 503, body: { status: 'unavailable', error: 'JetStream not enabled' } },
    };
    const health = await serverHealth(
      { name: 'eventing-nats-0', ip: '10.0.0.0' },
      { fetch: answering(routes) },
    );
    expect(health).toMatchObject({
      reachable: true,
      jetStreamEnabled: false,
      healthy: false,
      healthError: 'JetStream not enabled',
    });
  });

  it('a server that does not answer is unreachable within the deadline; a refused one says why', async () => {
    const hanging: Fetch = (_url, init) =>
      new Promise((_resolve, reject) => {
        init.signal.addEventListener('abort', () => {
          reject(init.signal.reason as Error);
        });
      });
    const started = performance.now();
    const health = await serverHealth(
      { name: 'eventing-nats-0', ip: '10.0.0.0' },
      { fetch: hanging, timeoutMs: 50 },
    );
    const tookMs = performance.now() - started;
    expect(health).toEqual({
      pod: 'eventing-nats-0',
      reachable: false,
      error: 'no answer within 50 ms',
    });
    process.stdout.write(`unanswered server reported after ${tookMs.toFixed(0)} ms (budget 50)\n`);
    const refused: Fetch = () => Promise.reject(new Error('connect ECONNREFUSED 10.0.0.1:8222'));
    const all = await clusterHealth(
      [
        { name: 'eventing-nats-0', ip: '10.0.0.0' },
        { name: 'eventing-nats-1', ip: '10.0.0.1' },
      ],
      { fetch: refused },
    );
    expect([...all.values()]).toEqual([
      { pod: 'eventing-nats-0', reachable: false, error: 'connect ECONNREFUSED 10.0.0.1:8222' },
      { pod: 'eventing-nats-1', reachable: false, error: 'connect ECONNREFUSED 10.0.0.1:8222' },
    ]);
  });

  it("an aborted reconcile ends the requests and rejects: it is the reconcile's end, not the server's", async () => {
    const controller = new AbortController();
    const hanging: Fetch = (_url, init) =>
      new Promise((_resolve, reject) => {
        init.signal.addEventListener('abort', () => {
          reject(new Error('aborted'));
        });
      });
    const pending = serverHealth(
      { name: 'eventing-nats-0', ip: '10.0.0.0' },
      { fetch: hanging, signal: controller.signal, timeoutMs: 10_000 },
    );
    controller.abort();
    await expect(pending).rejects.toThrow('aborted');
  });
});
