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
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { freePort } from '../../src/localplane/plane.ts';
import { signalGroup } from '../../src/localplane/reaper.ts';
import {
  CLUSTER_ADVERTISE_ENV,
  NATS_CONF_KEY,
  NATS_CONFIG_MOUNT,
  RESOLVER_CONF_KEY,
  RESOLVER_CONF_MOUNT,
  SERVER_NAME_ENV,
} from '../../src/render/nats-conf.ts';

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
  /** Kills every server and removes the directory. Safe to call twice. */
  stop(): Promise<void>;
}

export interface LoopbackClusterOptions {
  readonly natsServer: string;
  readonly natsConf: string;
  readonly resolverConf: string;
  /** SERVER_NAME of each server, as the pods would be named; their count is the cluster size. */
  readonly names: readonly string[];
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

/** Writes each server's config at the pod's mount paths and starts it as the pod would. */
export async function startLoopbackCluster(
  options: LoopbackClusterOptions,
): Promise<LoopbackCluster> {
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
      const configFile = join(server.dir, NATS_CONFIG_MOUNT, NATS_CONF_KEY);
      mkdirSync(join(server.dir, NATS_CONFIG_MOUNT), { recursive: true });
      mkdirSync(join(server.dir, RESOLVER_CONF_MOUNT), { recursive: true });
      writeFileSync(configFile, rewriteForLoopback(options.natsConf, server, layout));
      writeFileSync(join(server.dir, RESOLVER_CONF_MOUNT, RESOLVER_CONF_KEY), options.resolverConf);
      const logFile = join(server.dir, 'nats-server.log');
      const fd = openSync(logFile, 'a');
      const child = spawn(options.natsServer, ['--config', configFile], {
        detached: true,
        stdio: ['ignore', fd, fd],
        env: {
          ...process.env,
          [SERVER_NAME_ENV]: server.name,
          [CLUSTER_ADVERTISE_ENV]: `${LOOPBACK}:${server.clusterPort}`,
        },
      });
      closeSync(fd);
      if (child.pid === undefined) throw new Error(`could not start ${options.natsServer}`);
      appendFileSync(join(dir, 'pids'), `${child.pid}\n`);
      let exited = false;
      child.on('exit', () => {
        exited = true;
      });
      servers.push({ ...server, configFile, logFile, child, exited: () => exited });
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
  throw new Error(`no JetStream meta leader within ${timeoutMs} ms (last: ${last})`);
}
