// List-then-watch of one collection, kept in a local store: what triggers reconciles and what
// the manager reads instead of asking the API server.
//
// Built for what a watch meets when it runs for weeks:
// - 410 Gone (the API server no longer has our resourceVersion, e.g. after it restarted): list
//   again and diff against the store, so what changed meanwhile still reaches the handlers as
//   add, update or delete.
// - A connection that goes silent without an error (a load balancer or NAT forgot it): each
//   watch asks the server to end it well within `stallTimeoutMs` (timeoutSeconds), so a healthy
//   stream is never silent that long, and a silent one is dropped and reopened from the last
//   resourceVersion. Bookmarks cannot be the heartbeat: kube-apiserver sends none while the
//   resource is quiet. They do keep the resourceVersion fresh, so reopening rarely needs a list.
// - The API server going away: reconnect with capped, jittered backoff, forever.
//
// Plain HTTPS streaming instead of the client's Watch class: Watch drops a line it cannot parse
// without telling anyone (a lost event), and it loses the Status body of a failed request, which
// says whether the answer was 410. Requests still use the KubeConfig's TLS and credentials.
import { backoffDelay, jittered, type Backoff } from '../base/clock.ts';
import { toError } from '../base/json.ts';
import { jsonLogger, type Logger } from '../base/log.ts';
import type { KubeObject } from '../base/object.ts';
import type { KubeClient, ObjectList, WatchResponse } from '../kube/client.ts';
import { KubeApiError, RequestTimeoutError } from '../kube/transport.ts';

export interface InformerOptions {
  /** Collection path: `/api/v1/namespaces/x/configmaps`, or cluster-wide `/api/v1/configmaps`. */
  readonly path: string;
  /** Only objects the server selects by this ever reach the store. */
  readonly labelSelector?: string;
  /** Likewise, by field (`metadata.name=x`: one object, watched by name). */
  readonly fieldSelector?: string;
  /** Longest silence accepted on an open request before it counts as stalled. Default 90 s. */
  readonly stallTimeoutMs?: number;
  /** After a relist, emit update for every object, not only for those that changed. */
  readonly resyncOnRelist?: boolean;
  /** Between failed attempts. Default 200 ms doubling to 5 s, jittered down by up to half. */
  readonly backoff?: Backoff;
  /**
   * Keep metadata.managedFields, dropped by default to save memory. A cache the reconciler
   * compares desired state against needs them: they tell which fields our applies own.
   */
  readonly keepManagedFields?: boolean;
  /** Objects per list request. Default 500. */
  readonly pageSize?: number;
  readonly log?: Logger;
}

/**
 * Why a watch was reopened other than at its normal end: `expired` (410 Gone, relisted),
 * `stalled` (silent past the deadline), `failed` (connection or request error, ERROR event, a
 * malformed line).
 */
export type RestartReason = 'expired' | 'stalled' | 'failed';

/** Handlers run synchronously, in event order; objects are shared with the store: read only. */
export interface InformerHandlers<T> {
  add?(object: T): void;
  update?(object: T, previous: T): void;
  /** With the last state seen (from the event, or from the store when found missing on relist). */
  delete?(object: T): void;
  /** For metrics and logs. */
  onRestart?(reason: RestartReason, error: Error): void;
}

export interface Informer<T> {
  /** Starts listing and watching; resolves once the first list is in the store. */
  start(): Promise<void>;
  /** Closes the watch; no handler runs afterwards. */
  stop(): void;
  hasSynced(): boolean;
  get(namespace: string | undefined, name: string): T | undefined;
  list(): T[];
  restarts(): Readonly<Record<RestartReason, number>>;
}

const DEFAULT_STALL_TIMEOUT_MS = 90_000;
// Capped low: a handful of watches retrying every few seconds costs an API server nothing, and
// after an outage the caches (and the reverts they drive) are back within seconds.
const WATCH_BACKOFF: Backoff = { initialMs: 200, maxMs: 5_000 };
const DEFAULT_PAGE_SIZE = 500;
// A watch that stayed open this long was healthy even if nothing happened: reconnect at once.
const HEALTHY_STREAM_MS = 1_000;

interface Deadline {
  touch(): void;
  clear(): void;
}

function deadline(ms: number, onExpiry: () => void): Deadline {
  const timer = setTimeout(onExpiry, ms);
  let cleared = false;
  return {
    touch: () => {
      if (!cleared) timer.refresh();
    },
    clear: () => {
      cleared = true;
      clearTimeout(timer);
    },
  };
}

class StalledError extends Error {
  constructor(ms: number) {
    super(`no data for ${String(ms)} ms: connection stalled`);
    this.name = 'StalledError';
  }
}

function parseJson(text: string): unknown {
  try {
    return text === '' ? undefined : JSON.parse(text);
  } catch {
    return text;
  }
}

function isGone(error: unknown): boolean {
  return error instanceof KubeApiError && error.status === 410;
}

interface WatchEvent {
  type?: unknown;
  object?: unknown;
}

/** How one list or one watch ended. */
type Outcome =
  | { kind: 'listed' }
  | { kind: 'closed'; healthy: boolean }
  | { kind: RestartReason; delivered: boolean; error: Error };

/** Why a watch must end, decided by one of its lines. */
interface WatchEnd {
  readonly kind: RestartReason;
  readonly error: Error;
}

function objectKey(namespace: string | undefined, name: string): string {
  return namespace === undefined || namespace === '' ? name : `${namespace}/${name}`;
}

function resourceVersionOf(object: KubeObject): string | undefined {
  const rv = object.metadata.resourceVersion;
  return typeof rv === 'string' ? rv : undefined;
}

function isKubeObject(value: unknown): value is KubeObject {
  if (typeof value !== 'object' || value === null) return false;
  const metadata = (value as { metadata?: unknown }).metadata;
  return (
    typeof metadata === 'object' &&
    metadata !== null &&
    typeof (metadata as { name?: unknown }).name === 'string'
  );
}

export function createInformer<T extends KubeObject>(
  client: KubeClient,
  options: InformerOptions,
  handlers: InformerHandlers<T>,
): Informer<T> {
  const stallTimeoutMs = options.stallTimeoutMs ?? DEFAULT_STALL_TIMEOUT_MS;
  if (stallTimeoutMs < 2_000) throw new Error('stallTimeoutMs must be at least 2000');
  const backoff = options.backoff ?? WATCH_BACKOFF;
  const pageSize = options.pageSize ?? DEFAULT_PAGE_SIZE;
  const log = options.log ?? jsonLogger({ component: 'informer', path: options.path });
  const restartCounts: Record<RestartReason, number> = { expired: 0, stalled: 0, failed: 0 };

  let store = new Map<string, T>();
  let resourceVersion: string | undefined;
  let synced = false;
  let stopped = false;
  // Read through a call: stop() flips it while the loop awaits, which narrowing cannot see.
  const isStopped = (): boolean => stopped;
  let started: Promise<void> | undefined;
  let settleStart: { resolve: () => void; reject: (error: Error) => void } | undefined;
  // Aborted by stop(): ends the list or watch in flight.
  const lifetime = new AbortController();
  let wake: (() => void) | undefined;

  const emit = (event: string, call: () => void): void => {
    if (stopped) return;
    try {
      call();
    } catch (error) {
      log.error('informer handler failed', { event, error: toError(error) });
    }
  };

  // Parsed fresh from JSON, so ours to trim: managedFields are often the largest part of an
  // object and nothing but the API server reads them.
  const prepare = (object: KubeObject, list?: ObjectList): T => {
    if (options.keepManagedFields !== true) delete object.metadata.managedFields;
    if (list !== undefined) {
      // Items of a list of built-in kinds come without apiVersion and kind.
      object.apiVersion = object.apiVersion || (list.apiVersion ?? '');
      object.kind = object.kind || (list.kind ?? '').replace(/List$/, '');
    }
    return object as T;
  };

  const listAll = async (): Promise<{ items: T[]; resourceVersion: string }> => {
    const items: T[] = [];
    let continueToken: string | undefined;
    let listVersion = '';
    do {
      const page: ObjectList = await client.list(options.path, {
        labelSelector: options.labelSelector,
        fieldSelector: options.fieldSelector,
        limit: pageSize,
        continue: continueToken,
        timeoutMs: stallTimeoutMs,
        signal: lifetime.signal,
      });
      for (const item of page.items ?? []) items.push(prepare(item, page));
      const next = page.metadata?.continue;
      continueToken = next === undefined || next === '' ? undefined : next;
      listVersion = page.metadata?.resourceVersion ?? '';
    } while (continueToken !== undefined && !stopped);
    return { items, resourceVersion: listVersion };
  };

  /** Replaces the store with a fresh list and tells the handlers what differs. */
  const relist = async (): Promise<void> => {
    const listed = await listAll();
    if (stopped) return;
    const previous = store;
    store = new Map(listed.items.map((item) => [key(item), item]));
    resourceVersion = listed.resourceVersion;
    for (const [itemKey, item] of store) {
      const old = previous.get(itemKey);
      if (old === undefined) emit('add', () => handlers.add?.(item));
      else if (
        options.resyncOnRelist === true ||
        resourceVersionOf(old) !== resourceVersionOf(item)
      )
        emit('update', () => handlers.update?.(item, old));
    }
    for (const [itemKey, old] of previous) {
      if (!store.has(itemKey)) emit('delete', () => handlers.delete?.(old));
    }
  };

  const key = (object: KubeObject): string =>
    objectKey(object.metadata.namespace, object.metadata.name ?? '');

  /** Stores an ADDED, MODIFIED or DELETED object and tells the handlers. */
  const store1 = (type: unknown, item: T): WatchEnd | undefined => {
    const itemKey = key(item);
    const old = store.get(itemKey);
    if (type === 'ADDED' || type === 'MODIFIED') {
      store.set(itemKey, item);
      if (old === undefined) emit('add', () => handlers.add?.(item));
      else emit('update', () => handlers.update?.(item, old));
    } else if (type === 'DELETED') {
      store.delete(itemKey);
      if (old !== undefined) emit('delete', () => handlers.delete?.(item));
    } else {
      return failed(`unknown watch event type ${String(type)}`);
    }
    return undefined;
  };

  /** Applies one line of a watch; says why the watch must end if it must. */
  const apply = (line: string): WatchEnd | undefined => {
    let event: WatchEvent;
    try {
      event = JSON.parse(line) as WatchEvent;
    } catch {
      return failed(`malformed watch event: ${line.slice(0, 200)}`);
    }
    const { type, object } = event;
    if (type === 'ERROR') {
      const status = object as { code?: unknown } | undefined;
      const code = typeof status?.code === 'number' ? status.code : 0;
      const error = new KubeApiError('WATCH', options.path, code, object);
      return { kind: code === 410 ? 'expired' : 'failed', error };
    }
    if (type === 'BOOKMARK') {
      // An object with nothing but metadata.resourceVersion: no name.
      const version = (object as { metadata?: { resourceVersion?: unknown } } | undefined)?.metadata
        ?.resourceVersion;
      if (typeof version === 'string') resourceVersion = version;
      return undefined;
    }
    if (!isKubeObject(object))
      return failed(`watch event without an object: ${line.slice(0, 200)}`);
    const version = resourceVersionOf(object);
    const end = store1(type, prepare(object));
    if (end !== undefined) return end;
    resourceVersion = version ?? resourceVersion;
    return undefined;
  };

  const failed = (message: string): WatchEnd => ({ kind: 'failed', error: new Error(message) });

  const watchOnce = async (fromVersion: string): Promise<Outcome> => {
    // Half to three quarters of the stall deadline (45-67 s by default): the server's end of a
    // healthy watch always comes first. Jittered so that watches opened together reopen apart.
    const timeoutSeconds = Math.max(
      1,
      Math.floor((stallTimeoutMs / 1000) * (0.5 + Math.random() * 0.25)),
    );
    // Ends this watch only; stop() ends it through the lifetime signal.
    const exchange = new AbortController();
    const onStop = (): void => {
      exchange.abort(new Error('informer stopped'));
    };
    lifetime.signal.addEventListener('abort', onStop, { once: true });
    let response: Promise<WatchResponse>;
    try {
      response = client.watch(options.path, {
        resourceVersion: fromVersion,
        timeoutSeconds,
        labelSelector: options.labelSelector,
        fieldSelector: options.fieldSelector,
        signal: exchange.signal,
        timeoutMs: stallTimeoutMs,
      });
    } catch (error) {
      lifetime.signal.removeEventListener('abort', onStop);
      return { kind: 'failed', delivered: false, error: toError(error) };
    }
    const opened = Date.now();
    return new Promise<Outcome>((resolve) => {
      let delivered = false;
      let settled = false;
      const finish = (outcome: Outcome): void => {
        if (settled) return;
        settled = true;
        timer.clear();
        lifetime.signal.removeEventListener('abort', onStop);
        exchange.abort(new Error('watch finished'));
        resolve(outcome);
      };
      const timer = deadline(stallTimeoutMs, () => {
        finish({ kind: 'stalled', delivered, error: new StalledError(stallTimeoutMs) });
      });
      response.then(
        (res) => {
          if (res.statusCode !== 200) {
            readStatus(res, options.path).then((error) => {
              finish({ kind: error.status === 410 ? 'expired' : 'failed', delivered, error });
            }, onError);
            return;
          }
          res.setEncoding('utf8');
          let buffered = '';
          res.on('data', (chunk: string) => {
            timer.touch();
            buffered += chunk;
            for (let eol = buffered.indexOf('\n'); eol >= 0; eol = buffered.indexOf('\n')) {
              const line = buffered.slice(0, eol).trim();
              buffered = buffered.slice(eol + 1);
              if (line === '' || settled) continue;
              const end = apply(line);
              if (end !== undefined) {
                finish({ ...end, delivered });
                return;
              }
              delivered = true;
            }
          });
          res.on('end', () => {
            finish({
              kind: 'closed',
              healthy: delivered || Date.now() - opened >= HEALTHY_STREAM_MS,
            });
          });
          res.on('error', onError);
          res.on('close', () => {
            onError(new Error('watch connection closed before the response ended'));
          });
        },
        (error: unknown) => {
          onError(error);
        },
      );
      function onError(error: unknown): void {
        const kind = error instanceof RequestTimeoutError ? 'stalled' : 'failed';
        finish({ kind, delivered, error: toError(error) });
      }
    });
  };

  const pause = (ms: number): Promise<void> =>
    new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });

  const restarted = (reason: RestartReason, error: Error, retryInMs: number): void => {
    restartCounts[reason]++;
    log.info('watch restarting', { reason, error, retryInMs, resourceVersion });
    if (!stopped) {
      try {
        handlers.onRestart?.(reason, error);
      } catch (hookError) {
        log.error('informer restart hook failed', { error: toError(hookError) });
      }
    }
  };

  const listOnce = async (): Promise<Outcome> => {
    try {
      await relist();
    } catch (error) {
      // A continue token that expired mid-list is 410 too; the next list starts over.
      const kind = isGone(error)
        ? 'expired'
        : error instanceof RequestTimeoutError || error instanceof StalledError
          ? 'stalled'
          : 'failed';
      return { kind, delivered: false, error: toError(error) };
    }
    if (!synced && !isStopped()) {
      synced = true;
      settleStart?.resolve();
    }
    return { kind: 'listed' };
  };

  const run = async (): Promise<void> => {
    // Failures in a row, counted apart: connection failures end with a successful list, so the
    // relist after a server restart is not held back by the refused connections before it;
    // 410s end only when a watch gets somewhere, so a list, watch, 410 loop still slows down.
    const inARow = { failed: 0, expired: 0 };
    while (!isStopped()) {
      const outcome =
        resourceVersion === undefined ? await listOnce() : await watchOnce(resourceVersion);
      if (isStopped()) return;
      if (outcome.kind === 'listed') {
        inARow.failed = 0;
        continue;
      }
      const progressed = outcome.kind === 'closed' ? outcome.healthy : outcome.delivered;
      if (progressed) {
        inARow.failed = 0;
        inARow.expired = 0;
      }
      if (outcome.kind === 'closed' && outcome.healthy) continue;
      const count = outcome.kind === 'expired' ? ++inARow.expired : ++inARow.failed;
      const retryInMs = jittered(backoffDelay(count, backoff));
      if (outcome.kind !== 'closed') {
        if (outcome.kind === 'expired') resourceVersion = undefined;
        restarted(outcome.kind, outcome.error, retryInMs);
      }
      await pause(retryInMs);
    }
  };

  return {
    start: () => {
      if (started !== undefined) return started;
      if (stopped) return Promise.reject(new Error('informer already stopped'));
      started = new Promise<void>((resolve, reject) => {
        settleStart = { resolve, reject };
      });
      run().catch((error: unknown) => {
        log.error('informer loop ended unexpectedly', { error: toError(error) });
      });
      return started;
    },
    stop: () => {
      if (stopped) return;
      stopped = true;
      lifetime.abort(new Error('informer stopped'));
      wake?.();
      if (!synced) settleStart?.reject(new Error('informer stopped before its first list'));
    },
    hasSynced: () => synced,
    get: (namespace, name) => store.get(objectKey(namespace, name)),
    list: () => [...store.values()],
    restarts: () => ({ ...restartCounts }),
  };
}

async function readStatus(res: WatchResponse, path: string): Promise<KubeApiError> {
  const chunks: Buffer[] = [];
  for await (const chunk of res) chunks.push(chunk as Buffer);
  const body = parseJson(Buffer.concat(chunks).toString('utf8'));
  return new KubeApiError('WATCH', path, res.statusCode ?? 0, body);
}
