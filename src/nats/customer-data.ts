// The check the deletion flow makes before a NATS cluster may go: deleting it deletes its volume
// claims, so it must not go while JetStream holds data of customers. As upstream, any stream other
// than `sap` blocks deletion, and so does a consumer of `sap`; a NATS nobody can reach does not.
//
// Unlike upstream (which deletes on any error, and whose stream lister drops API errors), an
// answer that is not clear is an `error`, and the caller retries: a NATS that answers but whose
// JetStream does not (disabled, electing a leader, timing out, refusing us) may still hold data.
import { inspect } from 'node:util';
import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { errors, type NatsConnection } from '@nats-io/transport-node';
import { closeQuietly, connectWithin, deadlineIn, type Outcome, within } from './connection.ts';

export const SAP_STREAM = 'sap';
export const CUSTOMER_STREAM_EXISTS_MESSAGE =
  'Cannot delete NATS cluster as customer stream exists';
export const STREAM_CONSUMER_EXISTS_MESSAGE =
  'Cannot delete NATS cluster as stream consumer exists';
/** The whole check's budget: connecting and every JetStream request. */
export const DEFAULT_TIMEOUT_MS = 5_000;

export interface CustomerDataBlocked {
  kind: 'blocked';
  reason: 'stream' | 'consumer';
  message: string;
  /** The customer streams, or `sap` when its consumers block. */
  streams: string[];
}

export type CustomerDataVerdict = { kind: 'none' } | CustomerDataBlocked;

export type CustomerDataCheck =
  | CustomerDataVerdict
  /** Nothing answered at the address: deletion proceeds, as upstream. */
  | { kind: 'unreachable'; error: string }
  /** Something answered, but not whether customer data exists: retry, do not delete. */
  | { kind: 'error'; error: string };

export interface StreamSummary {
  readonly name: string;
  readonly consumers: number;
}

/** The verdict on the streams of the account; pure. */
export function decideCustomerData(streams: readonly StreamSummary[]): CustomerDataVerdict {
  const customer = streams
    .map((stream) => stream.name)
    .filter((name) => name !== SAP_STREAM)
    .toSorted();
  if (customer.length > 0) {
    return {
      kind: 'blocked',
      reason: 'stream',
      message: CUSTOMER_STREAM_EXISTS_MESSAGE,
      streams: [...new Set(customer)],
    };
  }
  if (streams.some((stream) => stream.name === SAP_STREAM && stream.consumers > 0)) {
    return {
      kind: 'blocked',
      reason: 'consumer',
      message: STREAM_CONSUMER_EXISTS_MESSAGE,
      streams: [SAP_STREAM],
    };
  }
  return { kind: 'none' };
}

/**
 * Stream names the listing with state left out. In a cluster, STREAM.LIST asks every stream's
 * leader and omits those that do not answer in time, while STREAM.NAMES comes from the meta
 * leader's assignments and is complete; trusting the listing alone could miss a customer stream.
 */
export function unlistedStreams(
  names: readonly string[],
  listed: readonly StreamSummary[],
): string[] {
  const seen = new Set(listed.map((stream) => stream.name));
  return [...new Set(names.filter((name) => !seen.has(name)))].toSorted();
}

// Node's codes for "nothing at that address". EAI_AGAIN (the resolver did not answer) is not
// among them: it says nothing about NATS, so it is an error to retry.
const UNREACHABLE_CODES = new Set([
  'ENOTFOUND',
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EHOSTDOWN',
  'ENETDOWN',
  'ETIMEDOUT',
  'EPIPE',
]);

function errorCode(err: unknown): unknown {
  return typeof err === 'object' && err !== null && 'code' in err ? err.code : undefined;
}

/** Text of an error and its causes, for a status message or a log line. */
export function describeError(err: unknown): string {
  const parts: string[] = [];
  let current: unknown = err;
  for (let depth = 0; current !== undefined && current !== null && depth < 5; depth++) {
    const text =
      current instanceof Error
        ? current.message
        : typeof current === 'string'
          ? current
          : inspect(current);
    if (text !== '' && !parts.includes(text)) parts.push(text);
    current = current instanceof Error ? current.cause : undefined;
  }
  return parts.length > 0 ? parts.join(': ') : 'unknown error';
}

/**
 * What a failed connect means. Unreachable only when nothing that speaks NATS answered: refused,
 * reset or closed before the handshake (the client's ConnectionError), no route, no such host, or
 * no handshake in time. A server that answered and refused us (authorization, TLS, a protocol we
 * do not understand) or a bad URL is an error: there may be data behind it.
 */
export function classifyConnectError(err: unknown): CustomerDataCheck {
  const error = describeError(err);
  const code = errorCode(err);
  const unreachable =
    err instanceof errors.ConnectionError ||
    err instanceof errors.TimeoutError ||
    (typeof code === 'string' && UNREACHABLE_CODES.has(code));
  return unreachable ? { kind: 'unreachable', error } : { kind: 'error', error };
}

async function collect<T>(items: AsyncIterable<T>): Promise<T[]> {
  const all: T[] = [];
  for await (const item of items) all.push(item);
  return all;
}

async function askJetStream(jsm: JetStreamManager): Promise<CustomerDataCheck> {
  // Names first: a stream created in between then shows up in the listing only, which is safe.
  const names = await collect(jsm.streams.names());
  const listed = (await collect(jsm.streams.list())).map((info): StreamSummary => ({
    name: info.config.name,
    consumers: info.state.consumer_count,
  }));
  const verdict = decideCustomerData(listed);
  if (verdict.kind === 'blocked') return verdict;
  // A missing customer stream blocks as well; only its absence needs the complete picture.
  const missing = unlistedStreams(names, listed);
  if (missing.some((name) => name !== SAP_STREAM)) {
    return decideCustomerData(missing.map((name) => ({ name, consumers: 0 })));
  }
  if (missing.length > 0) {
    return { kind: 'error', error: `JetStream gave no state for stream ${SAP_STREAM}` };
  }
  return verdict;
}

/**
 * Whether the NATS at `url` holds customer data, asked as the manager asks it: no credentials,
 * no reconnects. Settles within `timeoutMs` (default 5 s) plus at most CLOSE_GRACE_MS, and
 * closes the connection it opened whatever the outcome.
 * @throws RangeError when `timeoutMs` is not a positive finite number.
 */
export async function checkCustomerData(
  url: string,
  options: { timeoutMs?: number } = {},
): Promise<CustomerDataCheck> {
  const budget = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const { remaining } = deadlineIn(budget);
  let connected: Outcome<NatsConnection>;
  try {
    connected = await connectWithin({ url, timeoutMs: budget });
  } catch (err) {
    return classifyConnectError(err);
  }
  if (!connected.done) {
    return { kind: 'unreachable', error: `no NATS handshake within ${String(budget)} ms` };
  }

  const nc = connected.value;
  try {
    // Each JetStream request may take what is left; the outer deadline bounds them together.
    const work = jetstreamManager(nc, { timeout: remaining(), checkAPI: false }).then(askJetStream);
    const answered = await within(work, remaining());
    if (!answered.done) {
      return { kind: 'error', error: `JetStream did not answer within ${String(budget)} ms` };
    }
    return answered.value;
  } catch (err) {
    return { kind: 'error', error: `JetStream: ${describeError(err)}` };
  } finally {
    await closeQuietly(nc);
  }
}
