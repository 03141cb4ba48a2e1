// The rendered nats.conf and resolver.conf against a real nats-server (the pinned version of the
// default image): every variant parses, and three servers started from the size-3 config form a
// JetStream cluster that keeps an R3 stream available when one of them crashes.
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import type { V1StatefulSet } from '@kubernetes/client-node';
import { jetstream, jetstreamManager, StorageType } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { defaultNatsSpec } from '../../src/api/defaults.ts';
import type { NatsSpec } from '../../src/api/nats.ts';
import { ensureBinaries } from '../../src/localplane/binaries.ts';
import { DEFAULT_IMAGES, type RenderContext, type RenderInput } from '../../src/render/context.ts';
import {
  CLUSTER_ADVERTISE_ENV,
  NATS_CONF_KEY,
  NATS_CONFIG_MOUNT,
  RESOLVER_CONF_KEY,
  RESOLVER_CONF_MOUNT,
  SERVER_NAME_ENV,
  SYSTEM_ACCOUNT_USER,
  renderNatsConf,
  renderResolverConf,
} from '../../src/render/nats-conf.ts';
import { generateSystemAccountPassword } from '../../src/render/password.ts';
import { GOMEMLIMIT_ENV, NATS_CONTAINER, renderStatefulSet } from '../../src/render/statefulset.ts';
import {
  monitor,
  replayStream,
  rewriteForLoopback,
  startLoopbackCluster,
  waitForMetaLeader,
  withoutLoopbackLines,
  type LoopbackCluster,
  type RunningServer,
} from '../support/nats-cluster.ts';

const execFileAsync = promisify(execFile);

const NAME = 'eventing-nats';
const NAMESPACE = 'kyma-system';
const context: RenderContext = {
  istioPresent: false,
  systemAccountPassword: 'unused-here',
  images: DEFAULT_IMAGES,
  clusterDomain: 'cluster.local',
};

function input(spec: NatsSpec): RenderInput {
  return { name: NAME, namespace: NAMESPACE, uid: 'uid-1', spec: defaultNatsSpec(spec) };
}

function podNames(size: number): string[] {
  return Array.from({ length: size }, (_, ordinal) => `${NAME}-${String(ordinal)}`);
}

let natsServer: string;

beforeAll(async () => {
  ({ 'nats-server': natsServer } = await ensureBinaries(['nats-server']));
});

describe('nats-server -t accepts every rendered config', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'nats-manager-conf-'));
  });
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  /** Lays the files out as the pod mounts them; returns the path of nats.conf. */
  function writePodFiles(caseDir: string, natsConf: string, resolverConf?: string): string {
    mkdirSync(join(caseDir, NATS_CONFIG_MOUNT), { recursive: true });
    mkdirSync(join(caseDir, RESOLVER_CONF_MOUNT), { recursive: true });
    const configFile = join(caseDir, NATS_CONFIG_MOUNT, NATS_CONF_KEY);
    writeFileSync(configFile, natsConf);
    if (resolverConf !== undefined) {
      writeFileSync(join(caseDir, RESOLVER_CONF_MOUNT, RESOLVER_CONF_KEY), resolverConf);
    }
    return configFile;
  }

  async function testConfig(configFile: string): Promise<{ ok: boolean; output: string }> {
    const env = {
      ...process.env,
      [SERVER_NAME_ENV]: `${NAME}-0`,
      [CLUSTER_ADVERTISE_ENV]: `${NAME}-0.${NAME}.${NAMESPACE}.svc.cluster.local:6222`,
    };
    try {
      const { stdout, stderr } = await execFileAsync(natsServer, ['-t', '-c', configFile], { env });
      return { ok: true, output: stdout + stderr };
    } catch (err) {
      const { stdout = '', stderr = '' } = err as { stdout?: string; stderr?: string };
      return { ok: false, output: stdout + stderr };
    }
  }

  const storageSizes: (string | number)[] = ['1Gi', '1.5Gi', '500M', '1e9', 2147483648, '100Ti'];
  const matrix = [1, 3, 5].flatMap((size) =>
    [true, false].flatMap((memEnabled) =>
      [
        { debug: false, trace: false },
        { debug: true, trace: false },
        { debug: false, trace: true },
        { debug: true, trace: true },
      ].map((logging, index) => {
        const memSize = storageSizes[(size + index) % storageSizes.length] ?? '1Gi';
        const fileSize = storageSizes[(size + index + 3) % storageSizes.length] ?? '1Gi';
        return { size, memEnabled, logging, memSize, fileSize };
      }),
    ),
  );

  test.each(matrix)(
    'size $size, memStorage $memEnabled ($memSize), file $fileSize, logging $logging',
    async ({ size, memEnabled, logging, memSize, fileSize }) => {
      const spec: NatsSpec = {
        cluster: { size },
        jetStream: {
          memStorage: { enabled: memEnabled, size: memSize },
          fileStorage: { size: fileSize },
        },
        logging,
      };
      const caseDir = join(dir, `${String(size)}-${String(memEnabled)}-${JSON.stringify(logging)}`);
      const configFile = writePodFiles(
        caseDir,
        renderNatsConf(input(spec), context),
        renderResolverConf(generateSystemAccountPassword()),
      );
      const result = await testConfig(configFile);
      expect(result).toEqual({ ok: true, output: expect.stringContaining('is valid') as string });
    },
  );

  test('the include really is read: without resolver.conf the config is refused', async () => {
    const configFile = writePodFiles(join(dir, 'no-resolver'), renderNatsConf(input({}), context));
    const result = await testConfig(configFile);
    expect(result.ok).toBe(false);
    expect(result.output).toContain('resolver.conf');
  });
});

/** Until `attempt` succeeds or the deadline passes; JetStream answers 503 while it elects. */
async function retrying<T>(attempt: () => Promise<T>, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await attempt();
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await sleep(100);
    }
  }
}

function clientUrls(servers: readonly RunningServer[]): string[] {
  return servers.map((server) => `nats://127.0.0.1:${String(server.clientPort)}`);
}

function log(line: string): void {
  process.stderr.write(`[nats-server.test] ${line}\n`);
}

describe('three servers from the rendered size-3 config', () => {
  const spec: NatsSpec = {
    cluster: { size: 3 },
    jetStream: { memStorage: { enabled: true, size: '1.5Gi' }, fileStorage: { size: '1e9' } },
  };
  // The CR's sizes in bytes, written out independently of the renderer: the file store is the
  // claim less its headroom (a quarter of this claim, as 256Mi would be more).
  const MEM_BYTES = 1_610_612_736;
  const FILE_BYTES = 750_000_000;
  const STREAM = 'replicated';
  const password = generateSystemAccountPassword();
  const natsConf = renderNatsConf(input(spec), context);

  let cluster: LoopbackCluster | undefined;
  let nc: NatsConnection | undefined;
  let startedAt = 0;
  let suiteStartedAt = 0;

  function running(): LoopbackCluster {
    if (cluster === undefined) throw new Error('cluster not started');
    return cluster;
  }

  beforeAll(async () => {
    suiteStartedAt = Date.now();
    startedAt = Date.now();
    cluster = await startLoopbackCluster({
      natsServer,
      natsConf,
      resolverConf: renderResolverConf(password),
      names: podNames(3),
    });
  });

  afterAll(async () => {
    await nc?.close();
    await cluster?.stop();
    log(`three-server suite took ${String(Date.now() - suiteStartedAt)} ms`);
  });

  test('the rewrite to loopback changed only addresses, ports and paths', () => {
    const { servers } = running();
    for (const server of servers) {
      const rewritten = rewriteForLoopback(natsConf, server, servers);
      expect(rewritten).not.toBe(natsConf);
      expect(withoutLoopbackLines(rewritten)).toBe(withoutLoopbackLines(natsConf));
      expect(rewritten.split('\n')).toHaveLength(natsConf.split('\n').length);
      // The name and advertise address still come from the environment, as in the pod.
      expect(rewritten).toContain('server_name: $SERVER_NAME');
      expect(rewritten).toContain('cluster_advertise: $CLUSTER_ADVERTISE');
    }
  });

  test('elects a JetStream meta leader', async () => {
    const { servers } = running();
    const leader = await waitForMetaLeader(servers, 30_000);
    log(`meta leader ${leader} after ${String(Date.now() - startedAt)} ms`);
    expect(podNames(3)).toContain(leader);
    for (const server of servers) {
      const jsz = (await monitor(server, 'jsz')) as {
        meta_cluster: { cluster_size: number; name: string };
      };
      expect(jsz.meta_cluster).toMatchObject({ cluster_size: 3, name: NAME });
    }
  });

  test("each server's limits are the CR's memory size and its claim less headroom", async () => {
    for (const server of running().servers) {
      const varz = (await monitor(server, 'varz')) as {
        server_name: string;
        jetstream: { config: { max_memory: number; max_storage: number } };
      };
      expect(varz.server_name).toBe(server.name);
      expect(varz.jetstream.config).toMatchObject({
        max_memory: MEM_BYTES,
        max_storage: FILE_BYTES,
      });
    }
  });

  test('the system account admin logs in with the password, others without credentials', async () => {
    const servers = clientUrls(running().servers);
    const admin = await connect({ servers, user: SYSTEM_ACCOUNT_USER, pass: password });
    try {
      const reply = await admin.request('$SYS.REQ.SERVER.PING', '', { timeout: 5_000 });
      expect(reply.json<{ server: { name: string } }>().server.name).toMatch(/^eventing-nats-\d$/);
    } finally {
      await admin.close();
    }
    await expect(
      connect({ servers, user: SYSTEM_ACCOUNT_USER, pass: `${password}x`, reconnect: false }),
    ).rejects.toThrow(/Authorization/i);
  });

  test('an R3 file stream stores and replays messages, and survives a crashed leader', async () => {
    const { servers } = running();
    nc = await connect({
      servers: clientUrls(servers),
      reconnectTimeWait: 100,
      maxReconnectAttempts: -1,
    });
    const jsm = await jetstreamManager(nc);
    const js = jetstream(nc);
    const info = await retrying(
      () =>
        jsm.streams.add({
          name: STREAM,
          subjects: [`${STREAM}.>`],
          num_replicas: 3,
          storage: StorageType.File,
        }),
      15_000,
    );
    expect(info.config.num_replicas).toBe(3);

    const before = Array.from({ length: 100 }, (_, i) => `before-${String(i)}`);
    for (const body of before) await js.publish(`${STREAM}.orders`, body);
    // A consumer made just after the stream can meet "no responders" on its first pull, until
    // its server subscribes to the pull subject: retried like the rest.
    expect(await retrying(() => replayStream(js, STREAM, before.length), 15_000)).toEqual(before);

    // The hardest case: the stream's own leader crashes (no lame duck, no graceful step-down).
    const leaderName = (await jsm.streams.info(STREAM)).cluster?.leader;
    const leader = servers.find((server) => server.name === leaderName);
    if (leader === undefined) throw new Error(`stream leader ${String(leaderName)} not found`);
    const killedAt = Date.now();
    await running().kill(leader);
    expect(leader.exited()).toBe(true);

    const after = Array.from({ length: 50 }, (_, i) => `after-${String(i)}`);
    const [first, ...rest] = after;
    // Short attempts: the first ones may go to the dead leader and only time out.
    await retrying(() => js.publish(`${STREAM}.orders`, first ?? '', { timeout: 500 }), 30_000);
    log(`stream accepted writes ${String(Date.now() - killedAt)} ms after its leader was killed`);
    for (const body of rest) await js.publish(`${STREAM}.orders`, body);

    const survivor = await retrying(() => jsm.streams.info(STREAM), 30_000);
    expect(survivor.state.messages).toBe(before.length + after.length);
    expect(survivor.cluster?.leader).not.toBe(leaderName);
    // Right after a failover the consumer-create request can still time out: retry it.
    const replayed = await retrying(
      () => replayStream(js, STREAM, before.length + after.length),
      30_000,
    );
    expect(replayed).toEqual([...before, ...after]);
  }, 120_000);
});

describe('a single server with a hostile system account password', () => {
  let cluster: LoopbackCluster | undefined;
  afterAll(async () => {
    await cluster?.stop();
  });

  test('starts without a cluster block and admin logs in with the exact password', async () => {
    const password = 'pa"ss\\word\n} $SYS #include é\'';
    cluster = await startLoopbackCluster({
      natsServer,
      natsConf: renderNatsConf(input({ cluster: { size: 1 } }), context),
      resolverConf: renderResolverConf(password),
      names: podNames(1),
    });
    const [server] = cluster.servers;
    if (server === undefined) throw new Error('no server started');
    const servers = clientUrls(cluster.servers);
    const admin = await retrying(
      () => connect({ servers, user: SYSTEM_ACCOUNT_USER, pass: password, reconnect: false }),
      10_000,
    );
    await admin.close();
    const jsz = (await retrying(() => monitor(server, 'jsz'), 10_000)) as {
      config: { max_memory: number };
    };
    expect(jsz.config.max_memory).toBe(1_073_741_824);
    await expect(
      connect({ servers, user: SYSTEM_ACCOUNT_USER, pass: 'pa"ss', reconnect: false }),
    ).rejects.toThrow(/Authorization/i);
  });
});

describe('a server with memory storage disabled', () => {
  let cluster: LoopbackCluster | undefined;
  afterAll(async () => {
    await cluster?.stop();
  });

  test('has no memory store and refuses memory streams', async () => {
    cluster = await startLoopbackCluster({
      natsServer,
      natsConf: renderNatsConf(
        input({ cluster: { size: 1 }, jetStream: { memStorage: { enabled: false } } }),
        context,
      ),
      resolverConf: renderResolverConf('secret'),
      names: podNames(1),
    });
    const [server] = cluster.servers;
    if (server === undefined) throw new Error('no server started');
    const jsz = (await retrying(() => monitor(server, 'jsz'), 10_000)) as {
      config: { max_memory: number };
    };
    expect(jsz.config.max_memory).toBe(0);
    const nc = await retrying(
      () => connect({ servers: clientUrls(cluster?.servers ?? []), reconnect: false }),
      10_000,
    );
    try {
      const jsm = await jetstreamManager(nc);
      await expect(
        jsm.streams.add({ name: 'in-memory', subjects: ['mem.>'], storage: StorageType.Memory }),
      ).rejects.toThrow(/insufficient resources|memory/i);
    } finally {
      await nc.close();
    }
  });
});

describe('the memory and disk guards on a real server', () => {
  let cluster: LoopbackCluster | undefined;
  afterEach(async () => {
    await cluster?.stop();
    cluster = undefined;
  });

  /** The nats container's GOMEMLIMIT in the rendered StatefulSet, if any. */
  function renderedGoMemLimit(spec: NatsSpec): string | undefined {
    const statefulSet = renderStatefulSet(input(spec), context) as V1StatefulSet;
    const nats = statefulSet.spec?.template.spec?.containers.find((c) => c.name === NATS_CONTAINER);
    return nats?.env?.find((e) => e.name === GOMEMLIMIT_ENV)?.value;
  }

  async function startOne(spec: NatsSpec, env: Record<string, string>): Promise<RunningServer> {
    cluster = await startLoopbackCluster({
      natsServer,
      natsConf: renderNatsConf(input(spec), context),
      resolverConf: renderResolverConf('secret'),
      names: podNames(1),
      env,
    });
    const [server] = cluster.servers;
    if (server === undefined) throw new Error('no server started');
    return server;
  }

  interface Varz {
    gomemlimit?: number;
    jetstream: { config: { max_memory: number; max_storage: number } };
  }

  test('the rendered GOMEMLIMIT is the Go runtime limit and max_file_store the JetStream limit', async () => {
    const spec: NatsSpec = {
      cluster: { size: 1 },
      jetStream: { fileStorage: { size: '2Gi' } },
      resources: { limits: { memory: '512Mi' } },
    };
    const goMemLimit = renderedGoMemLimit(spec);
    // 80% of 512Mi, and 2Gi less 256Mi, written out independently of the renderer.
    expect(goMemLimit).toBe('429496729');
    const server = await startOne(spec, { [GOMEMLIMIT_ENV]: goMemLimit ?? '' });
    const varz = (await retrying(() => monitor(server, 'varz'), 10_000)) as Varz;
    expect(server.exited()).toBe(false);
    expect(varz.gomemlimit).toBe(429_496_729);
    expect(varz.jetstream.config.max_storage).toBe(1_879_048_192);
    const jsz = (await monitor(server, 'jsz')) as { config: { max_storage: number } };
    expect(jsz.config.max_storage).toBe(1_879_048_192);
  });

  test('without a memory limit there is no GOMEMLIMIT and the server runs without one', async () => {
    const spec: NatsSpec = {
      cluster: { size: 1 },
      resources: { requests: { memory: '64Mi' } },
    };
    expect(renderedGoMemLimit(spec)).toBeUndefined();
    const server = await startOne(spec, {});
    const varz = (await retrying(() => monitor(server, 'varz'), 10_000)) as Varz;
    expect(varz.gomemlimit).toBeUndefined();
    expect(varz.jetstream.config.max_storage).toBe(805_306_368); // 1Gi less 256Mi
  });
});
