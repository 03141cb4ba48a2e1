// The queue between watch events and the reconciler, with the guarantees client-go's workqueue
// gives controllers: a key waits at most once however often it is added, one key is never
// processed twice at the same time (an add during processing runs it again afterwards), failures
// retry with capped exponential backoff per key, and shutdown lets the work in flight finish.
import {
  DEFAULT_BACKOFF,
  backoffDelay,
  systemClock,
  type Backoff,
  type Clock,
} from '../base/clock.ts';
import { jsonLogger } from '../base/log.ts';

export type QueueKey = string | number;

export interface WorkQueueOptions<K extends QueueKey> {
  readonly process: (key: K) => Promise<void>;
  /** Keys processed at the same time (always different keys). Default 1. */
  readonly concurrency?: number;
  readonly backoff?: Backoff;
  readonly clock?: Clock;
  /** Told of every failure and when the key runs again. Default: one JSON log line. */
  readonly onError?: (key: K, error: unknown, retryInMs: number) => void;
}

export interface WorkQueue<K extends QueueKey> {
  /** Queues key unless it is already waiting. Ignored (false) once shutdown began. */
  add(key: K): boolean;
  /** Adds key after delayMs; of several pending delays for one key the earliest wins. */
  addAfter(key: K, delayMs: number): void;
  /** Stops accepting keys, drops those waiting, resolves once the keys in flight are done. */
  shutdown(): Promise<void>;
  /** Keys waiting to be processed, including one added again while in flight; not delayed ones. */
  depth(): number;
  inFlight(): number;
  /** Keys waiting for a delay to pass (retries and addAfter). */
  delayed(): number;
  /** Failures of key since its last success. */
  failures(key: K): number;
  /** Resolves once no key is being processed (now, or when those in flight end). */
  idle(): Promise<void>;
}

export function createWorkQueue<K extends QueueKey>(options: WorkQueueOptions<K>): WorkQueue<K> {
  const concurrency = options.concurrency ?? 1;
  if (!Number.isInteger(concurrency) || concurrency < 1) {
    throw new Error(`concurrency must be a positive integer, got ${String(concurrency)}`);
  }
  const backoff = options.backoff ?? DEFAULT_BACKOFF;
  const clock = options.clock ?? systemClock;
  const log = jsonLogger({ component: 'work-queue' });
  const onError =
    options.onError ??
    ((key: K, error: unknown, retryInMs: number): void => {
      log.error('processing failed', { key, error, retryInMs });
    });

  // A key is in at most one of `ready` and `processing`, but may be in `waiting` too: added
  // again while processing, it waits there and is moved to `ready` when processing ends.
  const ready: K[] = [];
  const waiting = new Set<K>();
  const processing = new Set<K>();
  const timers = new Map<K, { readyAt: number; cancel: () => void }>();
  const failureCounts = new Map<K, number>();
  let accepting = true;
  let drained: Promise<void> | undefined;
  let resolveDrained: (() => void) | undefined;
  let idleWaiters: (() => void)[] = [];

  const pump = (): void => {
    while (accepting && processing.size < concurrency) {
      const key = ready.shift();
      if (key === undefined) return;
      waiting.delete(key);
      processing.add(key);
      void run(key);
    }
  };

  const run = async (key: K): Promise<void> => {
    let retryInMs: number | undefined;
    try {
      await options.process(key);
      failureCounts.delete(key);
    } catch (error) {
      const failures = (failureCounts.get(key) ?? 0) + 1;
      failureCounts.set(key, failures);
      retryInMs = backoffDelay(failures, backoff);
      try {
        onError(key, error, retryInMs);
      } catch {
        // A failing error hook must not stop the queue.
      }
    }
    processing.delete(key);
    if (processing.size === 0) {
      const waiters = idleWaiters;
      idleWaiters = [];
      for (const resolve of waiters) resolve();
    }
    if (accepting) {
      if (retryInMs !== undefined) addAfter(key, retryInMs);
      if (waiting.has(key)) ready.push(key);
      pump();
    } else if (processing.size === 0) {
      resolveDrained?.();
    }
  };

  const add = (key: K): boolean => {
    if (!accepting) return false;
    if (waiting.has(key)) return true;
    waiting.add(key);
    if (!processing.has(key)) {
      ready.push(key);
      pump();
    }
    return true;
  };

  const addAfter = (key: K, delayMs: number): void => {
    if (!accepting) return;
    if (delayMs <= 0) {
      add(key);
      return;
    }
    const readyAt = clock.now() + delayMs;
    const pending = timers.get(key);
    if (pending !== undefined) {
      if (pending.readyAt <= readyAt) return;
      pending.cancel();
    }
    const cancel = clock.schedule(() => {
      timers.delete(key);
      add(key);
    }, delayMs);
    timers.set(key, { readyAt, cancel });
  };

  const shutdown = (): Promise<void> => {
    if (drained !== undefined) return drained;
    accepting = false;
    for (const timer of timers.values()) timer.cancel();
    timers.clear();
    ready.length = 0;
    waiting.clear();
    failureCounts.clear();
    drained =
      processing.size === 0
        ? Promise.resolve()
        : new Promise<void>((resolve) => {
            resolveDrained = resolve;
          });
    return drained;
  };

  return {
    add,
    addAfter,
    shutdown,
    depth: () => waiting.size,
    inFlight: () => processing.size,
    delayed: () => timers.size,
    failures: (key) => failureCounts.get(key) ?? 0,
    idle: () =>
      processing.size === 0
        ? Promise.resolve()
        : new Promise<void>((resolve) => {
            idleWaiters.push(resolve);
          }),
  };
}
