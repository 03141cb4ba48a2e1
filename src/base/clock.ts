// Time as the rest of the code sees it: a clock that tests can drive by hand, and the capped
// exponential backoff every retry loop uses.
export interface Clock {
  now(): number;
  /** Runs callback after ms; the returned function cancels it. */
  schedule(callback: () => void, ms: number): () => void;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  schedule: (callback, ms) => {
    const timer = setTimeout(callback, ms);
    // A pending retry alone must not keep the process alive.
    timer.unref();
    return () => {
      clearTimeout(timer);
    };
  },
};

export interface Backoff {
  readonly initialMs: number;
  readonly maxMs: number;
}

export const DEFAULT_BACKOFF: Backoff = { initialMs: 100, maxMs: 60_000 };

/** The wait before retry number `failures` (1 for the first failure). */
export function backoffDelay(failures: number, backoff: Backoff = DEFAULT_BACKOFF): number {
  // The exponent is capped so that 2 ** n stays finite for keys that fail for days.
  return Math.min(backoff.maxMs, backoff.initialMs * 2 ** Math.min(failures - 1, 40));
}

/** Between half and all of the delay, so clients that failed together retry apart. */
export function jittered(ms: number): number {
  return Math.round(ms * (0.5 + Math.random() * 0.5));
}
