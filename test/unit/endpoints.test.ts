import { Agent, request, type IncomingHttpHeaders } from 'node:http';
import { connect, createServer, type Socket } from 'node:net';
import { ConfigError } from '../../src/manager/config.ts';
import {
  parseBindAddress,
  startEndpoints,
  type Endpoints,
  type EndpointsOptions,
} from '../../src/manager/endpoints.ts';
import { createManagerMetrics } from '../../src/manager/metrics.ts';

interface Reply {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly body: string;
}

function call(port: number, path: string, method = 'GET', agent?: Agent): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method, agent }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => {
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

/** Resolves once nothing is listening on port any more: it can be taken again. */
function canListenOn(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = createServer();
    probe.once('error', () => {
      resolve(false);
    });
    probe.listen(port, '127.0.0.1', () => {
      probe.close(() => {
        resolve(true);
      });
    });
  });
}

describe('parseBindAddress', () => {
  it.each([
    [':8080', { host: undefined, port: 8080 }],
    ['127.0.0.1:0', { host: '127.0.0.1', port: 0 }],
    ['localhost:9090', { host: 'localhost', port: 9090 }],
    ['[::1]:8081', { host: '::1', port: 8081 }],
    ['0', { host: undefined, port: 0 }],
    ['8080', { host: undefined, port: 8080 }],
    [':65535', { host: undefined, port: 65535 }],
  ])('reads %j', (value, expected) => {
    expect(parseBindAddress(value)).toEqual(expected);
  });

  it.each(['', ':', '127.0.0.1', '127.0.0.1:', ':65536', ':-1', ':http', '::1:8080', ' :8080'])(
    'refuses %j with a ConfigError naming the setting',
    (value) => {
      expect(() => parseBindAddress(value, '--metrics-bind-address')).toThrow(ConfigError);
      expect(() => parseBindAddress(value, '--metrics-bind-address')).toThrow(
        `--metrics-bind-address: "${value}" is not [host]:port`,
      );
    },
  );
});

describe('startEndpoints', () => {
  const started: Endpoints[] = [];
  afterEach(async () => {
    await Promise.all(started.splice(0).map((endpoints) => endpoints.close()));
  });

  async function start(overrides: Partial<EndpointsOptions> = {}): Promise<Endpoints> {
    const endpoints = await startEndpoints({
      metricsAddress: '127.0.0.1:0',
      probeAddress: '127.0.0.1:0',
      registry: createManagerMetrics().registry,
      ...overrides,
    });
    started.push(endpoints);
    return endpoints;
  }

  it('serves the registry at /metrics with its content type, collected at scrape time', async () => {
    const metrics = createManagerMetrics();
    let depth = 1;
    metrics.trackQueue(() => ({ depth, inFlight: 0 }));
    metrics.recordReconcile('requeue', 0.07);
    metrics.recordWatchRestart('nats', 'failed');
    const { metricsPort } = await start({ registry: metrics.registry });

    const first = await call(metricsPort, '/metrics');
    expect(first.status).toBe(200);
    expect(first.headers['content-type']).toBe(metrics.registry.contentType);
    expect(first.body).toContain('# TYPE nats_manager_reconcile_duration_seconds histogram\n');
    expect(first.body).toContain(
      'nats_manager_reconcile_duration_seconds_bucket{le="0.1",result="requeue"} 1\n',
    );
    expect(first.body).toContain(
      'nats_manager_watch_restarts_total{resource="nats",reason="failed"} 1\n',
    );
    expect(first.body).toContain('nats_manager_workqueue_depth 1\n');

    depth = 4;
    expect((await call(metricsPort, '/metrics')).body).toContain(
      'nats_manager_workqueue_depth 4\n',
    );
  });

  it('answers /healthz with ok', async () => {
    const { probePort } = await start();
    const reply = await call(probePort, '/healthz');
    expect(reply).toMatchObject({ status: 200, body: 'ok' });
    expect(reply.headers['content-type']).toBe('text/plain; charset=utf-8');
  });

  it('answers /readyz with 503 and the reasons, then 200 once every check passes', async () => {
    let synced = false;
    let leader: boolean | string = false;
    const { probePort } = await start({
      readinessChecks: [
        { name: 'caches', check: () => synced || 'not synced' },
        { name: 'leader', check: () => leader },
        { name: 'webhook', check: () => true },
      ],
    });

    const notReady = await call(probePort, '/readyz');
    expect(notReady.status).toBe(503);
    expect(notReady.body).toBe(
      '[-]caches: not synced\n[-]leader: not ready\nreadyz check failed\n',
    );

    synced = true;
    leader = 'lease held by\nanother replica';
    expect(await call(probePort, '/readyz?verbose')).toMatchObject({
      status: 503,
      body: '[+]caches ok\n[-]leader: lease held by another replica\n[+]webhook ok\nreadyz check failed\n',
    });

    leader = true;
    expect(await call(probePort, '/readyz')).toMatchObject({ status: 200, body: 'ok' });
    expect(await call(probePort, '/readyz?verbose=1')).toMatchObject({
      status: 200,
      body: '[+]caches ok\n[+]leader ok\n[+]webhook ok\nreadyz check passed\n',
    });
  });

  it('reports a check that throws as not ready', async () => {
    const { probePort } = await start({
      readinessChecks: [
        {
          name: 'broken',
          check: () => {
            throw new Error('boom');
          },
        },
      ],
    });
    expect(await call(probePort, '/readyz')).toMatchObject({
      status: 503,
      body: '[-]broken: check failed: boom\nreadyz check failed\n',
    });
  });

  it('is ready with no checks', async () => {
    const { probePort } = await start();
    expect(await call(probePort, '/readyz')).toMatchObject({ status: 200, body: 'ok' });
  });

  it('answers 404 for anything else, each route on its own port only', async () => {
    const { metricsPort, probePort } = await start();
    for (const [port, path] of [
      [metricsPort, '/'],
      [metricsPort, '/healthz'],
      [metricsPort, '/metrics/'],
      [probePort, '/metrics'],
      [probePort, '/livez'],
      [probePort, '//healthz'],
    ] as const) {
      expect({ path, status: (await call(port, path)).status }).toEqual({ path, status: 404 });
    }
  });

  it('answers 405 to methods other than GET and HEAD', async () => {
    const { metricsPort, probePort } = await start();
    const reply = await call(probePort, '/readyz', 'POST');
    expect(reply.status).toBe(405);
    expect(reply.headers.allow).toBe('GET, HEAD');
    expect((await call(metricsPort, '/metrics', 'DELETE')).status).toBe(405);
    expect(await call(probePort, '/healthz', 'HEAD')).toMatchObject({ status: 200, body: '' });
  });

  it('answers 500 when the registry cannot collect', async () => {
    const metrics = createManagerMetrics();
    metrics.trackQueue(() => {
      throw new Error('queue gone');
    });
    const errors: string[] = [];
    const { metricsPort } = await start({
      registry: metrics.registry,
      log: {
        info: () => undefined,
        error: (msg) => errors.push(msg),
        with() {
          return this;
        },
      },
    });
    expect(await call(metricsPort, '/metrics')).toMatchObject({
      status: 500,
      body: 'internal error\n',
    });
    expect(errors).toEqual(['endpoint failed']);
  });

  it('close() ends every connection, keep-alive and half-sent ones too, and frees both ports', async () => {
    const endpoints = await startEndpoints({
      metricsAddress: '127.0.0.1:0',
      probeAddress: '127.0.0.1:0',
      registry: createManagerMetrics().registry,
    });
    const agent = new Agent({ keepAlive: true });
    let stuck: Socket | undefined;
    try {
      expect((await call(endpoints.metricsPort, '/metrics', 'GET', agent)).status).toBe(200);
      expect((await call(endpoints.probePort, '/healthz', 'GET', agent)).status).toBe(200);
      expect(await canListenOn(endpoints.probePort)).toBe(false);
      // A request whose headers never end is not idle: server.close() alone waits for it.
      const socket = connect(endpoints.probePort, '127.0.0.1');
      stuck = socket;
      await new Promise((resolve) => socket.once('connect', resolve));
      socket.write('GET /healthz HTTP/1.1\r\nHost: x\r\n');
      const ended = new Promise((resolve) => socket.once('close', resolve));
      // Lets the server read the partial headers, so the connection counts as active.
      await new Promise((resolve) => setTimeout(resolve, 50));

      const tooLate = new Promise((_resolve, reject) =>
        setTimeout(() => {
          reject(new Error('close() still waits for a connection'));
        }, 2_000).unref(),
      );
      await Promise.race([endpoints.close(), tooLate]);
      await ended;

      expect(await canListenOn(endpoints.metricsPort)).toBe(true);
      expect(await canListenOn(endpoints.probePort)).toBe(true);
      await expect(call(endpoints.probePort, '/healthz')).rejects.toThrow(/ECONNREFUSED/);
      await expect(endpoints.close()).resolves.toBeUndefined();
    } finally {
      agent.destroy();
      stuck?.destroy();
    }
  });

  it('takes the address forms of the configuration: a bare 0 and an empty host', async () => {
    const { metricsPort, probePort } = await start({ metricsAddress: '0', probeAddress: ':0' });
    expect(metricsPort).toBeGreaterThan(0);
    expect(probePort).toBeGreaterThan(0);
    expect((await call(probePort, '/healthz')).status).toBe(200);
  });

  it('leaves nothing listening when the second port is taken', async () => {
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    const takenPort = (taken.address() as { port: number }).port;
    const freePort = await new Promise<number>((resolve) => {
      const probe = createServer().listen(0, '127.0.0.1', () => {
        const { port } = probe.address() as { port: number };
        probe.close(() => {
          resolve(port);
        });
      });
    });
    try {
      await expect(
        startEndpoints({
          metricsAddress: `127.0.0.1:${String(freePort)}`,
          probeAddress: `127.0.0.1:${String(takenPort)}`,
          registry: createManagerMetrics().registry,
        }),
      ).rejects.toThrow(`health probe server cannot listen on 127.0.0.1:${String(takenPort)}`);
      expect(await canListenOn(freePort)).toBe(true);
    } finally {
      await new Promise((resolve) => taken.close(resolve));
    }
  });

  it('refuses a bad address or duplicate check names before listening', async () => {
    const registry = createManagerMetrics().registry;
    await expect(
      startEndpoints({ metricsAddress: ':x', probeAddress: ':0', registry }),
    ).rejects.toThrow('--metrics-bind-address: ":x" is not [host]:port');
    await expect(
      startEndpoints({
        metricsAddress: ':0',
        probeAddress: ':0',
        registry,
        readinessChecks: [
          { name: 'caches', check: () => true },
          { name: 'caches', check: () => true },
        ],
      }),
    ).rejects.toThrow('readiness check "caches" is given twice');
  });
});
