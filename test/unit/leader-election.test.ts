// Leader election: the decision on one Lease as a pure function, then the elector's timing on a
// manual clock over an in-memory Lease with resourceVersions. The same against a real
// kube-apiserver is in test/integration/leader-election.test.ts.
import { hostname } from 'node:os';
import fc from 'fast-check';
import {
  createLeaderElectorOn,
  decideLease,
  defaultLeaderIdentity,
  formatMicroTime,
  leaseDurationSeconds,
  parseMicroTime,
  type ElectorOptions,
  type Lease,
  type LeaderElector,
  type LeaseSpec,
  type LeaseStore,
} from '../../src/controller/leader-election.ts';
import { KubeApiError } from '../../src/kube/api.ts';
import type { Logger } from '../../src/base/log.ts';
import { manualClock, type ManualClock } from '../support/manual-clock.ts';

const T0 = Date.parse('2026-11-26T12:00:00Z');
const TIMING = { leaseDurationMs: 15_000 };
const micro = formatMicroTime;

function lease(spec: LeaseSpec | undefined, resourceVersion = '7'): Lease {
  return {
    apiVersion: 'coordination.k8s.io/v1',
    kind: 'Lease',
    metadata: { name: 'lock', namespace: 'ns', resourceVersion },
    ...(spec === undefined ? {} : { spec }),
  };
}

function heldBy(holder: string, renewedAt: number, extra: LeaseSpec = {}): Lease {
  return lease({
    holderIdentity: holder,
    leaseDurationSeconds: 15,
    acquireTime: micro(renewedAt - 60_000),
    renewTime: micro(renewedAt),
    leaseTransitions: 4,
    ...extra,
  });
}

describe('decideLease', () => {
  it('creates a missing Lease: held by us, acquired and renewed now, no transitions yet', () => {
    expect(decideLease(undefined, 'me', T0, TIMING)).toEqual({
      action: 'create',
      spec: {
        holderIdentity: 'me',
        leaseDurationSeconds: 15,
        acquireTime: '2026-11-26T12:00:00.000000Z',
        renewTime: '2026-11-26T12:00:00.000000Z',
        leaseTransitions: 0,
      },
    });
  });

  it('renews our own Lease: only renewTime (and the duration) change', () => {
    const ours = heldBy('me', T0 - 2_000, { leaseDurationSeconds: 30 });
    expect(decideLease(ours, 'me', T0, TIMING)).toEqual({
      action: 'renew',
      spec: { ...ours.spec, leaseDurationSeconds: 15, renewTime: micro(T0) },
    });
  });

  it('renews our own Lease even when it expired: nobody took it, or the write fails with 409', () => {
    const decision = decideLease(heldBy('me', T0 - 3_600_000), 'me', T0, TIMING);
    expect(decision).toMatchObject({ action: 'renew', spec: { leaseTransitions: 4 } });
  });

  it("waits while another holder's Lease is valid, and says until when", () => {
    expect(decideLease(heldBy('other', T0 - 14_999), 'me', T0, TIMING)).toEqual({
      action: 'wait',
      holder: 'other',
      expiresAt: T0 + 1,
    });
  });

  it('acquires an expired Lease of another holder, counting a transition', () => {
    const old = heldBy('other', T0 - 20_000, { strategy: 'OldestEmulationVersion' });
    expect(decideLease(old, 'me', T0, TIMING)).toEqual({
      action: 'acquire',
      spec: {
        holderIdentity: 'me',
        leaseDurationSeconds: 15,
        acquireTime: micro(T0),
        renewTime: micro(T0),
        leaseTransitions: 5,
        // Fields it does not use are carried over.
        strategy: 'OldestEmulationVersion',
      },
    });
  });

  it('treats the exact expiry instant as expired, as client-go does', () => {
    expect(decideLease(heldBy('other', T0 - 15_000), 'me', T0, TIMING).action).toBe('acquire');
    expect(decideLease(heldBy('other', T0 - 15_000), 'me', T0 - 1, TIMING).action).toBe('wait');
  });

  it("times another holder's expiry by the duration in the Lease, not by our own", () => {
    const long = heldBy('other', T0 - 20_000, { leaseDurationSeconds: 60 });
    expect(decideLease(long, 'me', T0, TIMING)).toMatchObject({
      action: 'wait',
      expiresAt: T0 + 40_000,
    });
    const short = heldBy('other', T0 - 2_000, { leaseDurationSeconds: 1 });
    expect(decideLease(short, 'me', T0, TIMING).action).toBe('acquire');
  });

  it('falls back to our duration when the Lease has none', () => {
    const spec = { ...heldBy('other', T0 - 10_000).spec };
    delete spec.leaseDurationSeconds;
    expect(decideLease(lease(spec), 'me', T0, { leaseDurationMs: 20_000 })).toMatchObject({
      action: 'wait',
      expiresAt: T0 + 10_000,
    });
  });

  it('acquires a released Lease (empty holder) at once, however recent and long it is', () => {
    const released = heldBy('', T0, { leaseDurationSeconds: 3600 });
    expect(decideLease(released, 'me', T0, TIMING)).toMatchObject({
      action: 'acquire',
      spec: { holderIdentity: 'me', leaseTransitions: 5 },
    });
  });

  it('acquires a Lease with no spec or no holder, as released', () => {
    expect(decideLease(lease(undefined), 'me', T0, TIMING)).toMatchObject({
      action: 'acquire',
      spec: { holderIdentity: 'me', leaseTransitions: 1 },
    });
    expect(decideLease(lease({ leaseTransitions: 2 }), 'me', T0, TIMING)).toMatchObject({
      action: 'acquire',
      spec: { leaseTransitions: 3 },
    });
  });

  it('reads the acquireTime when renewTime is missing, and takes a Lease with neither', () => {
    const acquiredOnly = lease({ holderIdentity: 'other', acquireTime: micro(T0 - 1_000) });
    expect(decideLease(acquiredOnly, 'me', T0, TIMING).action).toBe('wait');
    const timeless = lease({ holderIdentity: 'other', leaseDurationSeconds: 15 });
    expect(decideLease(timeless, 'me', T0, TIMING).action).toBe('acquire');
    const garbled = lease({ holderIdentity: 'other', renewTime: 'yesterday' });
    expect(decideLease(garbled, 'me', T0, TIMING).action).toBe('acquire');
  });

  it('reads the microseconds kube-apiserver writes', () => {
    const precise = lease({
      holderIdentity: 'other',
      leaseDurationSeconds: 15,
      renewTime: '2026-11-26T11:59:45.000999Z',
    });
    // Expires within the millisecond after 11:59:45.000 + 15 s.
    expect(decideLease(precise, 'me', T0 - 1, TIMING).action).toBe('wait');
    expect(decideLease(precise, 'me', T0 + 1, TIMING).action).toBe('acquire');
  });

  it('never takes a valid Lease of another holder, and never loses count of transitions', () => {
    const identities = fc.constantFrom('', 'me', 'other', 'third');
    const specs = fc.record(
      {
        holderIdentity: identities,
        leaseDurationSeconds: fc.integer({ min: 1, max: 3600 }),
        renewTime: fc.integer({ min: -3_600_000, max: 3_600_000 }).map((d) => micro(T0 + d)),
        leaseTransitions: fc.nat({ max: 1000 }),
      },
      { requiredKeys: [] },
    );
    fc.assert(
      fc.property(fc.option(specs, { nil: undefined }), (spec) => {
        const current = spec === undefined ? undefined : lease(spec);
        const decision = decideLease(current, 'me', T0, TIMING);
        const holder = spec?.holderIdentity ?? '';
        const expiresAt =
          parseMicroTime(spec?.renewTime) + (spec?.leaseDurationSeconds ?? 15) * 1000;
        const validOther = holder !== '' && holder !== 'me' && expiresAt > T0;
        if (decision.action === 'wait') {
          expect(validOther).toBe(true);
          expect(decision.holder).toBe(holder);
          return;
        }
        expect(validOther).toBe(false);
        expect(decision.spec.holderIdentity).toBe('me');
        expect(decision.spec.renewTime).toBe(micro(T0));
        const before = spec?.leaseTransitions ?? 0;
        const expected = { create: 0, renew: before, acquire: before + 1 }[decision.action];
        expect(decision.spec.leaseTransitions).toBe(expected);
        expect(decision.action === 'create').toBe(current === undefined);
      }),
    );
  });
});

describe('MicroTime and durations', () => {
  it('formats with six fractional digits, and reads that back', () => {
    const at = Date.parse('2026-11-26T12:00:00.123Z');
    expect(formatMicroTime(at)).toBe('2026-11-26T12:00:00.123000Z');
    expect(parseMicroTime(formatMicroTime(at))).toBe(at);
    expect(parseMicroTime(undefined)).toBeNaN();
  });

  it('rounds the lease duration up to whole seconds, at least one', () => {
    expect([500, 1_000, 2_500, 15_000].map(leaseDurationSeconds)).toEqual([1, 1, 3, 15]);
  });

  it('names a replica by its host and a fresh UUID', () => {
    const identity = defaultLeaderIdentity();
    expect(identity.startsWith(`${hostname()}_`)).toBe(true);
    expect(identity.slice(hostname().length + 1)).toMatch(
      /^[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}$/,
    );
    expect(defaultLeaderIdentity()).not.toBe(identity);
  });
});

// --- the elector, on a manual clock ---

type Mode = 'ok' | 'fail' | 'hang';

interface Client {
  readonly store: LeaseStore;
  /** `fail`: every call is refused; `hang`: no call ever answers. */
  mode: Mode;
  readonly calls: { get: number; create: number; update: number };
  /** Runs once, just before this client's next write reaches the Lease. */
  beforeWrite: (() => void) | undefined;
}

/** One Lease with resourceVersions and 409s, as kube-apiserver keeps it. */
class MemoryLease {
  current: Lease | undefined;
  private version = 0;

  write(spec: LeaseSpec): Lease {
    this.version++;
    this.current = lease(structuredClone(spec), String(this.version));
    return structuredClone(this.current);
  }

  spec(): LeaseSpec | undefined {
    return this.current?.spec;
  }

  client(): Client {
    const calls = { get: 0, create: 0, update: 0 };
    const gate = async (): Promise<void> => {
      if (client.mode === 'hang') await new Promise<never>(() => undefined);
      if (client.mode === 'fail') throw new Error('connect ECONNREFUSED');
    };
    const beforeWrite = (): void => {
      const hook = client.beforeWrite;
      client.beforeWrite = undefined;
      hook?.();
    };
    const client: Client = {
      mode: 'ok',
      calls,
      beforeWrite: undefined,
      store: {
        get: async () => {
          calls.get++;
          await gate();
          return this.current === undefined ? undefined : structuredClone(this.current);
        },
        create: async (spec) => {
          calls.create++;
          await gate();
          beforeWrite();
          if (this.current !== undefined) {
            throw new KubeApiError('POST', '/leases', 409, { reason: 'AlreadyExists' });
          }
          return this.write(spec);
        },
        update: async (base, spec) => {
          calls.update++;
          await gate();
          beforeWrite();
          if (base.metadata.resourceVersion !== this.current?.metadata.resourceVersion) {
            throw new KubeApiError('PUT', '/leases/lock', 409, { reason: 'Conflict' });
          }
          return this.write(spec);
        },
      },
    };
    return client;
  }
}

const silent: Logger = { info: () => undefined, error: () => undefined, with: () => silent };

interface Replica {
  readonly elector: LeaderElector;
  readonly client: Client;
  /** Clock times of each onStartedLeading and onStoppedLeading. */
  readonly started: number[];
  readonly stopped: number[];
}

describe('leader elector', () => {
  let clock: ManualClock;
  let memory: MemoryLease;
  let replicas: Replica[];

  beforeEach(() => {
    clock = manualClock(T0);
    memory = new MemoryLease();
    replicas = [];
  });

  afterEach(async () => {
    for (const replica of replicas) await replica.elector.stop();
    // Nothing left scheduled: a stopped elector would otherwise keep a process alive.
    expect(clock.pending()).toBe(0);
  });

  function replica(identity: string, options: Partial<ElectorOptions> = {}): Replica {
    const client = memory.client();
    const started: number[] = [];
    const stopped: number[] = [];
    const elector = createLeaderElectorOn(client.store, {
      identity,
      clock,
      log: silent,
      onStartedLeading: () => {
        started.push(clock.now());
      },
      onStoppedLeading: () => {
        stopped.push(clock.now());
      },
      ...options,
    });
    const made = { elector, client, started, stopped };
    replicas.push(made);
    return made;
  }

  it('a lone candidate creates the Lease, leads, and renews every retry period without reading', async () => {
    const a = replica('a');
    a.elector.start();
    await clock.advance(0);
    expect(a.elector.isLeader()).toBe(true);
    expect(a.started).toEqual([T0]);
    expect(memory.spec()).toEqual({
      holderIdentity: 'a',
      leaseDurationSeconds: 15,
      acquireTime: micro(T0),
      renewTime: micro(T0),
      leaseTransitions: 0,
    });

    await clock.advance(60_000);
    expect(memory.spec()).toMatchObject({ renewTime: micro(T0 + 60_000), acquireTime: micro(T0) });
    expect(a.client.calls).toEqual({ get: 1, create: 1, update: 30 });
    expect(a.started).toHaveLength(1);
    expect(a.stopped).toEqual([]);
  });

  it('of two candidates starting together exactly one leads; the loser of the create race reads and waits', async () => {
    const a = replica('a');
    const b = replica('b');
    a.elector.start();
    b.elector.start();
    await clock.advance(60_000);
    expect([a.elector.isLeader(), b.elector.isLeader()]).toEqual([true, false]);
    expect([a.started, b.started]).toEqual([[T0], []]);
    expect(b.client.calls).toMatchObject({ create: 1, update: 0 });
    expect(b.client.calls.get).toBeGreaterThan(20);
    expect(memory.spec()).toMatchObject({ holderIdentity: 'a', leaseTransitions: 0 });
  });

  it('a leader that cannot renew stops leading once, exactly at its renew deadline, and campaigns on', async () => {
    const a = replica('a');
    a.elector.start();
    await clock.advance(4_000);
    const lastRenewal = T0 + 4_000;
    expect(memory.spec()?.renewTime).toBe(micro(lastRenewal));
    a.client.mode = 'fail';
    await clock.advance(30_000);
    expect(a.elector.isLeader()).toBe(false);
    expect(a.stopped).toEqual([lastRenewal + 10_000]);

    // Nobody took the Lease meanwhile: the first attempt that gets through leads again.
    a.client.mode = 'ok';
    await clock.advance(2_400);
    expect(a.elector.isLeader()).toBe(true);
    expect(a.started).toHaveLength(2);
    expect(a.stopped).toHaveLength(1);
    expect(memory.spec()).toMatchObject({ holderIdentity: 'a', leaseTransitions: 0 });
  });

  it('a request that never answers does not hold the deadline up', async () => {
    const a = replica('a');
    a.elector.start();
    await clock.advance(0);
    a.client.mode = 'hang';
    await clock.advance(30_000);
    expect(a.stopped).toEqual([T0 + 10_000]);
    expect(a.elector.isLeader()).toBe(false);
  });

  it('a standby takes over once the silent leader’s Lease expired, after that leader stopped', async () => {
    const a = replica('a');
    a.elector.start();
    await clock.advance(0);
    const b = replica('b');
    b.elector.start();
    await clock.advance(6_000);
    const lastRenewal = T0 + 6_000;
    a.client.mode = 'fail';
    await clock.advance(30_000);

    expect(a.stopped).toEqual([lastRenewal + 10_000]);
    const [takeover] = b.started;
    expect(takeover).toBeGreaterThan(lastRenewal + 15_000);
    // At the candidate's next attempt after the expiry (a retry period, jittered by a fifth).
    expect(takeover).toBeLessThanOrEqual(lastRenewal + 15_000 + 2_400);
    expect(memory.spec()).toMatchObject({
      holderIdentity: 'b',
      acquireTime: micro(takeover ?? 0),
      leaseTransitions: 1,
    });
    expect(a.elector.isLeader()).toBe(false);
    expect(b.elector.isLeader()).toBe(true);
  });

  it('stop() ends the leader’s work while it still holds the Lease, then releases it for a standby', async () => {
    let holderDuringStop: string | undefined;
    let finishWork: () => void = () => undefined;
    const a = replica('a', {
      onStoppedLeading: async () => {
        holderDuringStop = memory.spec()?.holderIdentity;
        await new Promise<void>((resolve) => {
          finishWork = resolve;
        });
      },
    });
    a.elector.start();
    await clock.advance(0);
    const b = replica('b');
    b.elector.start();
    await clock.advance(3_000);

    let stopDone = false;
    const stopping = a.elector.stop().then(() => {
      stopDone = true;
    });
    await clock.advance(0);
    expect(a.elector.isLeader()).toBe(false);
    expect(holderDuringStop).toBe('a');
    expect(stopDone).toBe(false);
    finishWork();
    await stopping;

    const releasedAt = clock.now();
    expect(memory.spec()).toEqual({
      holderIdentity: '',
      leaseDurationSeconds: 1,
      acquireTime: micro(releasedAt),
      renewTime: micro(releasedAt),
      leaseTransitions: 0,
    });
    await clock.advance(2_400);
    expect(b.elector.isLeader()).toBe(true);
    expect(memory.spec()).toMatchObject({ holderIdentity: 'b', leaseTransitions: 1 });
    expect(a.started).toHaveLength(1);
  });

  it('stop() of a candidate writes nothing and calls nothing; stop() twice is one stop', async () => {
    const a = replica('a');
    a.elector.start();
    await clock.advance(0);
    const b = replica('b');
    b.elector.start();
    await clock.advance(5_000);
    const before = { ...b.client.calls };
    await Promise.all([b.elector.stop(), b.elector.stop()]);
    expect(b.client.calls).toEqual(before);
    expect([b.started, b.stopped]).toEqual([[], []]);
    expect(memory.spec()?.holderIdentity).toBe('a');
  });

  it('stop() releases a Lease acquired while it was stopping, without starting to lead', async () => {
    const a = replica('a');
    a.client.mode = 'hang';
    a.elector.start();
    const stopping = a.elector.stop();
    // The create hangs, is abandoned at the request timeout, and nothing was written.
    await clock.advance(5_000);
    await stopping;
    expect(memory.current).toBeUndefined();

    let releaseCreate: () => void = () => undefined;
    const gated = memory.client();
    // c's create lands, but only after stop() was called.
    const store: LeaseStore = {
      ...gated.store,
      create: async (spec) => {
        await new Promise<void>((resolve) => {
          releaseCreate = resolve;
        });
        return gated.store.create(spec);
      },
    };
    const c = createLeaderElectorOn(store, {
      identity: 'c',
      clock,
      log: silent,
      onStartedLeading: () => {
        throw new Error('must not lead');
      },
      onStoppedLeading: () => {
        throw new Error('never led');
      },
    });
    c.start();
    await clock.advance(0);
    const cStopping = c.stop();
    releaseCreate();
    await cStopping;
    expect(c.isLeader()).toBe(false);
    expect(memory.spec()).toMatchObject({ holderIdentity: '', leaseDurationSeconds: 1 });
  });

  it('a write that loses a race (409) is re-read and the winner respected', async () => {
    memory.write(heldBy('old', T0 - 60_000).spec ?? {});
    const b = replica('b');
    // c renews a fresh claim between b's read and b's write.
    b.client.beforeWrite = () => {
      memory.write({ holderIdentity: 'c', leaseDurationSeconds: 15, renewTime: micro(T0) });
    };
    b.elector.start();
    await clock.advance(0);
    expect(b.elector.isLeader()).toBe(false);
    expect(b.client.calls).toEqual({ get: 2, create: 0, update: 1 });
    expect(memory.spec()?.holderIdentity).toBe('c');
  });

  it('a leader that finds someone else holding the Lease yields at once, not at its deadline', async () => {
    const a = replica('a');
    a.elector.start();
    await clock.advance(1_000);
    memory.write({ holderIdentity: 'x', leaseDurationSeconds: 15, renewTime: micro(T0 + 1_000) });
    await clock.advance(1_000);
    expect(a.stopped).toEqual([T0 + 2_000]);
    expect(a.elector.isLeader()).toBe(false);
  });

  it('a failing callback is logged, not thrown, and does not stop the election', async () => {
    const errors: string[] = [];
    const log: Logger = {
      info: () => undefined,
      error: (msg) => errors.push(msg),
      with: () => log,
    };
    const a = replica('a', {
      log,
      onStartedLeading: () => Promise.reject(new Error('boom')),
      onStoppedLeading: () => {
        throw new Error('bang');
      },
    });
    a.elector.start();
    await clock.advance(4_000);
    expect(a.elector.isLeader()).toBe(true);
    await a.elector.stop();
    expect(errors).toEqual(['onStartedLeading failed', 'onStoppedLeading failed']);
    expect(memory.spec()?.holderIdentity).toBe('');
  });

  it('refuses timings that could let two leaders overlap, an empty identity, and a second start', () => {
    const make = (options: Partial<ElectorOptions>) => () =>
      createLeaderElectorOn(memory.client().store, {
        identity: 'a',
        onStartedLeading: () => undefined,
        onStoppedLeading: () => undefined,
        ...options,
      });
    expect(make({ leaseDurationMs: 10_000 })).toThrow(/leaseDurationMs must be greater/);
    expect(make({ renewDeadlineMs: 2_000 })).toThrow(/renewDeadlineMs must be greater/);
    expect(make({ retryPeriodMs: 0, renewDeadlineMs: 1 })).toThrow(/must be positive/);
    expect(make({ identity: '' })).toThrow(/empty/);

    const a = replica('a');
    a.elector.start();
    expect(() => {
      a.elector.start();
    }).toThrow(/only once/);
  });
});
