// What each NATS server says about itself on its HTTP monitoring port (8222): whether it runs
// with JetStream enabled, whether it is current (its own full /healthz: meta and every stream and
// consumer assigned to it caught up), the meta leader it knows, the streams it leads with the
// currency of their replicas as the leader sees them, and its file storage used and allowed.
// One deadline covers every request to one server; the reconcile's signal ends them all.
import { errorMessage, isRecord } from '../base/json.ts';

/** The monitoring port every NATS pod serves (nats.conf `http_port`). */
export const MONITOR_PORT = 8222;
/** Each server gets this long to answer all its requests. */
export const MONITOR_TIMEOUT_MS = 2_000;

/** A replica of a raft group (the meta group or a stream) as its leader sees it. */
export interface ReplicaView {
  readonly name: string;
  readonly current: boolean;
  readonly lag: number;
  readonly offline: boolean;
}

/** A stream this server leads, with its followers as it sees them. */
export interface LedStream {
  readonly account: string;
  readonly name: string;
  readonly replicas: readonly ReplicaView[];
}

/** A stream with a replica on this server, as /jsz reports it. */
export interface StreamView extends LedStream {
  readonly leader?: string;
}

/** The parts of a /jsz?streams=true answer the manager reads. */
export interface JszView {
  /** JetStream is not running on this server. */
  readonly disabled: boolean;
  readonly metaLeader?: string;
  readonly metaClusterSize?: number;
  /** Only the meta leader's answer lists the group's replicas (itself left out). */
  readonly metaReplicas?: readonly ReplicaView[];
  readonly streams: readonly StreamView[];
  readonly storageUsed?: number;
  readonly storageMax?: number;
}

export type ServerHealth =
  | { readonly pod: string; readonly reachable: false; readonly error: string }
  | {
      readonly pod: string;
      readonly reachable: true;
      /** `/healthz?js-enabled-only=true` answered ok. */
      readonly jetStreamEnabled: boolean;
      /** Full `/healthz` answered ok; otherwise its error text in `healthError`. */
      readonly healthy: boolean;
      readonly healthError?: string;
      /** The meta leader this server knows; undefined when it knows none. */
      readonly metaLeader?: string;
      readonly metaClusterSize?: number;
      /** The meta group's followers, when this server is the meta leader. */
      readonly metaReplicas?: readonly ReplicaView[];
      readonly ledStreams: readonly LedStream[];
      /** File storage used and the configured maximum (max_file_store), in bytes. */
      readonly storageUsed?: number;
      readonly storageMax?: number;
    };

export interface MonitoredPod {
  readonly name: string;
  readonly ip: string;
  /** The monitoring port; MONITOR_PORT unless the server is not a pod (servers on loopback). */
  readonly port?: number;
}

/** The monitoring answers of one server; an injectable fetch for tests. */
export type Fetch = (url: string, init: { signal: AbortSignal }) => Promise<Response>;

async function getJson(
  fetcher: Fetch,
  url: string,
  signal: AbortSignal,
): Promise<{ status: number; body: unknown }> {
  const res = await fetcher(url, { signal });
  const text = await res.text();
  let body: unknown;
  try {
    body = JSON.parse(text) as unknown;
  } catch {
    body = text;
  }
  return { status: res.status, body };
}

function num(value: unknown): number | undefined {
  return typeof value === 'number' && Number.isFinite(value) ? value : undefined;
}

function str(value: unknown): string | undefined {
  return typeof value === 'string' && value !== '' ? value : undefined;
}

function replicas(value: unknown): ReplicaView[] {
  if (!Array.isArray(value)) return [];
  return value.filter(isRecord).map((r) => ({
    name: str(r.name) ?? '',
    current: r.current === true,
    lag: num(r.lag) ?? 0,
    offline: r.offline === true,
  }));
}

function healthError(body: unknown): string {
  if (isRecord(body)) return str(body.error) ?? str(body.status) ?? JSON.stringify(body);
  return String(body);
}

function streamsOf(accounts: readonly Record<string, unknown>[]): StreamView[] {
  return accounts.flatMap((account) => {
    const details = Array.isArray(account.stream_detail) ? account.stream_detail : [];
    return details.filter(isRecord).map((stream) => {
      const cluster = isRecord(stream.cluster) ? stream.cluster : {};
      return {
        account: str(account.name) ?? '',
        name: str(stream.name) ?? '',
        replicas: replicas(cluster.replicas),
        leader: str(cluster.leader),
      };
    });
  });
}

/** Reads a /jsz?streams=true answer; anything missing stays undefined. */
export function parseJsz(body: unknown): JszView {
  if (!isRecord(body)) return { disabled: true, streams: [] };
  const meta = isRecord(body.meta_cluster) ? body.meta_cluster : {};
  const config = isRecord(body.config) ? body.config : {};
  const accounts = Array.isArray(body.account_details) ? body.account_details.filter(isRecord) : [];
  return {
    disabled: body.disabled === true,
    metaLeader: str(meta.leader),
    metaClusterSize: num(meta.cluster_size),
    metaReplicas: meta.replicas === undefined ? undefined : replicas(meta.replicas),
    streams: streamsOf(accounts),
    storageUsed: num(body.storage),
    storageMax: num(config.max_storage),
  };
}

function withSignal(options: { timeoutMs?: number; signal?: AbortSignal }): {
  signal: AbortSignal;
  timeout: AbortSignal;
  timeoutMs: number;
} {
  const timeoutMs = options.timeoutMs ?? MONITOR_TIMEOUT_MS;
  const timeout = AbortSignal.timeout(timeoutMs);
  const signal =
    options.signal === undefined ? timeout : AbortSignal.any([timeout, options.signal]);
  return { signal, timeout, timeoutMs };
}

/** One server's health, within `timeoutMs`; never rejects (an unreachable server says so). */
export async function serverHealth(
  pod: MonitoredPod,
  options: { timeoutMs?: number; signal?: AbortSignal; fetch?: Fetch } = {},
): Promise<ServerHealth> {
  const fetcher = options.fetch ?? fetch;
  const { signal, timeout, timeoutMs } = withSignal(options);
  const base = `http://${pod.ip}:${String(pod.port ?? MONITOR_PORT)}`;
  try {
    const [enabled, full, jsz] = await Promise.all([
      getJson(fetcher, `${base}/healthz?js-enabled-only=true`, signal),
      getJson(fetcher, `${base}/healthz`, signal),
      getJson(fetcher, `${base}/jsz?streams=true&raft=true`, signal),
    ]);
    const view = parseJsz(jsz.body);
    // /jsz does not name its server; server_name is the pod name (SERVER_NAME from the pod).
    const isMetaLeader = view.metaLeader === pod.name;
    return {
      pod: pod.name,
      reachable: true,
      jetStreamEnabled: enabled.status === 200 && !view.disabled,
      healthy: full.status === 200,
      healthError: full.status === 200 ? undefined : healthError(full.body),
      metaLeader: view.metaLeader,
      metaClusterSize: view.metaClusterSize,
      metaReplicas: isMetaLeader ? view.metaReplicas : undefined,
      ledStreams: view.streams
        .filter((s) => s.leader === pod.name)
        .map(({ account, name, replicas: r }) => ({ account, name, replicas: r })),
      storageUsed: view.storageUsed,
      storageMax: view.storageMax,
    };
  } catch (error) {
    if (options.signal?.aborted === true) throw error;
    const message = timeout.aborted
      ? `no answer within ${String(timeoutMs)} ms`
      : errorMessage(error);
    return { pod: pod.name, reachable: false, error: message };
  }
}

/** Every pod's server health at once, by pod name. */
export async function clusterHealth(
  pods: readonly MonitoredPod[],
  options: { timeoutMs?: number; signal?: AbortSignal; fetch?: Fetch } = {},
): Promise<Map<string, ServerHealth>> {
  const answers = await Promise.all(pods.map((pod) => serverHealth(pod, options)));
  return new Map(answers.map((answer) => [answer.pod, answer]));
}
