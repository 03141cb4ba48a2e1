// What the tests on the real node share: a plane with a worker node, owned by a process of its
// own (node-owner.ts, so that killing it can prove the host is put back), kubectl against it,
// the NATS pods and their monitoring endpoints, and the manager run beside it as a process.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import * as k8s from '@kubernetes/client-node';
import type { JetStreamClient } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { buildNatsCrd } from '../../src/api/crd.ts';
import { clientFor } from '../../src/kube/api.ts';
import { ensureCrd } from '../../src/kube/crd.ts';
import { resolveClusterNames } from '../../src/localplane/cluster-dns.ts';
import type { LocalNode, WorkerRestart } from '../../src/localplane/node.ts';
import { eventually } from './kube.ts';

const run = promisify(execFile);
const MAIN = new URL('../../src/manager/main.ts', import.meta.url).pathname;
const OWNER = new URL('./node-owner.ts', import.meta.url).pathname;
const DNS_PRELOAD = new URL('../../src/localplane/cluster-dns-preload.ts', import.meta.url)
  .pathname;
const PRIORITY_CLASS = new URL('../../deploy/manager/priority-class.yaml', import.meta.url)
  .pathname;

export const NS = 'kyma-system';
export const NAME = 'eventing-nats';

export interface NodeOwner {
  readonly child: ChildProcess;
  readonly dir: string;
  readonly kubeconfig: string;
  readonly node: LocalNode;
  /** The owner's later answers, one JSON line each (node-owner.ts). */
  readonly answers: AsyncIterator<string>;
}

export interface Pod {
  metadata: {
    name: string;
    uid: string;
    deletionTimestamp?: string;
    labels?: Record<string, string>;
  };
  spec: { nodeName?: string; containers: { name: string; image: string }[] };
  status: {
    podIP?: string;
    phase?: string;
    conditions?: { type: string; status: string }[];
    containerStatuses?: {
      name: string;
      ready: boolean;
      restartCount: number;
      containerID?: string;
    }[];
  };
}

export interface Condition {
  type: string;
  status: string;
  reason: string;
  message: string;
}

/** A server's `/jsz`: what the tests read of JetStream's own view. */
export interface Jsz {
  meta_cluster?: {
    cluster_size?: number;
    leader?: string;
    replicas?: { name: string; current: boolean; offline?: boolean }[];
  };
  disabled?: boolean;
  streams?: number;
}

/** Starts the owner of a plane with a node; resolves once it printed where the plane is. */
export async function startNodeOwner(): Promise<NodeOwner> {
  const child = spawn(process.execPath, ['--no-warnings', OWNER], {
    stdio: ['pipe', 'pipe', 'pipe'],
    detached: true,
  });
  let log = '';
  child.stderr.on('data', (chunk: Buffer) => (log += chunk.toString()));
  const answers = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  const exited = new Promise<never>((_resolve, reject) => {
    child.once('exit', (code) => {
      reject(new Error(`the node's owner exited (${String(code)}):\n${log}`));
    });
  });
  exited.catch(() => undefined);
  const first = await Promise.race([answers.next(), exited]);
  if (first.done === true) throw new Error(`the node's owner printed nothing:\n${log}`);
  const where = JSON.parse(first.value) as Omit<NodeOwner, 'child' | 'answers'>;
  return { child, answers, ...where };
}

/** Restarts one worker of the owner's node as a reboot would (LocalPlane.restartWorker). */
export async function restartWorker(owner: NodeOwner, name: string): Promise<WorkerRestart> {
  owner.child.stdin?.write(`${JSON.stringify({ restartWorker: name })}\n`);
  const answer = await owner.answers.next();
  if (answer.done === true) throw new Error("the node's owner ended before it answered");
  const parsed = JSON.parse(answer.value) as { restarted?: WorkerRestart; error?: string };
  if (parsed.restarted === undefined) throw new Error(`restarting ${name}: ${parsed.error ?? ''}`);
  return parsed.restarted;
}

export function running(child: ChildProcess): boolean {
  return child.exitCode === null && child.signalCode === null;
}

export async function exited(child: ChildProcess): Promise<number | null> {
  if (!running(child)) return child.exitCode;
  return new Promise((resolve) => child.once('exit', resolve));
}

/**
 * Stops the owner: SIGTERM and up to `graceMs` for the plane to stop and put the host back, then
 * SIGKILL (its reaper then puts the host back).
 */
export async function stopNodeOwner(owner: NodeOwner, graceMs: number): Promise<void> {
  if (running(owner.child)) {
    owner.child.kill('SIGTERM');
    await Promise.race([exited(owner.child), sleep(graceMs)]);
    if (running(owner.child)) owner.child.kill('SIGKILL');
  }
  owner.child.stdout?.destroy();
  owner.child.stderr?.destroy();
}

/**
 * The end of a suite on the owner's node, whatever state its test left: the NATS connection
 * closed, the manager and the owner killed (the owner's reaper puts the host back), the
 * figures printed.
 */
export async function endNodeSuite(suite: {
  readonly nc: NatsConnection | undefined;
  readonly manager: ChildProcess | undefined;
  readonly owner: NodeOwner;
  readonly figures: Figures;
}): Promise<void> {
  await suite.nc?.close().catch(() => undefined);
  if (suite.manager?.exitCode === null) suite.manager.kill('SIGKILL');
  if (running(suite.owner.child)) suite.owner.child.kill('SIGKILL');
  suite.figures.print();
}

/** kubectl against one plane, as a user with its admin kubeconfig. */
export class NodeKube {
  readonly kubeconfig: string;

  constructor(kubeconfig: string) {
    this.kubeconfig = kubeconfig;
  }

  /** Its stdout; rejects with kubectl's stderr on the error when it fails. */
  async kubectl(args: readonly string[], input?: string): Promise<string> {
    const child = run('kubectl', ['--kubeconfig', this.kubeconfig, ...args], {
      encoding: 'utf8',
      maxBuffer: 64 * 1024 * 1024,
    });
    if (input !== undefined) child.child.stdin?.end(input);
    return (await child).stdout;
  }

  /** `kubectl get … -o json`, undefined when it fails (not found, or not yet served). */
  async getJson<T>(args: readonly string[]): Promise<T | undefined> {
    try {
      return JSON.parse(await this.kubectl(['get', ...args, '-o', 'json'])) as T;
    } catch {
      return undefined;
    }
  }

  /** The NATS pods, found through the StatefulSet's own selector (labels are the renderer's). */
  async natsPods(): Promise<Pod[]> {
    const sts = await this.getJson<{ spec: { selector: { matchLabels: Record<string, string> } } }>(
      ['statefulset', NAME, '-n', NS],
    );
    if (sts === undefined) return [];
    const selector = Object.entries(sts.spec.selector.matchLabels)
      .map(([key, value]) => `${key}=${value}`)
      .join(',');
    return (await this.getJson<{ items: Pod[] }>(['pods', '-n', NS, '-l', selector]))?.items ?? [];
  }

  async readyPods(count: number, timeoutMs: number): Promise<Pod[]> {
    return eventually(
      `${String(count)} NATS pods Ready`,
      async () => {
        const pods = await this.natsPods();
        return pods.length === count && pods.every(isReady) ? pods : undefined;
      },
      timeoutMs,
    );
  }

  /** A merge patch of the NATS resource's spec, as a user would send it. */
  async patchNatsSpec(spec: unknown): Promise<void> {
    await this.kubectl([
      'patch',
      'nats',
      NAME,
      '-n',
      NS,
      '--type=merge',
      '-p',
      JSON.stringify({ spec }),
    ]);
  }

  /** What every cluster under test needs first: the NATS CRD, the namespace, the priority class. */
  async prepare(): Promise<void> {
    const kc = new k8s.KubeConfig();
    kc.loadFromFile(this.kubeconfig);
    await ensureCrd(clientFor(kc), buildNatsCrd(), 'nats-manager-tests');
    await this.kubectl(['create', 'namespace', NS]);
    await this.kubectl(['apply', '-f', PRIORITY_CLASS]);
  }
}

export function isReady(pod: Pod): boolean {
  return (
    pod.metadata.deletionTimestamp === undefined &&
    pod.status.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') === true
  );
}

/** JetStream's view from a server's monitoring endpoint, on the pod network; undefined if none. */
export async function jsz(pod: Pod): Promise<Jsz | undefined> {
  try {
    const res = await fetch(`http://${pod.status.podIP ?? ''}:8222/jsz`, {
      signal: AbortSignal.timeout(3_000),
    });
    return (await res.json()) as Jsz;
  } catch {
    return undefined;
  }
}

/** `work` until it succeeds, every 500 ms; its last error once `timeoutMs` has passed. */
export async function retrying<T>(work: () => Promise<T>, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await work();
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await sleep(500);
    }
  }
}

/** Figures printed as they come, under a tag, and again together at the end of the file. */
export class Figures {
  private readonly lines: string[] = [];
  private readonly tag: string;

  constructor(tag: string) {
    this.tag = tag;
  }

  add(line: string): void {
    this.lines.push(line);
    process.stdout.write(`[${this.tag}] ${line}\n`);
  }

  all(): readonly string[] {
    return this.lines;
  }

  print(): void {
    process.stdout.write(`[${this.tag}] figures:\n${this.lines.map((f) => `  ${f}`).join('\n')}\n`);
  }
}

export interface NodeManagerOptions {
  /** More environment, e.g. NATS_IMAGE. */
  readonly env?: Readonly<Record<string, string>>;
  /** Everything the manager writes, stdout and stderr. */
  readonly onOutput: (text: string) => void;
}

/**
 * src/manager/main.ts as a process beside the plane: its kubeconfig, the cluster's DNS for the
 * names of the pods (the preload resolves them as a pod would), ephemeral ports. Resolves once
 * it serves its probes and webhooks.
 */
export async function startManagerOnNode(
  owner: NodeOwner,
  options: NodeManagerOptions,
): Promise<ChildProcess> {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    KUBECONFIG: owner.kubeconfig,
    NATS_MANAGER_CLUSTER_DNS: owner.node.clusterDns,
    CLUSTER_DOMAIN: owner.node.clusterDomain,
    ...options.env,
  };
  delete env.KUBERNETES_SERVICE_HOST;
  const child = spawn(
    process.execPath,
    [
      '--no-warnings',
      '--import',
      DNS_PRELOAD,
      MAIN,
      '--webhook-port=0',
      '--metrics-bind-address=127.0.0.1:0',
      '--health-probe-bind-address=127.0.0.1:0',
    ],
    { env, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let output = '';
  const take = (chunk: Buffer): void => {
    const text = chunk.toString();
    output += text;
    options.onOutput(text);
  };
  child.stdout.on('data', take);
  child.stderr.on('data', take);
  await eventually(
    'the manager to serve its probes and webhooks',
    () => {
      if (!running(child)) throw new Error(`the manager exited:\n${output}`);
      const serving =
        output.includes('serving metrics and probes') &&
        output.includes('admission webhooks serving');
      return serving ? true : undefined;
    },
    60_000,
  );
  return child;
}

/** SIGTERM, and its exit awaited; SIGKILL if it is still there after `graceMs`. */
export async function stopProcess(child: ChildProcess, graceMs = 30_000): Promise<void> {
  if (!running(child)) return;
  child.kill('SIGTERM');
  await Promise.race([exited(child), sleep(graceMs)]);
  if (running(child)) {
    child.kill('SIGKILL');
    await exited(child);
  }
}

/** Names of the cluster resolved through its DNS in this process; returns the undo. */
export function resolveNodeNames(owner: NodeOwner): () => void {
  return resolveClusterNames(owner.node.clusterDns, owner.node.clusterDomain);
}

/** A client of the NATS Service by its cluster name, reconnecting for as long as it is open. */
export async function connectToNats(owner: NodeOwner, name: string): Promise<NatsConnection> {
  return connect({
    servers: `nats://${NAME}.${NS}.svc.${owner.node.clusterDomain}:4222`,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 250,
    name,
  });
}

export interface PublishCounts {
  readonly acked: number;
  /** Acknowledged, but only after a retry. */
  readonly retried: number;
  /** Not acknowledged within the retry window. */
  readonly failed: number;
  /** The longest wait for one acknowledgement, retries included. */
  readonly longestMs: number;
  /** The bodies (and message ids) of every acknowledged publish, in order. */
  readonly ackedBodies: readonly string[];
}

/**
 * Publishes to `subject` one message at a time until stopped, each retried for `retryWindowMs`
 * under its message id (so a retry of a message already stored is a duplicate the stream drops).
 */
export function startPublishLoop(
  js: JetStreamClient,
  subject: string,
  retryWindowMs: number,
): { stop: () => Promise<PublishCounts> } {
  const counts = { acked: 0, retried: 0, failed: 0, longestMs: 0 };
  const ackedBodies: string[] = [];
  const state = { publishing: true };
  const publishOne = async (id: string): Promise<void> => {
    const started = Date.now();
    for (let attempt = 0; ; attempt++) {
      try {
        await js.publish(subject, id, { msgID: id });
        counts.acked++;
        ackedBodies.push(id);
        if (attempt > 0) counts.retried++;
        break;
      } catch {
        if (Date.now() - started > retryWindowMs) {
          counts.failed++;
          break;
        }
        await sleep(100);
      }
    }
    counts.longestMs = Math.max(counts.longestMs, Date.now() - started);
  };
  const loop = (async () => {
    for (let i = 0; state.publishing; i++) {
      // Unique per loop: the id is also the message id JetStream de-duplicates by.
      await publishOne(`${subject}-${String(i)}`);
      await sleep(20);
    }
  })();
  return {
    stop: async () => {
      state.publishing = false;
      await loop;
      return { ...counts, ackedBodies };
    },
  };
}
