import fc from 'fast-check';
import { backoffDelay } from '../../src/base/clock.ts';
import { createWorkQueue, type WorkQueueOptions } from '../../src/controller/work-queue.ts';
import { flush, manualClock, type ManualClock } from '../support/manual-clock.ts';

interface Deferred {
  readonly promise: Promise<void>;
  resolve(): void;
  reject(error: Error): void;
}

function deferred(): Deferred {
  let resolve!: () => void;
  let reject!: (error: Error) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** A queue whose process() calls wait until the test settles them, one deferred per call. */
function controlledQueue(options: Partial<WorkQueueOptions<string>> = {}): {
  queue: ReturnType<typeof createWorkQueue<string>>;
  calls: { key: string; done: Deferred }[];
  clock: ManualClock;
} {
  const calls: { key: string; done: Deferred }[] = [];
  const clock = manualClock();
  const queue = createWorkQueue<string>({
    process: (key) => {
      const done = deferred();
      calls.push({ key, done });
      return done.promise;
    },
    clock,
    onError: () => undefined,
    ...options,
  });
  return { queue, calls, clock };
}

describe('work queue', () => {
  it('processes a key added several times while it waits once', async () => {
    const { queue, calls } = controlledQueue();
    queue.add('busy');
    queue.add('a');
    queue.add('a');
    queue.add('a');
    expect(queue.depth()).toBe(1);
    calls[0]?.done.resolve();
    await flush();
    expect(calls.map((call) => call.key)).toEqual(['busy', 'a']);
    calls[1]?.done.resolve();
    await flush();
    expect(calls).toHaveLength(2);
    expect(queue.depth()).toBe(0);
    expect(queue.inFlight()).toBe(0);
  });

  it('never processes one key twice at once, and runs it again when added during processing', async () => {
    const { queue, calls } = controlledQueue({ concurrency: 4 });
    queue.add('a');
    queue.add('a');
    queue.add('b');
    queue.add('a');
    await flush();
    expect(calls.map((call) => call.key)).toEqual(['a', 'b']);
    expect(queue.inFlight()).toBe(2);
    expect(queue.depth()).toBe(1);

    calls[0]?.done.resolve();
    await flush();
    expect(calls.map((call) => call.key)).toEqual(['a', 'b', 'a']);
    calls[1]?.done.resolve();
    calls[2]?.done.resolve();
    await flush();
    expect(calls).toHaveLength(3);
  });

  it('keeps keys in the order they were first added', async () => {
    const { queue, calls } = controlledQueue();
    for (const key of ['x', 'c', 'b', 'c', 'a', 'b']) queue.add(key);
    for (let i = 0; i < 4; i++) {
      calls[i]?.done.resolve();
      await flush();
    }
    expect(calls.map((call) => call.key)).toEqual(['x', 'c', 'b', 'a']);
  });

  it('retries a failing key with exponential backoff capped at 60 s, and resets it on success', async () => {
    let failing = true;
    const starts: number[] = [];
    const clock = manualClock();
    const queue = createWorkQueue<string>({
      process: () => {
        starts.push(clock.now());
        return failing ? Promise.reject(new Error('apply failed')) : Promise.resolve();
      },
      clock,
      onError: () => undefined,
    });
    queue.add('nats');
    await clock.advance(10 * 60_000);
    const delays = starts.slice(1).map((at, i) => at - (starts[i] ?? 0));
    expect(delays.slice(0, 11)).toEqual([
      100, 200, 400, 800, 1_600, 3_200, 6_400, 12_800, 25_600, 51_200, 60_000,
    ]);
    expect(new Set(delays.slice(10))).toEqual(new Set([60_000]));
    expect(queue.failures('nats')).toBe(delays.length + 1);

    failing = false;
    await clock.advance(60_000);
    expect(queue.failures('nats')).toBe(0);
    expect(queue.delayed()).toBe(0);

    failing = true;
    const before = starts.length;
    queue.add('nats');
    await clock.advance(150);
    expect(starts.slice(before).map((at) => at - (starts[before] ?? 0))).toEqual([0, 100]);
    await queue.shutdown();
  });

  it('keeps the backoff of each key separate', async () => {
    const starts: Record<string, number[]> = { a: [], b: [] };
    const clock = manualClock();
    const queue = createWorkQueue<string>({
      process: (key) => {
        starts[key]?.push(clock.now());
        return key === 'a' ? Promise.reject(new Error('no')) : Promise.resolve();
      },
      clock,
      onError: () => undefined,
    });
    queue.add('a');
    await clock.advance(1_000);
    queue.add('b');
    await clock.advance(0);
    expect(starts.a).toEqual([0, 100, 300, 700]);
    expect(starts.b).toEqual([1_000]);
    expect(queue.failures('a')).toBe(4);
    expect(queue.failures('b')).toBe(0);
    await queue.shutdown();
  });

  it('reports each failure with the delay before the retry', async () => {
    const reported: [string, string, number][] = [];
    const clock = manualClock();
    const queue = createWorkQueue<string>({
      process: () => Promise.reject(new Error('forbidden')),
      clock,
      backoff: { initialMs: 1_000, maxMs: 3_000 },
      onError: (key, error, retryInMs) => {
        reported.push([key, (error as Error).message, retryInMs]);
      },
    });
    queue.add('k');
    await clock.advance(10_000);
    expect(reported.slice(0, 4)).toEqual([
      ['k', 'forbidden', 1_000],
      ['k', 'forbidden', 2_000],
      ['k', 'forbidden', 3_000],
      ['k', 'forbidden', 3_000],
    ]);
    await queue.shutdown();
  });

  it('lets the earliest of several delayed adds of one key win', async () => {
    const { queue, calls, clock } = controlledQueue();
    queue.addAfter('a', 5_000);
    queue.addAfter('a', 1_000);
    queue.addAfter('a', 3_000);
    expect(queue.delayed()).toBe(1);
    await clock.advance(999);
    expect(calls).toHaveLength(0);
    await clock.advance(1);
    expect(calls.map((call) => call.key)).toEqual(['a']);
    calls[0]?.done.resolve();
    await clock.advance(10_000);
    expect(calls).toHaveLength(1);
    expect(clock.pending()).toBe(0);
  });

  it('drains on shutdown: no new keys, queued and delayed keys dropped, work in flight finished', async () => {
    const { queue, calls, clock } = controlledQueue({ concurrency: 2 });
    queue.add('a');
    queue.add('b');
    queue.add('c');
    queue.addAfter('d', 1_000);
    queue.add('a');
    await flush();
    expect(queue.inFlight()).toBe(2);

    let drained = false;
    const shutdown = queue.shutdown().then(() => {
      drained = true;
    });
    expect(queue.shutdown()).toBe(queue.shutdown());
    expect(queue.add('e')).toBe(false);
    queue.addAfter('f', 10);
    expect(queue.depth()).toBe(0);
    expect(queue.delayed()).toBe(0);
    expect(clock.pending()).toBe(0);

    calls[0]?.done.resolve();
    await flush();
    expect(drained).toBe(false);
    // A failure during shutdown is not retried.
    calls[1]?.done.reject(new Error('late failure'));
    await shutdown;
    expect(drained).toBe(true);
    await clock.advance(60_000);
    expect(calls.map((call) => call.key)).toEqual(['a', 'b']);
  });

  it('resolves shutdown at once when nothing is in flight', async () => {
    const { queue } = controlledQueue();
    await expect(queue.shutdown()).resolves.toBeUndefined();
  });

  it('survives a process function that throws synchronously', async () => {
    const clock = manualClock();
    let runs = 0;
    const queue = createWorkQueue<string>({
      process: () => {
        runs++;
        if (runs === 1) throw new Error('sync');
        return Promise.resolve();
      },
      clock,
      onError: () => undefined,
    });
    queue.add('a');
    await clock.advance(100);
    expect(runs).toBe(2);
    expect(queue.failures('a')).toBe(0);
  });

  it('computes the backoff without overflow for keys that fail for a very long time', () => {
    expect(backoffDelay(1)).toBe(100);
    expect(backoffDelay(11)).toBe(60_000);
    expect(backoffDelay(100_000)).toBe(60_000);
  });

  it('never runs one key twice at once and never forgets an add, whatever the sequence', async () => {
    const op = fc.record({
      key: fc.constantFrom('a', 'b', 'c', 'd'),
      gapMs: fc.nat(20),
      delayed: fc.boolean(),
    });
    await fc.assert(
      fc.asyncProperty(
        fc.array(op, { minLength: 1, maxLength: 40 }),
        fc.integer({ min: 1, max: 3 }),
        fc.array(fc.nat(30), { minLength: 1, maxLength: 20 }),
        fc.array(fc.boolean(), { maxLength: 30 }),
        async (ops, concurrency, durations, failures) => {
          const clock = manualClock();
          const active = new Map<string, number>();
          const log: { event: 'add' | 'start'; key: string }[] = [];
          let violations = 0;
          let runs = 0;
          const queue = createWorkQueue<string>({
            concurrency,
            clock,
            backoff: { initialMs: 5, maxMs: 40 },
            onError: () => undefined,
            process: async (key) => {
              const run = runs++;
              log.push({ event: 'start', key });
              active.set(key, (active.get(key) ?? 0) + 1);
              const total = [...active.values()].reduce((sum, n) => sum + n, 0);
              if ((active.get(key) ?? 0) > 1 || total > concurrency) violations++;
              await new Promise<void>((resolve) => {
                clock.schedule(resolve, durations[run % durations.length] ?? 0);
              });
              active.set(key, (active.get(key) ?? 1) - 1);
              if (failures[run] === true) throw new Error('flaky');
            },
          });
          let at = 0;
          for (const { key, gapMs, delayed } of ops) {
            at += gapMs;
            clock.schedule(() => {
              log.push({ event: 'add', key });
              if (delayed) queue.addAfter(key, 3);
              else queue.add(key);
            }, at);
          }
          await clock.advance(at + 10_000);

          expect(violations).toBe(0);
          log.forEach((entry, index) => {
            if (entry.event !== 'add') return;
            const later = log.slice(index + 1);
            expect(later.some((next) => next.event === 'start' && next.key === entry.key)).toBe(
              true,
            );
          });
          expect([queue.depth(), queue.inFlight(), queue.delayed()]).toEqual([0, 0, 0]);
          await queue.shutdown();
        },
      ),
      { numRuns: 200 },
    );
  });
});
