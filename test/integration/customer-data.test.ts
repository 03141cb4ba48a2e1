// The deletion flow's customer-data check against a real nats-server started from the rendered
// config, connecting as the manager does: to the client port, without credentials. Also what it
// answers when NATS is gone, silent, without JetStream, or refusing clients without credentials.
import { createServer, type Server, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { AckPolicy, jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { defaultNatsSpec } from '../../src/api/defaults.ts';
import { ensureBinaries } from '../../src/localplane/binaries.ts';
import { freePort } from '../../src/localplane/plane.ts';
import { CLOSE_GRACE_MS } from '../../src/nats/connection.ts';
import {
  CUSTOMER_STREAM_EXISTS_MESSAGE,
  STREAM_CONSUMER_EXISTS_MESSAGE,
  checkCustomerData,
  type CustomerDataCheck,
} from '../../src/nats/customer-data.ts';
import { DEFAULT_IMAGES, type RenderContext } from '../../src/render/context.ts';
import { renderNatsConf, renderResolverConf } from '../../src/render/nats-conf.ts';
import { generateSystemAccountPassword } from '../../src/render/password.ts';
import {
  monitor,
  startLoopbackCluster,
  type LoopbackCluster,
  type RunningServer,
} from '../support/nats-cluster.ts';

const context: RenderContext = {
  istioPresent: false,
  systemAccountPassword: 'unused-here',
  images: DEFAULT_IMAGES,
  clusterDomain: 'cluster.local',
};
const natsConf = renderNatsConf(
  {
    name: 'eventing-nats',
    namespace: 'kyma-system',
    uid: 'uid-1',
    spec: defaultNatsSpec({ cluster: { size: 1 } }),
  },
  context,
);

/** `text` with `search` replaced once; throws if the rendered text no longer has it. */
function edit(text: string, search: string, replacement: string): string {
  if (!text.includes(search))
    throw new Error(`the rendered config lacks ${JSON.stringify(search)}`);
  return text.replace(search, replacement);
}

let natsServer: string;

beforeAll(async () => {
  ({ 'nats-server': natsServer } = await ensureBinaries(['nats-server']));
});

async function startOne(conf: string, resolverConf: string): Promise<LoopbackCluster> {
  const cluster = await startLoopbackCluster({
    natsServer,
    natsConf: conf,
    resolverConf,
    names: ['eventing-nats-0'],
  });
  const server = only(cluster);
  // Ready once the monitoring port answers; it opens after the client port.
  const deadline = Date.now() + 10_000;
  for (;;) {
    try {
      await monitor(server, 'varz');
      return cluster;
    } catch (err) {
      if (Date.now() > deadline || server.exited()) {
        await cluster.stop();
        throw err;
      }
      await sleep(50);
    }
  }
}

function only(cluster: LoopbackCluster): RunningServer {
  const [server] = cluster.servers;
  if (server === undefined) throw new Error('no server started');
  return server;
}

function clientUrl(server: RunningServer): string {
  return `nats://127.0.0.1:${String(server.clientPort)}`;
}

async function timed(
  check: Promise<CustomerDataCheck>,
): Promise<{ result: CustomerDataCheck; ms: number }> {
  const started = performance.now();
  const result = await check;
  return { result, ms: performance.now() - started };
}

/** Open client connections the check left behind, by the name it connects with. */
async function checkConnections(server: RunningServer): Promise<number> {
  const connz = (await monitor(server, 'connz')) as { connections?: { name?: string }[] };
  return (connz.connections ?? []).filter((c) => c.name === 'nats-manager').length;
}

async function eventually(probe: () => Promise<boolean>, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > deadline) return false;
    await sleep(50);
  }
  return true;
}

describe('a server from the rendered config, asked without credentials', () => {
  let cluster: LoopbackCluster | undefined;
  let nc: NatsConnection | undefined;
  let jsm: JetStreamManager;
  let url: string;

  function server(): RunningServer {
    if (cluster === undefined) throw new Error('server not started');
    return only(cluster);
  }

  async function expectNoConnectionLeft(): Promise<void> {
    expect(await eventually(async () => (await checkConnections(server())) === 0, 2_000)).toBe(
      true,
    );
  }

  beforeAll(async () => {
    cluster = await startOne(natsConf, renderResolverConf(generateSystemAccountPassword()));
    url = clientUrl(server());
    // The test's own connection, as a customer's would be: no credentials either.
    nc = await connect({ servers: url, name: 'customer-data.test', reconnect: false });
    jsm = await jetstreamManager(nc);
  });

  afterAll(async () => {
    await nc?.close();
    await cluster?.stop();
  });

  test('no streams: nothing blocks, and the connection is closed again', async () => {
    await expect(checkCustomerData(url)).resolves.toEqual({ kind: 'none' });
    await expectNoConnectionLeft();
  });

  test('stream sap without consumers: nothing blocks', async () => {
    await jsm.streams.add({ name: 'sap', subjects: ['kyma.>'] });
    await expect(checkCustomerData(url)).resolves.toEqual({ kind: 'none' });
  });

  test('a durable consumer of sap blocks', async () => {
    await jsm.consumers.add('sap', { durable_name: 'eventing', ack_policy: AckPolicy.Explicit });
    await expect(checkCustomerData(url)).resolves.toEqual({
      kind: 'blocked',
      reason: 'consumer',
      message: 'Cannot delete NATS cluster as stream consumer exists',
      streams: ['sap'],
    });
    expect(STREAM_CONSUMER_EXISTS_MESSAGE).toBe(
      'Cannot delete NATS cluster as stream consumer exists',
    );
    await expectNoConnectionLeft();
    await jsm.consumers.delete('sap', 'eventing');
    await expect(checkCustomerData(url)).resolves.toEqual({ kind: 'none' });
  });

  test('another stream blocks with upstream’s message', async () => {
    await jsm.streams.add({ name: 'orders', subjects: ['orders.>'] });
    await expect(checkCustomerData(url)).resolves.toEqual({
      kind: 'blocked',
      reason: 'stream',
      message: 'Cannot delete NATS cluster as customer stream exists',
      streams: ['orders'],
    });
    expect(CUSTOMER_STREAM_EXISTS_MESSAGE).toBe(
      'Cannot delete NATS cluster as customer stream exists',
    );
  });

  test('once the stream is removed, nothing blocks again', async () => {
    await jsm.streams.delete('orders');
    await expect(checkCustomerData(url)).resolves.toEqual({ kind: 'none' });
    await expectNoConnectionLeft();
  });

  test('once the server is stopped, it is unreachable at once', async () => {
    await nc?.close();
    await cluster?.stop();
    const { result, ms } = await timed(checkCustomerData(url));
    expect(result).toEqual({
      kind: 'unreachable',
      error: expect.stringMatching(/refused/) as string,
    });
    expect(ms).toBeLessThan(1_000);
  });
});

describe('a server that answers, but not whether customer data exists', () => {
  const clusters: LoopbackCluster[] = [];
  const connections: NatsConnection[] = [];
  afterAll(async () => {
    for (const nc of connections) await nc.close();
    for (const cluster of clusters) await cluster.stop();
  });

  async function startWithout(jetStream: boolean, resolverConf: string): Promise<RunningServer> {
    const conf = jetStream
      ? natsConf
      : edit(natsConf, 'jetstream {\n', 'jetstream {\n  enabled: false\n');
    const cluster = await startOne(conf, resolverConf);
    clusters.push(cluster);
    return only(cluster);
  }

  test('JetStream disabled: an error to retry, not a go-ahead', async () => {
    const server = await startWithout(false, renderResolverConf(generateSystemAccountPassword()));
    const { result, ms } = await timed(checkCustomerData(clientUrl(server)));
    expect(result).toEqual({
      kind: 'error',
      error: expect.stringMatching(/not enabled/) as string,
    });
    expect(ms).toBeLessThan(1_000);
    expect(await eventually(async () => (await checkConnections(server)) === 0, 2_000)).toBe(true);
  });

  test('a JetStream API that never answers: an error within the budget', async () => {
    const server = await startWithout(false, renderResolverConf(generateSystemAccountPassword()));
    // Takes the JetStream API's requests and never replies, as a stalled meta leader would.
    const mute = await connect({ servers: clientUrl(server), reconnect: false });
    connections.push(mute);
    mute.subscribe('$JS.API.>');
    await mute.flush();
    const budget = 1_500;
    const { result, ms } = await timed(checkCustomerData(clientUrl(server), { timeoutMs: budget }));
    expect(result).toEqual({ kind: 'error', error: expect.stringMatching(/JetStream/) as string });
    expect(ms).toBeGreaterThanOrEqual(budget - 100);
    expect(ms).toBeLessThan(budget + CLOSE_GRACE_MS + 500);
    expect(await eventually(async () => (await checkConnections(server)) === 0, 2_000)).toBe(true);
  });

  test('clients need credentials (not so in the rendered config): an error to retry', async () => {
    // A user outside the system account makes nats-server require credentials from everyone.
    const resolverConf = edit(
      renderResolverConf(generateSystemAccountPassword()),
      'accounts: {\n',
      'accounts: {\n  APP: { users: [ { user: "app", password: "app" } ] }\n',
    );
    const server = await startWithout(true, resolverConf);
    const { result } = await timed(checkCustomerData(clientUrl(server)));
    expect(result).toEqual({
      kind: 'error',
      error: expect.stringMatching(/Authorization/) as string,
    });
  });
});

describe('no NATS at the address', () => {
  test('a closed port: unreachable at once', async () => {
    const port = await freePort();
    const { result, ms } = await timed(checkCustomerData(`nats://127.0.0.1:${String(port)}`));
    expect(result).toEqual({
      kind: 'unreachable',
      error: expect.stringMatching(/refused/) as string,
    });
    expect(ms).toBeLessThan(1_000);
  });

  describe('a blackhole that accepts and never speaks', () => {
    let blackhole: Server;
    const accepted: Socket[] = [];
    beforeAll(async () => {
      blackhole = createServer((socket) => accepted.push(socket));
      await new Promise<void>((resolve) => blackhole.listen(0, '127.0.0.1', resolve));
    });
    afterAll(async () => {
      for (const socket of accepted) socket.destroy();
      await new Promise((resolve) => blackhole.close(resolve));
    });

    test('unreachable once the budget is spent, never hanging', async () => {
      const address = blackhole.address();
      if (address === null || typeof address === 'string') throw new Error('no port');
      const budget = 1_500;
      const { result, ms } = await timed(
        checkCustomerData(`nats://127.0.0.1:${String(address.port)}`, { timeoutMs: budget }),
      );
      expect(result).toMatchObject({ kind: 'unreachable' });
      expect(accepted.length).toBeGreaterThan(0);
      expect(ms).toBeGreaterThanOrEqual(budget - 100);
      expect(ms).toBeLessThan(budget + 500);
    });
  });
});
