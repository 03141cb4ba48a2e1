// Leader election on a coordination.k8s.io/v1 Lease, with the semantics of client-go's
// leaderelection package: the holder renews the Lease every retry period; a candidate takes it
// when it was released (empty holderIdentity) or when the holder let it expire (renewTime +
// leaseDurationSeconds has passed); every write carries the resourceVersion it was decided on,
// so of two candidates racing for one Lease exactly one wins (the other gets 409 and re-reads).
// A leader that cannot renew within the renew deadline stops leading before its Lease can expire
// for anyone else: leaseDuration - renewDeadline is the margin for request latency and clock skew.
//
// Unlike client-go, which times expiry from when the candidate itself last saw the Lease change,
// expiry is read from renewTime: replicas are assumed to have clocks within that margin (NTP).
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { systemClock, type Clock } from '../base/clock.ts';
import { jsonLogger, type Logger } from '../base/log.ts';
import type { KubeClient } from '../kube/client.ts';
import { isApiStatus } from '../kube/transport.ts';

export interface LeaseSpec {
  holderIdentity?: string;
  leaseDurationSeconds?: number;
  /** MicroTime: `2026-11-26T12:00:00.000000Z`. */
  acquireTime?: string;
  renewTime?: string;
  leaseTransitions?: number;
  /** Fields this code does not use (strategy, preferredHolder) are kept as they are. */
  [key: string]: unknown;
}

export interface Lease {
  apiVersion: 'coordination.k8s.io/v1';
  kind: 'Lease';
  metadata: { name: string; namespace: string; resourceVersion?: string; [key: string]: unknown };
  spec?: LeaseSpec;
  [key: string]: unknown;
}

export interface LeaseTiming {
  /** How long the Lease we write is valid without a renewal (whole seconds on the wire). */
  readonly leaseDurationMs: number;
}

export type LeaseDecision =
  /** Write `spec`: create the Lease, renew our own, or take over a released or expired one. */
  | { readonly action: 'create' | 'renew' | 'acquire'; readonly spec: LeaseSpec }
  /** Another holder's Lease is valid until `expiresAt` (ms since the epoch). */
  | { readonly action: 'wait'; readonly holder: string; readonly expiresAt: number };

/** A Lease's MicroTime: RFC 3339 with six fractional digits, as kube-apiserver writes it. */
export function formatMicroTime(ms: number): string {
  return new Date(ms).toISOString().replace(/Z$/, '000Z');
}

/** ms since the epoch, NaN when absent or unreadable. */
export function parseMicroTime(value: string | undefined): number {
  return value === undefined ? Number.NaN : Date.parse(value);
}

/** Rounded up: a Lease that says less than we meant could be taken while we still lead. */
export function leaseDurationSeconds(leaseDurationMs: number): number {
  return Math.max(1, Math.ceil(leaseDurationMs / 1000));
}

/**
 * When another holder's Lease expires. A Lease with no readable renewTime (nor acquireTime)
 * proves nobody alive holds it: already expired.
 */
function expiryOf(spec: LeaseSpec, timing: LeaseTiming): number {
  const renewedAt = parseMicroTime(spec.renewTime ?? spec.acquireTime);
  if (Number.isNaN(renewedAt)) return Number.NEGATIVE_INFINITY;
  const seconds = spec.leaseDurationSeconds ?? leaseDurationSeconds(timing.leaseDurationMs);
  return renewedAt + seconds * 1000;
}

/** What a replica named `identity` does with `lease` (undefined: there is none) at `now`. */
export function decideLease(
  lease: Lease | undefined,
  identity: string,
  now: number,
  timing: LeaseTiming,
): LeaseDecision {
  const stamp = formatMicroTime(now);
  const duration = leaseDurationSeconds(timing.leaseDurationMs);
  if (lease === undefined) {
    return {
      action: 'create',
      spec: {
        holderIdentity: identity,
        leaseDurationSeconds: duration,
        acquireTime: stamp,
        renewTime: stamp,
        leaseTransitions: 0,
      },
    };
  }
  const spec = lease.spec ?? {};
  const holder = spec.holderIdentity ?? '';
  if (holder === identity) {
    // Ours, even if it expired meanwhile: nobody else wrote it since, or this write fails on
    // its resourceVersion.
    return {
      action: 'renew',
      spec: {
        ...spec,
        leaseDurationSeconds: duration,
        acquireTime: spec.acquireTime ?? stamp,
        renewTime: stamp,
        leaseTransitions: spec.leaseTransitions ?? 0,
      },
    };
  }
  if (holder !== '') {
    const expiresAt = expiryOf(spec, timing);
    // Valid while the expiry is strictly in the future, as in client-go.
    if (expiresAt > now) return { action: 'wait', holder, expiresAt };
  }
  return {
    action: 'acquire',
    spec: {
      ...spec,
      holderIdentity: identity,
      leaseDurationSeconds: duration,
      acquireTime: stamp,
      renewTime: stamp,
      leaseTransitions: (spec.leaseTransitions ?? 0) + 1,
    },
  };
}

/** `<hostname>_<uuid>`: the host (the pod's name) for people, the UUID against any reuse. */
export function defaultLeaderIdentity(): string {
  return `${hostname()}_${randomUUID()}`;
}

/**
 * The reads and writes an elector makes; conflicts are KubeApiErrors with status 409. The
 * signal aborts a request the elector no longer waits for.
 */
export interface LeaseStore {
  /** The Lease, or undefined when there is none. */
  get(signal?: AbortSignal): Promise<Lease | undefined>;
  /** Creates the Lease with `spec`; 409 (AlreadyExists) when there is one. */
  create(spec: LeaseSpec, signal?: AbortSignal): Promise<Lease>;
  /** Replaces the spec of `lease` at its resourceVersion; 409 (Conflict) if it changed since. */
  update(lease: Lease, spec: LeaseSpec, signal?: AbortSignal): Promise<Lease>;
}

export function kubeLeaseStore(client: KubeClient, namespace: string, name: string): LeaseStore {
  const apiVersion = 'coordination.k8s.io/v1';
  const ref = { apiVersion, kind: 'Lease', namespace, name };
  return {
    get: (signal) => client.get<Lease>(ref, { signal }),
    create: (spec, signal) =>
      client.create<Lease>(
        { apiVersion, kind: 'Lease', metadata: { name, namespace }, spec },
        { signal },
      ),
    // The body keeps metadata.resourceVersion: the server refuses it if the Lease moved on.
    update: (lease, spec, signal) => client.update<Lease>({ ...lease, spec }, { signal }),
  };
}

export interface ElectorOptions {
  readonly identity: string;
  /** Default 15 s. */
  readonly leaseDurationMs?: number;
  /** A leader that has not renewed for this long stops leading. Default 10 s. */
  readonly renewDeadlineMs?: number;
  /** Between attempts to renew or acquire. Default 2 s. */
  readonly retryPeriodMs?: number;
  /** Not awaited; a rejection is logged. */
  readonly onStartedLeading: () => void | Promise<void>;
  /** Awaited by stop() before the Lease is released; called once per term of leadership. */
  readonly onStoppedLeading: () => void | Promise<void>;
  readonly log?: Logger;
  readonly clock?: Clock;
}

export interface LeaderElectionOptions extends ElectorOptions {
  readonly namespace: string;
  readonly name: string;
}

export interface LeaderElector {
  /** Begins campaigning at once; only once per elector. */
  start(): void;
  isLeader(): boolean;
  /**
   * Stops campaigning; if leading, runs onStoppedLeading and then releases the Lease so that a
   * standby takes over at its next retry. Leaves no timer behind. Idempotent.
   */
  stop(): Promise<void>;
}

export function createLeaderElector(
  client: KubeClient,
  options: LeaderElectionOptions,
): LeaderElector {
  const log = options.log ?? jsonLogger({ component: 'leader-election' });
  return createLeaderElectorOn(kubeLeaseStore(client, options.namespace, options.name), {
    ...options,
    log: log.with({ lease: `${options.namespace}/${options.name}` }),
  });
}

// Candidates spread their attempts a little so that they do not race in lockstep.
const CANDIDATE_JITTER = 0.2;

type Outcome =
  | { readonly kind: 'held'; readonly renewedAt: number }
  | { readonly kind: 'waiting'; readonly holder: string };

function isConflict(error: unknown): boolean {
  return isApiStatus(error, 409);
}

/** The elector over any LeaseStore (the Kubernetes one is createLeaderElector). */
export function createLeaderElectorOn(store: LeaseStore, options: ElectorOptions): LeaderElector {
  const { identity } = options;
  const leaseDurationMs = options.leaseDurationMs ?? 15_000;
  const renewDeadlineMs = options.renewDeadlineMs ?? 10_000;
  const retryPeriodMs = options.retryPeriodMs ?? 2_000;
  if (identity === '') throw new Error('the identity must not be empty: empty means released');
  if (!(retryPeriodMs > 0 && renewDeadlineMs > retryPeriodMs)) {
    throw new Error('renewDeadlineMs must be greater than retryPeriodMs, which must be positive');
  }
  // The margin in between is what keeps an old leader from overlapping a new one.
  if (!(leaseDurationMs > renewDeadlineMs)) {
    throw new Error('leaseDurationMs must be greater than renewDeadlineMs');
  }
  const timing: LeaseTiming = { leaseDurationMs };
  // As client-go: one request may hang for half the deadline, leaving time for a retry.
  const requestTimeoutMs = renewDeadlineMs / 2;
  const clock = options.clock ?? systemClock;
  const log = (options.log ?? jsonLogger({ component: 'leader-election' })).with({ identity });

  let state: 'new' | 'running' | 'stopped' = 'new';
  let leading = false;
  // Our last successful write: renewals go out without a read first, and stop() releases it.
  // Stale when someone else wrote since; the write then fails with 409 and we read.
  let held: Lease | undefined;
  let lastHolder: string | undefined;
  let cancelNext: (() => void) | undefined;
  let cancelDeadline: (() => void) | undefined;
  let attempt: Promise<void> | undefined;
  // onStoppedLeading still running: no new term starts, and stop() waits, until it is done.
  let stopping: Promise<void> | undefined;
  let stopped: Promise<void> | undefined;

  // The deadline runs on the elector's clock (tests drive it); at expiry the request is aborted.
  const timed = <T>(send: (signal: AbortSignal) => Promise<T>, what: string): Promise<T> =>
    new Promise<T>((resolve, reject) => {
      const abort = new AbortController();
      const cancel = clock.schedule(() => {
        const error = new Error(`${what}: no answer within ${String(requestTimeoutMs)} ms`);
        abort.abort(error);
        reject(error);
      }, requestTimeoutMs);
      send(abort.signal).then(
        (value) => {
          cancel();
          resolve(value);
        },
        (error: unknown) => {
          cancel();
          reject(error instanceof Error ? error : new Error(String(error)));
        },
      );
    });

  const tryAcquireOrRenew = async (): Promise<Outcome> => {
    for (let round = 0; ; round++) {
      const lease = held ?? (await timed((signal) => store.get(signal), 'reading the Lease'));
      const now = clock.now();
      const decision = decideLease(lease, identity, now, timing);
      if (decision.action === 'wait') {
        held = undefined;
        return { kind: 'waiting', holder: decision.holder };
      }
      try {
        held =
          lease === undefined
            ? await timed((signal) => store.create(decision.spec, signal), 'creating the Lease')
            : await timed(
                (signal) => store.update(lease, decision.spec, signal),
                'updating the Lease',
              );
        return { kind: 'held', renewedAt: now };
      } catch (error) {
        held = undefined;
        // 409: someone else wrote first. Read what they wrote and decide once more.
        if (!isConflict(error) || round > 0) throw error;
      }
    }
  };

  const callback = async (which: 'onStartedLeading' | 'onStoppedLeading'): Promise<void> => {
    try {
      await options[which]();
    } catch (error) {
      log.error(`${which} failed`, { error });
    }
  };

  const loseLeadership = (reason: string, asked = false): void => {
    if (!leading) return;
    leading = false;
    cancelDeadline?.();
    cancelDeadline = undefined;
    if (asked) log.info('stopped leading', { reason });
    else log.error('stopped leading', { reason });
    const done = callback('onStoppedLeading').finally(() => {
      if (stopping === done) stopping = undefined;
    });
    stopping = done;
  };

  const onHeld = (renewedAt: number): void => {
    const remaining = renewedAt + renewDeadlineMs - clock.now();
    if (remaining <= 0) {
      // The answer came so late that the deadline it bought has passed already.
      loseLeadership(`the renewal took longer than ${String(renewDeadlineMs)} ms`);
      return;
    }
    if (!leading && stopping !== undefined) return;
    cancelDeadline?.();
    cancelDeadline = clock.schedule(() => {
      cancelDeadline = undefined;
      loseLeadership(`not renewed within ${String(renewDeadlineMs)} ms`);
    }, remaining);
    if (!leading) {
      leading = true;
      lastHolder = identity;
      log.info('started leading');
      void callback('onStartedLeading');
    }
  };

  const run = async (): Promise<void> => {
    cancelNext = undefined;
    let outcome: Outcome | undefined;
    try {
      outcome = await tryAcquireOrRenew();
    } catch (error) {
      log.error(leading ? 'renewing the Lease failed' : 'acquiring the Lease failed', { error });
    }
    // stop() owns what happens next.
    if (state !== 'running') return;
    if (outcome?.kind === 'held') {
      onHeld(outcome.renewedAt);
    } else if (outcome?.kind === 'waiting') {
      // Only possible with clocks far apart or a deadline missed unnoticed: yield at once.
      loseLeadership(`the Lease is held by ${outcome.holder}`);
      if (outcome.holder !== lastHolder) {
        lastHolder = outcome.holder;
        log.info('the Lease is held by another replica', { holder: outcome.holder });
      }
    }
    const delay = leading ? retryPeriodMs : retryPeriodMs * (1 + CANDIDATE_JITTER * Math.random());
    cancelNext = clock.schedule(() => {
      attempt = run();
    }, delay);
  };

  const release = async (lease: Lease): Promise<void> => {
    const spec = lease.spec ?? {};
    const now = formatMicroTime(clock.now());
    try {
      // As client-go's ReleaseOnCancel: nobody holds it, and it is stale a second from now.
      held = undefined;
      await timed(
        (signal) =>
          store.update(
            lease,
            {
              ...spec,
              holderIdentity: '',
              leaseDurationSeconds: 1,
              acquireTime: now,
              renewTime: now,
              leaseTransitions: spec.leaseTransitions ?? 0,
            },
            signal,
          ),
        'releasing the Lease',
      );
      log.info('released the Lease');
    } catch (error) {
      // 409: someone else wrote it since, so it is not ours to release.
      if (!isConflict(error)) log.error('releasing the Lease failed', { error });
    }
  };

  return {
    start: () => {
      if (state !== 'new') throw new Error('a leader elector starts only once');
      state = 'running';
      attempt = run();
    },
    isLeader: () => leading,
    stop: () => {
      stopped ??= (async () => {
        state = 'stopped';
        cancelNext?.();
        cancelNext = undefined;
        await attempt;
        // The leader's work ends before the Lease is let go, so two leaders never overlap.
        loseLeadership('the elector was stopped', true);
        await stopping;
        if (held?.spec?.holderIdentity === identity) await release(held);
      })();
      return stopped;
    },
  };
}
