// Leader election against a real kube-apiserver: one leader among candidates, a handover at the
// standby's next retry when the leader stops, and a takeover only after the Lease of a leader
// that vanished has expired, that leader having stopped first.
import type * as k8s from '@kubernetes/client-node';
import {
  createLeaderElector,
  parseMicroTime,
  type Lease,
  type LeaderElector,
} from '../../src/controller/leader-election.ts';
import { clientFor, KubeApiError, requestJson, resourcePath } from '../../src/kube/api.ts';
import type { Logger } from '../../src/base/log.ts';
import {
  createTestNamespace,
  deleteTestNamespace,
  eventually,
  testKubeConfig,
} from '../support/kube.ts';
import { kubeConfigVia, startStallProxy, type StallProxy } from '../support/stall-proxy.ts';

// Short, with client-go's proportions: a leader gives up 1 s before anyone may take over.
const TIMING = { leaseDurationMs: 3_000, renewDeadlineMs: 2_000, retryPeriodMs: 500 };

const silent: Logger = { info: () => undefined, error: () => undefined, with: () => silent };

interface Event {
  readonly who: string;
  readonly what: 'started' | 'stopped';
  readonly at: number;
}

interface Replica {
  readonly name: string;
  readonly identity: string;
  readonly elector: LeaderElector;
}

describe('leader election on a real Lease', () => {
  const kc = testKubeConfig();
  let namespace: string;
  let leaseName: string;
  let events: Event[];
  const electors: LeaderElector[] = [];
  const proxies: StallProxy[] = [];
  let testCount = 0;

  beforeAll(async () => {
    namespace = await createTestNamespace(kc, 'leader-election');
  });

  beforeEach(() => {
    // A Lease of its own per test: no state carried over from the previous one.
    leaseName = `manager-${String(++testCount)}`;
    events = [];
  });

  afterEach(async () => {
    for (const elector of electors.splice(0)) await elector.stop();
    for (const proxy of proxies.splice(0)) await proxy.close();
  });

  afterAll(async () => {
    await deleteTestNamespace(kc, namespace);
  });

  function replica(name: string, via: k8s.KubeConfig = kc): Replica {
    const identity = `${name}_${leaseName}`;
    const elector = createLeaderElector(clientFor(via), {
      namespace,
      name: leaseName,
      identity,
      ...TIMING,
      log: silent,
      onStartedLeading: () => {
        events.push({ who: name, what: 'started', at: Date.now() });
      },
      onStoppedLeading: () => {
        events.push({ who: name, what: 'stopped', at: Date.now() });
      },
    });
    electors.push(elector);
    return { name, identity, elector };
  }

  async function readLease(): Promise<Lease | undefined> {
    try {
      return (await requestJson(kc, {
        method: 'GET',
        path: resourcePath('coordination.k8s.io/v1', 'Lease', namespace, leaseName),
      })) as Lease;
    } catch (error) {
      if (error instanceof KubeApiError && error.status === 404) return undefined;
      throw error;
    }
  }

  const leaders = (replicas: Replica[]): string[] =>
    replicas.filter((r) => r.elector.isLeader()).map((r) => r.name);

  const eventOf = (who: string, what: Event['what']): Event | undefined =>
    events.find((e) => e.who === who && e.what === what);

  const report = (line: string): void => {
    process.stderr.write(`[leader-election] ${line}\n`);
  };

  it('of two candidates on one Lease exactly one leads, and keeps leading while it renews', async () => {
    const replicas = [replica('a'), replica('b')];
    const started = Date.now();
    for (const r of replicas) r.elector.start();
    const [leader] = await eventually('a leader', () => {
      const now = leaders(replicas);
      return now.length > 0 ? now : undefined;
    });
    report(`first leader after ${String(Date.now() - started)} ms`);
    const first = await readLease();
    const firstRenewal = parseMicroTime(first?.spec?.renewTime);

    // Watched over more than a lease duration of renewals, never two leaders, never a change.
    await eventually('renewals spanning a lease duration', async () => {
      expect(leaders(replicas)).toEqual([leader]);
      const renewed = parseMicroTime((await readLease())?.spec?.renewTime);
      return renewed > firstRenewal + TIMING.leaseDurationMs ? true : undefined;
    });
    expect(events.map((e) => `${e.who} ${e.what}`)).toEqual([`${String(leader)} started`]);
    const holder = replicas.find((r) => r.name === leader)?.identity;
    expect((await readLease())?.spec).toMatchObject({
      holderIdentity: holder,
      leaseDurationSeconds: 3,
      leaseTransitions: 0,
      acquireTime: first?.spec?.acquireTime,
    });
  });

  it("stop() of the leader releases the Lease: the standby leads at its next retry, long before the lease's expiry", async () => {
    const a = replica('a');
    a.elector.start();
    await eventually('a to lead', () => (a.elector.isLeader() ? true : undefined));
    const b = replica('b');
    b.elector.start();
    // b has seen the Lease held and waits.
    await eventually('b to campaign', async () =>
      (await readLease())?.spec?.holderIdentity === a.identity && !b.elector.isLeader()
        ? true
        : undefined,
    );

    const stopAt = Date.now();
    await a.elector.stop();
    const releasedAt = Date.now();
    await eventually('b to lead', () => (b.elector.isLeader() ? true : undefined));
    const takeover = (eventOf('b', 'started')?.at ?? Infinity) - releasedAt;
    report(
      `stop() took ${String(releasedAt - stopAt)} ms; standby led ${String(takeover)} ms after the release (retry ${String(TIMING.retryPeriodMs)} ms, lease ${String(TIMING.leaseDurationMs)} ms)`,
    );
    expect(takeover).toBeLessThan(TIMING.leaseDurationMs);
    // The old leader's work had ended before the new one's began.
    expect(events.map((e) => `${e.who} ${e.what}`)).toEqual([
      'a started',
      'a stopped',
      'b started',
    ]);
    expect(a.elector.isLeader()).toBe(false);
    expect((await readLease())?.spec).toMatchObject({
      holderIdentity: b.identity,
      leaseDurationSeconds: 3,
      // Created by a (0), released (still 0), acquired by b.
      leaseTransitions: 1,
    });
  });

  it('a leader that vanishes without releasing: it stops at its renew deadline, the standby takes over once the Lease expired', async () => {
    const proxy = await startStallProxy(kc.getCurrentCluster()?.server ?? '');
    proxies.push(proxy);
    const c = replica('c', kubeConfigVia(kc, proxy.server));
    c.elector.start();
    await eventually('c to lead', () => (c.elector.isLeader() ? true : undefined));
    const a = replica('a');
    a.elector.start();
    await eventually('a to campaign', async () =>
      (await readLease())?.spec?.holderIdentity === c.identity ? true : undefined,
    );

    // c's path to the API server is cut: no renewal gets through, and no release either.
    const cutAt = Date.now();
    proxy.refuse(true);
    // Every renewTime the Lease shows while a waits; the last one is c's final renewal.
    const renewals = new Set<string>();
    await eventually(
      'a to lead',
      async () => {
        const spec = (await readLease())?.spec;
        if (spec?.holderIdentity === c.identity && spec.renewTime !== undefined) {
          renewals.add(spec.renewTime);
        }
        return a.elector.isLeader() ? true : undefined;
      },
      20_000,
    );
    expect(renewals.size).toBeGreaterThan(0);
    const lastRenewal = Math.max(...[...renewals].map(parseMicroTime));
    const cStopped = eventOf('c', 'stopped')?.at ?? Infinity;
    const aStarted = eventOf('a', 'started')?.at ?? Infinity;
    report(
      `after the cut: c stopped leading in ${String(cStopped - cutAt)} ms (deadline ${String(TIMING.renewDeadlineMs)} ms), a led in ${String(aStarted - cutAt)} ms; a acquired ${String(aStarted - lastRenewal)} ms after c's last renewal (lease ${String(TIMING.leaseDurationMs)} ms)`,
    );

    // c counted its deadline from its last renewal, which was before the cut.
    expect(cStopped - cutAt).toBeLessThanOrEqual(TIMING.renewDeadlineMs + 1_000);
    expect(events.map((e) => `${e.who} ${e.what}`)).toEqual([
      'c started',
      'c stopped',
      'a started',
    ]);
    const spec = (await readLease())?.spec;
    expect(spec).toMatchObject({ holderIdentity: a.identity, leaseTransitions: 1 });
    // Taken only once c's Lease had expired.
    expect(parseMicroTime(spec?.acquireTime)).toBeGreaterThan(lastRenewal + TIMING.leaseDurationMs);
    expect(c.elector.isLeader()).toBe(false);
  });
});
