// Short-lived NATS connections the manager opens to ask a cluster something: one budget for the
// connect and every request, no reconnects, and always closed, whatever the outcome.
import { connect, type NatsConnection } from '@nats-io/transport-node';

/** Closing after the budget ran out may take at most this long on top of it. */
export const CLOSE_GRACE_MS = 500;

export type Outcome<T> = { done: true; value: T } | { done: false };

/** `work`'s result, or `{ done: false }` once `ms` have passed; rejects as `work` does. */
export async function within<T>(work: Promise<T>, ms: number): Promise<Outcome<T>> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<Outcome<T>>((resolve) => {
    timer = setTimeout(() => {
      resolve({ done: false });
    }, ms);
  });
  try {
    return await Promise.race([work.then((value): Outcome<T> => ({ done: true, value })), expired]);
  } finally {
    clearTimeout(timer);
  }
}

export async function closeQuietly(nc: NatsConnection): Promise<void> {
  await within(
    nc.close().catch(() => undefined),
    CLOSE_GRACE_MS,
  );
}

/** A deadline `budgetMs` from now, and what is left of it (at least 1 ms). */
export function deadlineIn(budgetMs: number): { remaining: () => number } {
  if (!Number.isFinite(budgetMs) || budgetMs <= 0) {
    throw new RangeError(`timeoutMs must be a positive number, not ${String(budgetMs)}`);
  }
  const deadline = performance.now() + budgetMs;
  return { remaining: () => Math.max(1, Math.ceil(deadline - performance.now())) };
}

export interface ConnectOptions {
  readonly url: string;
  readonly timeoutMs: number;
  readonly user?: string;
  readonly pass?: string;
}

/**
 * Connects within `timeoutMs`, or resolves `{ done: false }`; rejects as the client does (refused,
 * unauthorized, a malformed URL). A connection that completes after the budget is closed.
 */
export async function connectWithin(options: ConnectOptions): Promise<Outcome<NatsConnection>> {
  // The client's own connect timeout does not cover the DNS lookup, hence the outer one.
  // Through then(), so that a synchronous throw (a malformed URL) is a rejection too. Known gap:
  // when the handshake times out after TCP connected, @nats-io/transport-node 3.4.0 leaves that
  // socket open (its close ignores a transport that never connected) and hands us nothing to
  // close; it lasts until the peer closes it.
  const connecting = Promise.resolve().then(() =>
    connect({
      servers: options.url,
      name: 'nats-manager',
      reconnect: false,
      timeout: options.timeoutMs,
      ...(options.user === undefined ? {} : { user: options.user, pass: options.pass }),
    }),
  );
  const connected = await within(connecting, options.timeoutMs);
  if (!connected.done) void connecting.then(closeQuietly, () => undefined);
  return connected;
}
