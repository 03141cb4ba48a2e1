// Runs real nats-server processes from a rendered nats.conf on loopback. Only what a machine
// without pods forces is rewritten: listen addresses and ports, the routes to the peers, and the
// store and pid paths. server_name and cluster_advertise stay `$VAR` references, fed through the
// environment as the pod spec does.
import { spawn, type ChildProcess } from 'node:child_process';
import {
  appendFileSync,
  closeSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { StorageType, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream';
import { ensureBinaries } from '../../src/localplane/binaries.ts';
import { freePort } from '../../src/localplane/plane.ts';
import { signalGroup } from '../../src/localplane/reaper.ts';
import {
  CLUSTER_ADVERTISE_ENV,
  NATS_CONF_KEY,
  NATS_CONFIG_MOUNT,
  RESOLVER_CONF_KEY,
  RESOLVER_CONF_MOUNT,
  SERVER_NAME_ENV,
  renderNatsConf,
  renderResolverConf,
} from '../../src/render/nats-conf.ts';
import { DEFAULT_IMAGES, type RenderInput } from '../../src/render/context.ts';

const LOOPBACK = '127.0.0.1';
const REAPER = resolve(import.meta.dirname, '../../src/localplane/reaper.ts');

export interface LoopbackServer {
  /** What the pod name would be: SERVER_NAME. */
  readonly name: string;
  readonly clientPort: number;
  readonly clusterPort: number;
  readonly monitorPort: number;
  /** Stands in for the pod's filesystem: config mounts, store and pid file live under it. */
  readonly dir: string;
}

// One pattern per line the rewrite may replace; withoutLoopbackLines drops exactly these.
const CLIENT_PORT = /^port: \d+$/;
const MONITOR_PORT = /^http_port: \d+$/;
const PID_FILE = /^pid_file: ".*"$/;
const STORE_DIR = /^ {2}store_dir: ".*"$/;
const CLUSTER_PORT = /^ {2}port: \d+$/;
const ROUTE = /^ {4}"nats:\/\/[^"]*"$/;
const REWRITTEN = [CLIENT_PORT, MONITOR_PORT, PID_FILE, STORE_DIR, CLUSTER_PORT, ROUTE];
// What the port lines become; pid_file, store_dir and routes keep their shape.
const REPLACEMENTS = [/^listen: /, /^http: /, /^ {2}listen: /];

function confPath(path: string): string {
  if (!/^[A-Za-z0-9._/-]+$/.test(path)) throw new Error(`unexpected characters in ${path}`);
  return `"${path}"`;
}

/**
 * `conf` as `server` runs it beside `peers` (all servers, in ordinal order, itself included as a
 * pod's routes include itself). Each rendered route is replaced by the loopback address of the
 * peer with the same ordinal. Throws if the rendered text lacks a line it expects, so a change
 * of the renderer cannot quietly turn this into a test of something else.
 */
export function rewriteForLoopback(
  conf: string,
  server: LoopbackServer,
  peers: readonly LoopbackServer[],
): string {
  const counts = new Map<RegExp, number>(REWRITTEN.map((pattern) => [pattern, 0]));
  let section = '';
  const lines = conf.split('\n').map((line) => {
    const opened = /^(\w+) \{$/.exec(line);
    if (opened?.[1] !== undefined) section = opened[1];
    if (line === '}') section = '';
    const rewrite = (pattern: RegExp, replacement: string): string => {
      counts.set(pattern, (counts.get(pattern) ?? 0) + 1);
      return replacement;
    };
    if (section === '' && CLIENT_PORT.test(line)) {
      return rewrite(CLIENT_PORT, `listen: ${LOOPBACK}:${server.clientPort}`);
    }
    if (section === '' && MONITOR_PORT.test(line)) {
      return rewrite(MONITOR_PORT, `http: ${LOOPBACK}:${server.monitorPort}`);
    }
    if (section === '' && PID_FILE.test(line)) {
      return rewrite(PID_FILE, `pid_file: ${confPath(join(server.dir, 'nats.pid'))}`);
    }
    if (section === 'jetstream' && STORE_DIR.test(line)) {
      return rewrite(STORE_DIR, `  store_dir: ${confPath(join(server.dir, 'data'))}`);
    }
    if (section === 'cluster' && CLUSTER_PORT.test(line)) {
      return rewrite(CLUSTER_PORT, `  listen: ${LOOPBACK}:${server.clusterPort}`);
    }
    if (section === 'cluster' && ROUTE.test(line)) {
      const peer = peers[counts.get(ROUTE) ?? 0];
      if (peer === undefined) throw new Error(`more routes than the ${peers.length} peers`);
      return rewrite(ROUTE, `    "nats://${LOOPBACK}:${peer.clusterPort}"`);
    }
    return line;
  });
  const clustered = peers.length > 1;
  for (const [pattern, count] of counts) {
    const expected =
      pattern === ROUTE
        ? clustered
          ? peers.length
          : 0
        : pattern === CLUSTER_PORT && !clustered
          ? 0
          : 1;
    if (count !== expected) {
      throw new Error(`expected ${expected} line(s) like ${pattern.source}, rewrote ${count}`);
    }
  }
  return lines.join('\n');
}

/** The lines rewriteForLoopback leaves alone, rewritten or not: compare these to see it. */
export function withoutLoopbackLines(conf: string): string {
  return conf
    .split('\n')
    .filter((line) => ![...REWRITTEN, ...REPLACEMENTS].some((pattern) => pattern.test(line)))
    .join('\n');
}

export interface RunningServer extends LoopbackServer {
  readonly configFile: string;
  readonly logFile: string;
  readonly child: ChildProcess;
  exited(): boolean;
}

export interface LoopbackCluster {
  readonly dir: string;
  readonly servers: readonly RunningServer[];
  /** Ends one server as a crash would: SIGKILL to its process group, then waits for it. */
  kill(server: RunningServer): Promise<void>;
  /**
   * Kills one server and starts it again under the same name and ports, its store kept or (with
   * `wipe`) removed, as a pod re-created on a deleted claim; the new process replaces it in
   * `servers`.
   */
  restart(server: RunningServer, options?: { wipe?: boolean }): Promise<RunningServer>;
  /** Kills every server and removes the directory. Safe to call twice. */
  stop(): Promise<void>;
}

export interface LoopbackClusterOptions {
  readonly natsServer: string;
  readonly natsConf: string;
  readonly resolverConf: string;
  /** SERVER_NAME of each server, as the pods would be named; their count is the cluster size. */
  readonly names: readonly string[];
  /** More environment of every server, as the pod's container env would set it. */
  readonly env?: Readonly<Record<string, string>>;
}

// Kills the process groups listed in <dir>/pids and removes <dir> should this test process die
// without stop() (an interrupted or killed run); it leaves on its own once <dir> is gone.
function startReaper(dir: string): void {
  spawn(process.execPath, ['--no-warnings', REAPER, String(process.pid), dir], {
    detached: true,
    stdio: 'ignore',
  }).unref();
}

async function waitExited(server: RunningServer, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!server.exited() && Date.now() < deadline) await sleep(20);
}

/** Starts one server from the config written under its directory, as the pod would. */
function spawnServer(
  dir: string,
  server: LoopbackServer,
  natsServer: string,
  env: Readonly<Record<string, string>> | undefined,
): RunningServer {
  const configFile = join(server.dir, NATS_CONFIG_MOUNT, NATS_CONF_KEY);
  const logFile = join(server.dir, 'nats-server.log');
  const fd = openSync(logFile, 'a');
  const child = spawn(natsServer, ['--config', configFile], {
    detached: true,
    stdio: ['ignore', fd, fd],
    env: {
      ...process.env,
      ...env,
      [SERVER_NAME_ENV]: server.name,
      [CLUSTER_ADVERTISE_ENV]: `${LOOPBACK}:${server.clusterPort}`,
    },
  });
  closeSync(fd);
  if (child.pid === undefined) throw new Error(`could not start ${natsServer}`);
  appendFileSync(join(dir, 'pids'), `${child.pid}\n`);
  let exited = false;
  child.on('exit', () => {
    exited = true;
  });
  return { ...server, configFile, logFile, child, exited: () => exited };
}

/** The last lines a server wrote: what a failure message shows. */
export function logTail(server: RunningServer, lines = 8): string {
  try {
    return readFileSync(server.logFile, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolvePort) => {
    const socket = createConnection({ host: LOOPBACK, port });
    const done = (ok: boolean): void => {
      socket.destroy();
      resolvePort(ok);
    };
    socket.setTimeout(1_000, () => {
      done(false);
    });
    socket.once('connect', () => {
      done(true);
    });
    socket.once('error', () => {
      done(false);
    });
  });
}

/** The first server that exited before its client and cluster ports accepted, if any. */
async function failedToListen(
  servers: readonly RunningServer[],
  timeoutMs: number,
): Promise<RunningServer | undefined> {
  const deadline = Date.now() + timeoutMs;
  const pending = new Set(servers);
  // A lone server has no cluster listener.
  const clustered = servers.length > 1;
  while (pending.size > 0 && Date.now() < deadline) {
    for (const server of [...pending]) {
      if (server.exited()) return server;
      const listening =
        (await accepts(server.clientPort)) && (!clustered || (await accepts(server.clusterPort)));
      if (listening) {
        pending.delete(server);
      }
    }
    if (pending.size > 0) await sleep(50);
  }
  const [stuck] = pending;
  if (stuck !== undefined) throw new Error(`${stuck.name} not listening:\n${logTail(stuck)}`);
  return servers.find((server) => server.exited());
}

/**
 * Writes each server's config at the pod's mount paths and starts it as the pod would. Ports
 * are found free and then released, so another process may take one before nats-server binds
 * it: such a start is retried on fresh ports, twice at most.
 */
export async function startLoopbackCluster(
  options: LoopbackClusterOptions,
): Promise<LoopbackCluster> {
  for (let attempt = 1; ; attempt++) {
    const cluster = await launchLoopbackCluster(options);
    const failed = await failedToListen(cluster.servers, 15_000).catch(async (error: unknown) => {
      await cluster.stop();
      throw error;
    });
    if (failed === undefined) return cluster;
    const tail = logTail(failed);
    await cluster.stop();
    if (attempt < 3 && /address already in use/i.test(tail)) continue;
    throw new Error(`${failed.name} exited on start:\n${tail}`);
  }
}

async function launchLoopbackCluster(options: LoopbackClusterOptions): Promise<LoopbackCluster> {
  const dir = mkdtempSync(join(tmpdir(), 'nats-manager-nats-'));
  startReaper(dir);
  const servers: RunningServer[] = [];
  const stop = async (): Promise<void> => {
    for (const server of servers) signalGroup(server.child.pid ?? 0, 'SIGKILL');
    await Promise.all(servers.map((server) => waitExited(server, 5_000)));
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const layout: LoopbackServer[] = [];
    for (const name of options.names) {
      const [clientPort, clusterPort, monitorPort] = [
        await freePort(),
        await freePort(),
        await freePort(),
      ];
      layout.push({ name, clientPort, clusterPort, monitorPort, dir: join(dir, name) });
    }
    for (const server of layout) {
      mkdirSync(join(server.dir, NATS_CONFIG_MOUNT), { recursive: true });
      mkdirSync(join(server.dir, RESOLVER_CONF_MOUNT), { recursive: true });
      writeFileSync(
        join(server.dir, NATS_CONFIG_MOUNT, NATS_CONF_KEY),
        rewriteForLoopback(options.natsConf, server, layout),
      );
      writeFileSync(join(server.dir, RESOLVER_CONF_MOUNT, RESOLVER_CONF_KEY), options.resolverConf);
      servers.push(spawnServer(dir, server, options.natsServer, options.env));
    }
  } catch (err) {
    await stop();
    throw err;
  }
  return {
    dir,
    servers,
    async kill(server) {
      signalGroup(server.child.pid ?? 0, 'SIGKILL');
      await waitExited(server, 5_000);
    },
    async restart(server, restartOptions = {}) {
      signalGroup(server.child.pid ?? 0, 'SIGKILL');
      await waitExited(server, 5_000);
      if (restartOptions.wipe === true)
        rmSync(join(server.dir, 'data'), { recursive: true, force: true });
      const again = spawnServer(dir, server, options.natsServer, options.env);
      servers[servers.indexOf(server)] = again;
      return again;
    },
    stop,
  };
}

export interface JszMeta {
  readonly leader?: string;
  readonly cluster_size?: number;
}

async function getJson(url: string): Promise<unknown> {
  const res = await fetch(url, { signal: AbortSignal.timeout(1_000) });
  if (!res.ok) throw new Error(`${url}: HTTP ${res.status}`);
  return res.json();
}

/** A monitoring endpoint of one server, e.g. `varz` or `jsz`. */
export async function monitor(server: LoopbackServer, endpoint: string): Promise<unknown> {
  return getJson(`http://${LOOPBACK}:${server.monitorPort}/${endpoint}`);
}

/**
 * Waits until every server that runs reports the same JetStream meta leader, which is only
 * elected once a quorum of the cluster has met; returns its name.
 */
export async function waitForMetaLeader(
  servers: readonly RunningServer[],
  timeoutMs: number,
): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  let last = 'no answer yet';
  while (Date.now() < deadline) {
    const running = servers.filter((server) => !server.exited());
    try {
      const leaders = await Promise.all(
        running.map(async (server) => {
          const jsz = (await monitor(server, 'jsz')) as { meta_cluster?: JszMeta };
          return jsz.meta_cluster?.leader ?? '';
        }),
      );
      last = JSON.stringify(leaders);
      const [first] = leaders;
      if (first !== undefined && first !== '' && leaders.every((leader) => leader === first)) {
        return first;
      }
    } catch (err) {
      last = String(err);
    }
    await sleep(100);
  }
  const exited = servers
    .filter((server) => server.exited())
    .map((server) => `\n${server.name} exited:\n${logTail(server)}`);
  throw new Error(
    `no JetStream meta leader within ${timeoutMs} ms (last: ${last})${exited.join('')}`,
  );
}

/**
 * Real servers from the nats.conf and resolver.conf the manager renders for `spec` (a NATS
 * resource `eventing-nats` in kyma-system), named `names` as the pods would be; resolves once
 * they elected a meta leader, with the nats.conf they run.
 */
export async function startRenderedCluster(
  spec: RenderInput['spec'],
  password: string,
  names: readonly string[],
): Promise<{ cluster: LoopbackCluster; natsConf: string }> {
  const { 'nats-server': natsServer } = await ensureBinaries(['nats-server']);
  const natsConf = renderNatsConf(
    { name: 'eventing-nats', namespace: 'kyma-system', uid: 'uid-1', spec },
    {
      istioPresent: false,
      // The servers read the password from resolver.conf; nats.conf only includes it.
      systemAccountPassword: 'unused-here',
      images: DEFAULT_IMAGES,
      clusterDomain: 'cluster.local',
    },
  );
  const cluster = await startLoopbackCluster({
    natsServer,
    natsConf,
    resolverConf: renderResolverConf(password),
    names,
  });
  try {
    await waitForMetaLeader(cluster.servers, 30_000);
  } catch (error) {
    await cluster.stop();
    throw error;
  }
  return { cluster, natsConf };
}

/** An R`replicas` file stream on `name.>`, retried while a new meta group still settles. */
export async function addFileStream(
  jsm: JetStreamManager,
  name: string,
  replicas: number,
  timeoutMs = 10_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      await jsm.streams.add({
        name,
        subjects: [`${name}.>`],
        num_replicas: replicas,
        storage: StorageType.File,
      });
      return;
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await sleep(200);
    }
  }
}

/**
 * The bodies of the first `count` messages of a stream, in order, through an ordered consumer;
 * fewer when the stream holds fewer within `timeoutMs`.
 */
export async function replayStream(
  js: JetStreamClient,
  stream: string,
  count: number,
  timeoutMs = 15_000,
): Promise<string[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const consumer = await js.consumers.get(stream);
      const seen: string[] = [];
      while (seen.length < count && Date.now() < deadline) {
        const batch = await consumer.fetch({ max_messages: count - seen.length, expires: 2_000 });
        for await (const message of batch) seen.push(message.string());
      }
      return seen;
    } catch (error) {
      // "no responders" while the stream's group elects a leader (just created, or a peer just
      // removed): read again from the start with a new consumer.
      if (Date.now() > deadline) throw error;
      await sleep(200);
    }
  }
}
