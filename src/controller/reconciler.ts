// The executor of a reconcile plan: gathers what the plan needs (the children from the watch
// caches, or the API for what the caches cannot know), asks plan.ts what to do, carries it out
// and reports per child. Every request carries the reconcile's AbortSignal, so losing the Lease
// or stopping ends the work in flight.
//
// Children are written independently: one that the API server refuses is reported in the
// status and retried with backoff, and never keeps the others from converging.
import { defaultNatsSpec } from '../api/defaults.ts';
import { NATS_API_VERSION, NATS_FINALIZER, NATS_KIND, type Nats } from '../api/nats.ts';
import { errorMessage } from '../base/json.ts';
import type { Logger } from '../base/log.ts';
import { describeObject, refOf, type KubeObject, type ObjectRef } from '../base/object.ts';
import type { KubeClient, WriteOptions } from '../kube/client.ts';
import { collectionPath } from '../kube/resources.ts';
import { isApiStatus } from '../kube/transport.ts';
import type { CustomerDataCheck } from '../nats/customer-data.ts';
import { clusterHealth, type MonitoredPod, type ServerHealth } from '../nats/monitoring.ts';
import { observeCluster, removePeer, stepDownMetaLeader } from '../nats/peers.ts';
import { childKey, renderedChildKinds, type ChildKind } from '../render/children.ts';
import { selectorLabels } from '../render/labels.ts';
import { clientUrl, objectNames } from '../render/names.ts';
import { generateSystemAccountPassword } from '../render/password.ts';
import { natsRenderInput } from '../render/render.ts';
import { systemAccountPasswordFrom } from '../render/secret.ts';
import type { EventRecorder, NatsEvent } from './events.ts';
import {
  FIELD_MANAGER,
  planReconcile,
  replacement,
  restartEvent,
  settleApply,
  writeEvents,
  type ApplyPlan,
  type ChildWrite,
  type ClaimResult,
  type DeletePlan,
  type Observations,
  type PlanSettings,
  type RestartResult,
  type StaleChild,
  type WriteResult,
} from './plan.ts';
import { REVISION_LABEL, type RolloutPod } from './rollout.ts';
import {
  formatRemovedPeers,
  parseRemovedPeers,
  REMOVED_PEERS_ANNOTATION,
  withRemoval,
  type RemovedPeers,
} from './rejoin.ts';
import { ordinalOf, SCALE_DOWN_PREFIX, type ScaleDownObservation } from './scale-down.ts';
import type { ObservedClaim } from './storage-growth.ts';
import { MIN_CLUSTER_SIZE } from './status.ts';
import { legacyEntriesPatch } from './takeover.ts';

export { FIELD_MANAGER } from './plan.ts';

const ZONE_LABEL = 'topology.kubernetes.io/zone';

/** The part of a watch cache a reconcile reads. */
export interface ObjectCache<T> {
  get(namespace: string | undefined, name: string): T | undefined;
}

export type ReconcilerSettings = PlanSettings;

/** The API writes the loop sends; counted so that "no writes while idle" can be watched. */
export type WriteVerb =
  'apply' | 'create' | 'delete' | 'status' | 'finalizer' | 'annotation' | 'event';

export interface ReconcilerDeps {
  readonly client: KubeClient;
  readonly settings: ReconcilerSettings;
  readonly natsCache: ObjectCache<Nats>;
  /** The cache of a child kind, by `apiVersion/kind`; undefined when that kind is not watched. */
  readonly childCache: (apiVersionKind: string) => ObjectCache<KubeObject> | undefined;
  readonly record: EventRecorder;
  /** Whether the CRD of an optional child kind (Istio's DestinationRule) is served. */
  readonly servedCrd: (crd: string) => boolean;
  readonly checkCustomerData: (url: string) => Promise<CustomerDataCheck>;
  /** Where NATS clients connect; the Service's cluster DNS name unless replaced (tests). */
  readonly natsUrl?: (nats: { name: string; namespace: string }) => string;
  /** What a scale-down asks NATS through the system account; the real calls unless replaced. */
  readonly natsPeers?: {
    readonly observe: typeof observeCluster;
    readonly remove: typeof removePeer;
    readonly stepDown?: typeof stepDownMetaLeader;
  };
  /** Told of every write sent, for metrics. */
  readonly onWrite?: (kind: string, verb: WriteVerb) => void;
  /** Asks each server's monitoring port (src/nats/monitoring.ts); replaced in tests. */
  readonly monitor?: (
    pods: readonly MonitoredPod[],
    signal: AbortSignal | undefined,
  ) => Promise<ReadonlyMap<string, ServerHealth>>;
  readonly log: Logger;
  readonly now?: () => Date;
}

export interface ChildResult {
  readonly child: string;
  readonly action: ChildWrite['action'];
  readonly error?: string;
}

export interface ReconcileResult {
  /** Look again after this long although no watch event may come. */
  readonly requeueAfterMs?: number;
  /** What each child write did. */
  readonly children?: readonly ChildResult[];
}

/** `key=value,...`, the API's equality-based label selector. */
function labelSelector(labels: Record<string, string>): string {
  return Object.entries(labels)
    .map(([key, value]) => `${key}=${value}`)
    .join(',');
}

function natsRef(nats: Nats): ObjectRef {
  return {
    apiVersion: NATS_API_VERSION,
    kind: NATS_KIND,
    namespace: nats.metadata?.namespace ?? '',
    name: nats.metadata?.name ?? '',
  };
}

/** The parts of a Pod the loop reads. */
interface PodView {
  metadata?: {
    name?: string;
    uid?: string;
    labels?: Record<string, string>;
    deletionTimestamp?: string;
    ownerReferences?: { controller?: boolean }[];
  };
  spec?: { nodeName?: string };
  status?: {
    podIP?: string;
    startTime?: string;
    conditions?: { type?: string; status?: string }[];
  };
}

function rolloutPod(pod: PodView): RolloutPod {
  const revision = pod.metadata?.labels?.[REVISION_LABEL];
  return {
    name: pod.metadata?.name ?? '',
    uid: pod.metadata?.uid ?? '',
    ...(revision === undefined ? {} : { revision }),
    terminating: pod.metadata?.deletionTimestamp !== undefined,
    ready: pod.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') === true,
    ...(pod.status?.startTime === undefined ? {} : { startedAt: pod.status.startTime }),
  };
}

/** A pod running with no controller: its StatefulSet was deleted leaving it. */
function isOrphan(pod: PodView): boolean {
  return (
    pod.metadata?.deletionTimestamp === undefined &&
    !(pod.metadata?.ownerReferences ?? []).some((owner) => owner.controller === true)
  );
}

/** How often a replacement that met 409 is put again on a fresh read before the child fails. */
const REPLACE_ATTEMPTS = 3;

/** The parts of a PersistentVolumeClaim a storage growth reads. */
interface ClaimView {
  metadata: { name?: string; deletionTimestamp?: string };
  spec?: { resources?: { requests?: { storage?: string } } };
  status?: {
    phase?: string;
    capacity?: { storage?: string };
    conditions?: { type?: string; status?: string }[];
  };
}

/** The reconcile failed for some children after it reported them in the status. */
export class ChildrenFailedError extends Error {
  constructor(failed: readonly string[]) {
    super(`${String(failed.length)} child(ren) failed: ${failed.join('; ')}`);
    this.name = 'ChildrenFailedError';
  }
}

/**
 * How a reconcile lists the NATS pods and claims. `watch-cache` answers in a millisecond or two;
 * a `consistent` read after a write to a child waits about 45 ms for the pods' cache to catch
 * up (bench/README.md, restore), which every restore paid before its write.
 */
type PodAndClaimReads = 'watch-cache' | 'consistent';

/**
 * Whether a scale-down step does something a stale list could have misled: move the leadership,
 * remove a peer, cut the StatefulSet or delete claims. One that only waits is looked at again.
 */
function scaleDownActs(step: ApplyPlan['scaleDown'], observed: Observations): boolean {
  if (step === undefined) return false;
  return (
    step.stepDownTo !== undefined ||
    step.removePeer !== undefined ||
    step.deleteClaims.length > 0 ||
    step.replicas < (observed.scaleDown?.replicas ?? step.replicas)
  );
}

/**
 * Whether the plan acts on what the pods and claims showed, beyond writing the children: a pod
 * restart, a scale-down step that acts, a storage growth, a StatefulSet re-created (or created
 * while NATS pods run: a growth's, whose orphaning a stale read could miss), or a rollout found
 * overdue (a Warning). Such a plan is made again on consistent reads. A step that only waits
 * is not: a list a few milliseconds stale can at worst make it wait until the next look, and
 * while a rollout or scale-down runs every reconcile would wait for the consistent read.
 */
function actsOnPodsOrClaims(plan: ApplyPlan, observed: Observations, listedPods: number): boolean {
  const growth = plan.storageGrowth;
  const { rollout } = plan;
  return (
    rollout.kind === 'restart' ||
    (rollout.kind === 'wait' && rollout.overdue) ||
    scaleDownActs(plan.scaleDown, observed) ||
    growth?.progress !== undefined ||
    (growth?.patchClaims.length ?? 0) > 0 ||
    plan.writes.some(
      (write) =>
        write.action === 'recreate' ||
        (write.action === 'create' && write.child.kind === 'StatefulSet' && listedPods > 0),
    )
  );
}

export class NatsReconciler {
  private readonly deps: ReconcilerDeps;

  constructor(deps: ReconcilerDeps) {
    this.deps = deps;
  }

  async reconcile(namespace: string, name: string, signal?: AbortSignal): Promise<ReconcileResult> {
    const nats = this.deps.natsCache.get(namespace, name);
    // Gone: its children go by garbage collection.
    if (nats === undefined) return {};
    // The resource on every line of its reconcile, as controller-runtime logs it.
    const log = this.deps.log.with({ namespace, name });
    const run = new Run(this.deps, nats, log, signal);
    return run.reconcile();
  }
}

/** One reconcile: the state it carries between its steps. */
class Run {
  private readonly deps: ReconcilerDeps;
  private readonly log: Logger;
  private readonly signal: AbortSignal | undefined;
  private nats: Nats;
  /** How many NATS pods the last observation listed. */
  private listedPods = 0;
  /** What the NATS servers answered this reconcile, by question (once()). */
  private readonly answers = new Map<string, Promise<unknown>>();
  /** The NATS pods' zones, for the status; listed alongside the writes. */
  private zones: Promise<readonly string[] | undefined> = Promise.resolve(undefined);

  constructor(deps: ReconcilerDeps, nats: Nats, log: Logger, signal: AbortSignal | undefined) {
    this.deps = deps;
    this.nats = nats;
    this.log = log;
    this.signal = signal;
  }

  private now(): Date {
    return (this.deps.now ?? (() => new Date()))();
  }

  private served(): boolean {
    const { natsName, natsNamespace } = this.deps.settings;
    return this.nats.metadata?.name === natsName && this.nats.metadata.namespace === natsNamespace;
  }

  async reconcile(): Promise<ReconcileResult> {
    const deleting = this.nats.metadata?.deletionTimestamp !== undefined;
    const ours = (this.nats.metadata?.finalizers ?? []).includes(NATS_FINALIZER);
    const observed: Observations = !this.served()
      ? this.bareObservations()
      : deleting
        ? ours
          ? await this.deletionObservations()
          : this.bareObservations()
        : await this.applyObservations('watch-cache');
    let input = { nats: this.nats, settings: this.deps.settings, observed };
    let plan = planReconcile(input);
    // Pods and claims were read from the API server's watch cache, a few milliseconds behind:
    // enough to see that nothing moves, not to restart, delete or cut anything on.
    if (plan.kind === 'apply' && actsOnPodsOrClaims(plan, observed, this.listedPods)) {
      input = { ...input, observed: await this.applyObservations('consistent') };
      plan = planReconcile(input);
    }
    switch (plan.kind) {
      case 'none':
        return {};
      case 'forbidden':
        await this.report(plan.status, plan.events);
        return {};
      case 'delete':
        return this.executeDelete(plan);
      case 'apply':
        return this.executeApply(plan, input.observed);
    }
  }

  private bareObservations(): Observations {
    return {
      children: new Map(),
      servedCrd: this.deps.servedCrd,
      newPassword: '',
      now: this.now(),
    };
  }

  private async applyObservations(reads: PodAndClaimReads): Promise<Observations> {
    const kinds = renderedChildKinds(this.deps.servedCrd);
    const namespace = this.nats.metadata?.namespace ?? '';
    const natsName = this.nats.metadata?.name ?? '';
    // None of these reads depends on another: one round trip, not four (bench/README.md).
    const [live, natsPods, volumeClaims] = await Promise.all([
      Promise.all(
        kinds.map(
          async (child) => [child.kind, await this.lookup(child, namespace, natsName)] as const,
        ),
      ),
      this.natsPods(namespace, reads),
      // Without a StatefulSet as well: one deleted by a growth is created again from its claims.
      this.observedClaims(natsName, reads),
    ]);
    this.listedPods = natsPods.length;
    const children = new Map(
      live.filter((entry): entry is readonly [string, KubeObject] => entry[1] !== undefined),
    );
    const size = defaultNatsSpec(this.nats.spec).cluster.size;
    const statefulSet = children.get('StatefulSet');
    const pods = statefulSet === undefined ? undefined : natsPods;
    // Only the status reads the zones: their nodes are read while the servers are asked and the
    // children written, not before.
    if (pods !== undefined && size >= MIN_CLUSTER_SIZE) {
      this.zones = this.podZones(pods, size);
      // Awaited after the writes; an abort or failure meanwhile must not go unhandled.
      this.zones.catch(() => undefined);
    }
    const servers = pods === undefined ? undefined : await this.serverHealth(pods);
    const scaleDown =
      statefulSet === undefined
        ? undefined
        : await this.scaleDownObservations(statefulSet, children, size, {
            pods: pods ?? [],
            claims: volumeClaims,
          });
    const orphanedPods = statefulSet === undefined ? natsPods.filter(isOrphan).length : 0;
    return {
      children,
      volumeClaims,
      orphanedPods,
      servedCrd: this.deps.servedCrd,
      newPassword: generateSystemAccountPassword(),
      ...(pods === undefined ? {} : { pods: pods.map(rolloutPod) }),
      ...(servers === undefined ? {} : { servers }),
      ...(scaleDown === undefined ? {} : { scaleDown }),
      now: this.now(),
    };
  }

  private async natsPods(namespace: string, reads: PodAndClaimReads): Promise<PodView[]> {
    const input = natsRenderInput(this.nats);
    const pods = await this.deps.client.list<PodView>(collectionPath('v1', 'Pod', namespace), {
      labelSelector: labelSelector(selectorLabels(input)),
      fromWatchCache: reads === 'watch-cache',
      signal: this.signal,
    });
    return pods.items ?? [];
  }

  /** The monitoring answers of every running pod's server; undefined when no pod has an IP. */
  private async serverHealth(
    pods: readonly PodView[],
  ): Promise<ReadonlyMap<string, ServerHealth> | undefined> {
    const monitored = pods.flatMap((pod) =>
      pod.status?.podIP === undefined || pod.metadata?.deletionTimestamp !== undefined
        ? []
        : [{ name: pod.metadata?.name ?? '', ip: pod.status.podIP }],
    );
    if (monitored.length === 0) return undefined;
    const monitor =
      this.deps.monitor ??
      ((targets: readonly MonitoredPod[], signal: AbortSignal | undefined) =>
        clusterHealth(targets, signal === undefined ? {} : { signal }));
    return this.once(`health ${JSON.stringify(monitored)}`, () => monitor(monitored, this.signal));
  }

  /**
   * The answer to a question for the NATS servers, asked once per reconcile: a plan made again
   * on consistent reads of the pods asks the same servers the same, and a few milliseconds
   * later their answer is no fresher (an unreachable cluster made every such plan wait twice).
   */
  private once<T>(question: string, ask: () => Promise<T>): Promise<T> {
    const earlier = this.answers.get(question) as Promise<T> | undefined;
    if (earlier !== undefined) return earlier;
    const answer = ask();
    this.answers.set(question, answer);
    return answer;
  }

  /**
   * What a scale-down step needs, gathered only while the StatefulSet runs more servers than the
   * size or the last status says a scale-down is not done (claims of cut ordinals left).
   */
  private async scaleDownObservations(
    statefulSet: KubeObject,
    children: ReadonlyMap<string, KubeObject>,
    size: number,
    listed: { readonly pods: readonly PodView[]; readonly claims: readonly ObservedClaim[] },
  ): Promise<ScaleDownObservation | undefined> {
    const { pods, claims } = listed;
    const sts = statefulSet as KubeObject & {
      spec?: { replicas?: number };
      status?: { replicas?: number };
    };
    const replicas = sts.spec?.replicas ?? 1;
    const finishing = (this.nats.status?.conditions ?? []).some(
      (c) => c.type === 'StatefulSet' && c.message.startsWith(SCALE_DOWN_PREFIX),
    );
    if (replicas <= size && (sts.status?.replicas ?? 0) <= size && !finishing) return undefined;
    const name = statefulSet.metadata.name ?? '';
    const ordinals = <T>(items: readonly T[], nameOfItem: (item: T) => string) =>
      items.flatMap((item) => {
        const ordinal = ordinalOf(name, nameOfItem(item));
        return ordinal === undefined ? [] : [{ ordinal, item }];
      });
    const podsByOrdinal = ordinals(pods, (pod) => pod.metadata?.name ?? '');
    const password = systemAccountPasswordFrom(children.get('Secret'));
    const cluster =
      replicas <= size
        ? undefined
        : password === undefined
          ? { ok: false as const, error: 'no system account password in the Secret' }
          : await this.once(`cluster of ${String(replicas)}`, () =>
              (this.deps.natsPeers?.observe ?? observeCluster)(
                { url: this.natsUrl(), password },
                replicas,
              ),
            );
    return {
      statefulSet: name,
      replicas,
      podOrdinals: podsByOrdinal.map((p) => p.ordinal),
      readyOrdinals: podsByOrdinal
        .filter(({ item }) =>
          item.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'),
        )
        .map((p) => p.ordinal),
      // Those whose deletion was not asked for yet, as listed with the pods: listing them again
      // would wait for the API server's cache a second time.
      claims: claims.flatMap((c) => (c.deleting ? [] : [{ ordinal: c.ordinal, ref: c.ref }])),
      cluster,
    };
  }

  private natsUrl(): string {
    const namespace = this.nats.metadata?.namespace ?? '';
    const name = this.nats.metadata?.name ?? '';
    return (this.deps.natsUrl ?? ((n) => this.serviceUrl(n)))({ name, namespace });
  }

  private async deletionObservations(): Promise<Observations> {
    const url = this.natsUrl();
    const customerData = await this.deps.checkCustomerData(url);
    const claims =
      customerData.kind === 'none' || customerData.kind === 'unreachable'
        ? await this.volumeClaims()
        : [];
    if (customerData.kind === 'unreachable') {
      this.log.info('NATS is unreachable; deleting without the customer-stream check', {
        url,
        error: customerData.error,
      });
    }
    return { ...this.bareObservations(), customerData, claims };
  }

  private serviceUrl(nats: { name: string; namespace: string }): string {
    return clientUrl(objectNames(nats.name), nats.namespace, this.deps.settings.clusterDomain);
  }

  /**
   * A child from its cache, else from the API: not in the cache means absent, or present
   * without our label (which the label-selected cache never sees). Undefined when absent.
   */
  private async lookup(
    child: ChildKind,
    namespace: string,
    natsName: string,
  ): Promise<KubeObject | undefined> {
    const name = child.name(natsName);
    const cached = this.deps.childCache(childKey(child))?.get(namespace, name);
    if (cached !== undefined) return cached;
    const ref = { apiVersion: child.apiVersion, kind: child.kind, namespace, name };
    return this.deps.client.get(ref, { signal: this.signal });
  }

  private async executeApply(plan: ApplyPlan, planned: Observations): Promise<ReconcileResult> {
    let observed = planned;
    // Sent first, answered alongside the children: each of these round trips is time a user
    // waits for after `kubectl apply` (bench/README.md, create). Before anything outlives the
    // resource (the StatefulSet controller's claims) the finalizer is in place.
    const finalized = plan.addFinalizer
      ? this.patchFinalizers([...(this.nats.metadata?.finalizers ?? []), NATS_FINALIZER])
      : undefined;
    // On an update what the StatefulSet reads is written first, so restarted pods read the new
    // configuration. A StatefulSet being created has no pods yet: everything goes at once.
    const waits = (w: ChildWrite): boolean =>
      w.child.consumes !== undefined && w.action !== 'create';
    const first = plan.writes.filter((w) => !waits(w));
    const then = plan.writes.filter(waits);
    await this.deleteStale(plan.stale);
    await this.removePeer(plan.scaleDown?.removePeer, observed);
    await this.stepDown(plan.scaleDown?.stepDownTo, observed);
    await this.forgetRemovedPeers(plan);
    // Before the StatefulSet is re-created: its claims must ask for the new size first.
    const claimResults = await this.growClaims(plan.storageGrowth);
    const [nats, firstResults] = await Promise.all([
      finalized,
      Promise.all(first.map((w) => this.write(w))),
    ]);
    if (nats !== undefined) this.nats = nats;
    const results = [...firstResults, ...(await Promise.all(then.map((w) => this.write(w))))];
    const zones = await this.zones;
    if (zones !== undefined) observed = { ...observed, zones };
    for (const held of plan.held) {
      this.log.info('not applied while a child it reads is not ours', {
        child: held.child.kind,
        because: held.because,
      });
    }
    if (plan.rollout.kind === 'restart') {
      const restart = await this.restartPod(plan.rollout);
      await this.report(undefined, restartEvent(plan, restart));
    }
    await this.deleteClaims(plan.scaleDown?.deleteClaims ?? []);
    const input = { nats: this.nats, settings: this.deps.settings, observed };
    const settled = settleApply(input, plan, results, claimResults);
    await this.report(settled.status, settled.events, writeEvents(results));
    const children = results.map((r) => ({
      child: describeObject(r.write.object),
      action: r.write.action,
      ...(r.ok ? {} : { error: r.error }),
    }));
    if (settled.failed.length > 0) throw new ChildrenFailedError(settled.failed);
    return { requeueAfterMs: settled.requeueAfterMs, children };
  }

  /**
   * Deletes what an earlier NATS resource of this name left, exactly those objects (a uid
   * precondition); their own dependents (the old pods) go by garbage collection. A failure is
   * logged and the recheck tries again.
   */
  private async deleteStale(stale: readonly StaleChild[]): Promise<void> {
    await Promise.all(
      stale
        .filter((s) => !s.deleting)
        .map(async ({ ref, uid }) => {
          this.deps.onWrite?.(ref.kind, 'delete');
          try {
            const deleted = await this.deps.client.delete(ref, {
              uid,
              propagationPolicy: 'Background',
              signal: this.signal,
            });
            if (deleted) {
              this.log.info('deleted a child of an earlier NATS resource', {
                child: describeObject(ref),
              });
            }
          } catch (error) {
            if (this.signal?.aborted === true) throw error;
            // Replaced meanwhile (409): the next look decides again.
            this.log.info('child of an earlier NATS resource not deleted', {
              child: describeObject(ref),
              error: errorMessage(error),
            });
          }
        }),
    );
  }

  /**
   * Deletes the pod the rollout chose, exactly that one (a uid precondition: a pod re-created
   * meanwhile under the same name is not touched); the StatefulSet re-creates it at its latest
   * revision, the pod's preStop puts the server in lame duck mode first.
   */
  private async restartPod(rollout: { pod: string; uid: string }): Promise<RestartResult> {
    const namespace = this.nats.metadata?.namespace ?? '';
    this.deps.onWrite?.('Pod', 'delete');
    try {
      const pod = { apiVersion: 'v1', kind: 'Pod', namespace, name: rollout.pod };
      if (!(await this.deps.client.delete(pod, { uid: rollout.uid, signal: this.signal }))) {
        this.log.info('pod not restarted', { pod: rollout.pod, error: 'gone already' });
        return { ok: false, error: 'the pod was gone already' };
      }
      this.log.info('restarting pod for the rollout', { pod: rollout.pod });
      return { ok: true };
    } catch (error) {
      if (this.signal?.aborted === true) throw error;
      // Gone or replaced meanwhile (404, 409): the next look decides again.
      this.log.info('pod not restarted', { pod: rollout.pod, error: errorMessage(error) });
      return { ok: false, error: errorMessage(error) };
    }
  }

  /** A failed removal is logged; the next step (requeued) looks at the cluster again. */
  private async removePeer(server: string | undefined, observed: Observations): Promise<void> {
    if (server === undefined) return;
    const password = systemAccountPasswordFrom(observed.children.get('Secret')) ?? '';
    const started = performance.now();
    const removed = await (this.deps.natsPeers?.remove ?? removePeer)(
      { url: this.natsUrl(), password },
      server,
    );
    const ms = Math.round(performance.now() - started);
    if (!removed.ok) {
      this.log.error('removing server from JetStream failed', { server, error: removed.error });
      return;
    }
    this.log.info('removed server from JetStream', { server, ms });
    // nats-server keeps a removed name out of the meta group for 5 minutes (rejoin.ts): when
    // the removal happened must outlive this process, for a scale-up that brings it back.
    const at = this.now();
    await this.storeRemovedPeers((peers) => withRemoval(peers, server, at));
  }

  /** Drops what the plan no longer needs from the record of removed peers. */
  private async forgetRemovedPeers(plan: ApplyPlan): Promise<void> {
    const record = plan.rejoin.record;
    if (record === undefined) return;
    const before = this.removedPeers();
    const dropped = [...before.keys()].filter((name) => !record.has(name));
    await this.storeRemovedPeers(
      (peers) => new Map([...peers].filter(([name]) => !dropped.includes(name))),
    );
    this.log.info('removed peers no longer tracked', { servers: dropped });
  }

  private removedPeers(): RemovedPeers {
    return parseRemovedPeers(this.nats.metadata?.annotations?.[REMOVED_PEERS_ANNOTATION]);
  }

  /**
   * Writes the record of removed peers onto the NATS resource (a compare-and-swap; on a
   * conflict the change is made again on the live object once). A failure is logged: the
   * record only explains a wait in the status, it decides nothing.
   */
  private async storeRemovedPeers(change: (peers: RemovedPeers) => RemovedPeers): Promise<void> {
    for (let attempt = 0; attempt < 2; attempt++) {
      const value = formatRemovedPeers(change(this.removedPeers())) ?? null;
      this.deps.onWrite?.(NATS_KIND, 'annotation');
      try {
        this.nats = await this.deps.client.patch<Nats>(
          natsRef(this.nats),
          {
            metadata: {
              resourceVersion: this.nats.metadata?.resourceVersion,
              annotations: { [REMOVED_PEERS_ANNOTATION]: value },
            },
          },
          { type: 'merge', signal: this.signal },
        );
        return;
      } catch (error) {
        if (this.signal?.aborted === true) throw error;
        const fresh = isApiStatus(error, 409)
          ? await this.deps.client.get<Nats>(natsRef(this.nats), { signal: this.signal })
          : undefined;
        if (fresh === undefined) {
          this.log.error('recording removed peers failed', { error: errorMessage(error) });
          return;
        }
        this.nats = fresh;
      }
    }
    this.log.error('recording removed peers failed', { error: 'the NATS resource kept changing' });
  }

  private async stepDown(preferred: string | undefined, observed: Observations): Promise<void> {
    if (preferred === undefined) return;
    const password = systemAccountPasswordFrom(observed.children.get('Secret')) ?? '';
    const asked = await (this.deps.natsPeers?.stepDown ?? stepDownMetaLeader)(
      { url: this.natsUrl(), password },
      preferred,
    );
    if (asked.ok) this.log.info('moved the JetStream meta leadership', { to: preferred });
    else this.log.error('moving the JetStream meta leadership failed', { error: asked.error });
  }

  private async deleteClaims(claims: readonly ObjectRef[]): Promise<void> {
    for (const claim of claims) {
      this.deps.onWrite?.('PersistentVolumeClaim', 'delete');
      if (await this.deps.client.delete(claim, { signal: this.signal })) {
        this.log.info('deleted volume claim', { claim: claim.name });
      }
    }
  }

  private async write(write: ChildWrite): Promise<WriteResult> {
    const { client } = this.deps;
    this.deps.onWrite?.(write.object.kind, 'apply');
    try {
      const options = { fieldManager: FIELD_MANAGER, signal: this.signal };
      if (write.action === 'recreate') return await this.deleteLeavingPods(write);
      const object =
        write.action === 'takeover'
          ? await this.takeOver(write)
          : write.action === 'replace'
            ? await this.replace(write, options)
            : await client.apply(write.object, options);
      const done = {
        create: 'created',
        replace: 'replaced',
        apply: 'applied',
        takeover: 'taken over from the legacy field manager',
      } as const;
      this.log.info(done[write.action], {
        child: describeObject(write.object),
        ...(write.drift === undefined ? {} : { drift: write.drift }),
      });
      return { write, ok: true, object };
    } catch (error) {
      // An abort is no child's failure: the whole reconcile ends.
      if (this.signal?.aborted === true) throw error;
      this.log.error('child write failed', { child: describeObject(write.object), error });
      return { write, ok: false, error: errorMessage(error) };
    }
  }

  /**
   * A full replacement, guarded by the resourceVersion the plan saw. A 409 says only that the
   * object moved on since (the StatefulSet controller writes its status right after a template
   * change): what the plan puts is the whole desired object either way, so it is put again on
   * the version a fresh read finds, a few times, rather than failing the child and showing the
   * state Error for a routine race.
   */
  private async replace(write: ChildWrite, options: WriteOptions): Promise<KubeObject> {
    const { client } = this.deps;
    let object = write.object;
    for (let attempt = 1; ; attempt++) {
      try {
        return await client.update(object, options);
      } catch (error) {
        if (!isApiStatus(error, 409) || attempt === REPLACE_ATTEMPTS) throw error;
        const fresh = await client.get(refOf(object), { signal: this.signal });
        if (fresh === undefined) throw error;
        object = replacement(write.child, write.object, fresh);
      }
    }
  }

  /**
   * Deletes the StatefulSet of a storage growth with propagationPolicy Orphan: its pods (and
   * their claims) stay and keep serving, and the StatefulSet created again adopts them. Exactly
   * the observed one (a uid precondition), and only if a fresh read still finds it standing: a
   * cache that has not yet seen the deletion must not ask for it twice, and one gone already is
   * what was wanted, not a failure that would end the growth in an Error status.
   */
  private async deleteLeavingPods(write: ChildWrite): Promise<WriteResult> {
    const live = write.live ?? write.object;
    const ref = refOf(live);
    const fresh = await this.deps.client.get(ref, { signal: this.signal });
    const standing =
      fresh !== undefined &&
      fresh.metadata.uid === live.metadata.uid &&
      fresh.metadata.deletionTimestamp === undefined;
    this.deps.onWrite?.(live.kind, 'delete');
    const deleted =
      standing &&
      (await this.deps.client.delete(ref, {
        uid: live.metadata.uid,
        propagationPolicy: 'Orphan',
        signal: this.signal,
      }));
    this.log.info(
      deleted ? 'deleted leaving its pods, to be created again' : 'being deleted already',
      { child: describeObject(live) },
    );
    return { write, ok: true, object: fresh ?? live, ...(deleted ? {} : { repeated: true }) };
  }

  /** Raises the storage request of each claim a storage growth names; refusals are reported. */
  private async growClaims(growth: ApplyPlan['storageGrowth']): Promise<ClaimResult[]> {
    const results: ClaimResult[] = [];
    for (const claim of growth?.patchClaims ?? []) {
      this.deps.onWrite?.('PersistentVolumeClaim', 'apply');
      try {
        await this.deps.client.patch(
          claim,
          { spec: { resources: { requests: { storage: growth?.size } } } },
          { type: 'merge', fieldManager: FIELD_MANAGER, signal: this.signal },
        );
        this.log.info('raised the storage request of a volume claim', {
          claim: claim.name,
          size: growth?.size,
        });
        results.push({ claim: claim.name, ok: true });
      } catch (error) {
        if (this.signal?.aborted === true) throw error;
        this.log.error('raising the storage request of a volume claim failed', {
          claim: claim.name,
          error,
        });
        results.push({ claim: claim.name, ok: false, error: errorMessage(error) });
      }
    }
    return results;
  }

  /** The NATS volume claims with what a storage growth reads of them. */
  private async observedClaims(
    natsName: string,
    reads: PodAndClaimReads,
  ): Promise<ObservedClaim[]> {
    const input = natsRenderInput(this.nats);
    const statefulSet = objectNames(natsName).statefulSet;
    const list = await this.deps.client.list<ClaimView>(
      collectionPath('v1', 'PersistentVolumeClaim', input.namespace),
      {
        labelSelector: labelSelector(selectorLabels(input)),
        fromWatchCache: reads === 'watch-cache',
        signal: this.signal,
      },
    );
    return (list.items ?? []).flatMap((claim) => {
      const name = claim.metadata.name ?? '';
      const ordinal = ordinalOf(statefulSet, name);
      if (ordinal === undefined) return [];
      const requested = claim.spec?.resources?.requests?.storage;
      const capacity = claim.status?.capacity?.storage;
      return [
        {
          ref: {
            apiVersion: 'v1',
            kind: 'PersistentVolumeClaim',
            namespace: input.namespace,
            name,
          },
          ordinal,
          ...(requested === undefined ? {} : { requested }),
          ...(capacity === undefined ? {} : { capacity }),
          bound: claim.status?.phase === 'Bound',
          fileSystemResizePending:
            claim.status?.conditions?.some(
              (c) => c.type === 'FileSystemResizePending' && c.status === 'True',
            ) === true,
          deleting: claim.metadata.deletionTimestamp !== undefined,
        },
      ];
    });
  }

  /**
   * The explicit takeover of a child the legacy field manager applied (takeover.ts): PUT our
   * rendering over it (compare-and-swap), force-apply it so our Apply entry owns every field we
   * render, then remove the legacy manager's managedFields entries. Each step is safe to repeat:
   * a failure leaves the legacy entries, and the next reconcile takes the child over again.
   */
  private async takeOver(write: ChildWrite): Promise<KubeObject> {
    const { client } = this.deps;
    const options = { fieldManager: FIELD_MANAGER, signal: this.signal };
    await client.update(write.replacement ?? write.object, options);
    this.deps.onWrite?.(write.object.kind, 'apply');
    const applied = await client.apply(write.object, options);
    const patch = legacyEntriesPatch(applied);
    if (patch === undefined) return applied;
    this.deps.onWrite?.(write.object.kind, 'apply');
    return client.patch(refOf(applied), patch, { ...options, type: 'json' });
  }

  private async executeDelete(plan: DeletePlan): Promise<ReconcileResult> {
    try {
      await this.report(plan.status, plan.events);
      await this.deleteClaims(plan.deleteClaims);
      if (plan.removeFinalizer) {
        const finalizers = (this.nats.metadata?.finalizers ?? []).filter(
          (f) => f !== NATS_FINALIZER,
        );
        await this.patchFinalizers(finalizers);
        this.log.info('finalizer removed; the children go by garbage collection');
      }
    } catch (error) {
      // Gone meanwhile (another replica finished, or the finalizer was removed by hand): done.
      if (isApiStatus(error, 404)) return {};
      throw error;
    }
    return plan.requeueAfterMs === undefined ? {} : { requeueAfterMs: plan.requeueAfterMs };
  }

  /** Writes the status (when the plan changed it), then records the events. */
  /**
   * Writes the status, then records the events. `done` are those among them of writes already
   * made: a failed status write (a conflict) still records them before the retry.
   */
  private async report(
    status: Nats['status'] | undefined,
    events: readonly NatsEvent[],
    done: readonly NatsEvent[] = [],
  ): Promise<void> {
    if (status !== undefined) {
      this.deps.onWrite?.(NATS_KIND, 'status');
      try {
        this.nats = await this.deps.client.status<Nats>(
          {
            ...this.nats,
            apiVersion: NATS_API_VERSION,
            kind: NATS_KIND,
            metadata: (this.nats.metadata ?? {}) as KubeObject['metadata'],
            status,
          },
          { signal: this.signal },
        );
      } catch (error) {
        if (this.signal?.aborted !== true) await this.recordEvents(done);
        throw error;
      }
      this.log.info('status written', { state: status.state });
    }
    await this.recordEvents(events);
  }

  private async recordEvents(events: readonly NatsEvent[]): Promise<void> {
    const target = {
      name: this.nats.metadata?.name ?? '',
      namespace: this.nats.metadata?.namespace ?? '',
      uid: this.nats.metadata?.uid ?? '',
      resourceVersion: this.nats.metadata?.resourceVersion,
    };
    for (const event of events) await this.deps.record(target, event);
  }

  /** resourceVersion makes it a compare-and-swap: a stale cache gets 409 and a retry. */
  private async patchFinalizers(finalizers: string[]): Promise<Nats> {
    this.deps.onWrite?.(NATS_KIND, 'finalizer');
    return this.deps.client.patch<Nats>(
      natsRef(this.nats),
      { metadata: { resourceVersion: this.nats.metadata?.resourceVersion, finalizers } },
      { type: 'merge', signal: this.signal },
    );
  }

  /** The NATS volume claims; they outlive the StatefulSet by design, a deleted NATS must not. */
  private async volumeClaims(): Promise<ObjectRef[]> {
    const input = natsRenderInput(this.nats);
    const list = await this.deps.client.list(
      collectionPath('v1', 'PersistentVolumeClaim', input.namespace),
      { labelSelector: labelSelector(selectorLabels(input)), signal: this.signal },
    );
    return (list.items ?? []).map((claim) =>
      refOf({ ...claim, apiVersion: 'v1', kind: 'PersistentVolumeClaim' }),
    );
  }

  /**
   * The zone of the node of each NATS pod, or undefined while any pod is unscheduled or its
   * node has no zone label (then the zone count would be a guess).
   */
  private async podZones(
    pods: readonly PodView[],
    size: number,
  ): Promise<readonly string[] | undefined> {
    const nodeNames = pods.map((pod) => pod.spec?.nodeName ?? '');
    if (nodeNames.length < size || nodeNames.includes('')) return undefined;
    const zoneOfNode = new Map<string, string>();
    for (const nodeName of new Set(nodeNames)) {
      const node = await this.deps.client.get<{ metadata?: { labels?: Record<string, string> } }>(
        { apiVersion: 'v1', kind: 'Node', name: nodeName },
        { signal: this.signal },
      );
      const zone = node?.metadata?.labels?.[ZONE_LABEL];
      if (zone === undefined) return undefined;
      zoneOfNode.set(nodeName, zone);
    }
    return nodeNames.map((nodeName) => zoneOfNode.get(nodeName) ?? '');
  }
}
