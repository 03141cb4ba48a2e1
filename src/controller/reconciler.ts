// One reconcile of one NATS resource: make the cluster match it, report what is true, and let
// it go only when no customer data would be lost.
//
// Reads come from the watch caches; the API is asked directly only for what the caches cannot
// know (an object without our label, Istio's API, pods' zones). Every write is skipped when it
// would change nothing, so a reconcile of a converged resource writes nothing.
import type { KubeConfig } from '@kubernetes/client-node';
import { defaultNatsSpec } from '../api/defaults.ts';
import {
  ConditionType,
  NATS_API_VERSION,
  NATS_FINALIZER,
  NATS_KIND,
  NatsState,
  type Nats,
  type NatsStatus,
} from '../api/nats.ts';
import {
  applyObject,
  getObject,
  isApiStatus,
  requestJson,
  resourcePath,
  type KubeObject,
} from '../kube/api.ts';
import type { Logger } from '../manager/log.ts';
import type { CustomerDataCheck } from '../nats/customer-data.ts';
import type { NatsImages } from '../render/context.ts';
import { selectorLabels } from '../render/labels.ts';
import { clientUrl, objectNames } from '../render/names.ts';
import { generateSystemAccountPassword } from '../render/password.ts';
import { natsRenderInput, renderNats } from '../render/render.ts';
import { systemAccountPasswordFrom } from '../render/secret.ts';
import { findDrift } from './drift.ts';
import type { EventRecorder, EventTarget, NatsEvent } from './events.ts';
import {
  computeNatsStatus,
  MIN_CLUSTER_SIZE,
  statusChanged,
  type ObservedStatefulSet,
  type ReconcileOutcome,
} from './status.ts';

export const FIELD_MANAGER = 'nats-manager';
const ZONE_LABEL = 'topology.kubernetes.io/zone';

/** The part of a watch cache a reconcile reads. */
export interface ObjectCache<T> {
  get(namespace: string | undefined, name: string): T | undefined;
}

export interface ReconcilerSettings {
  /** The only NATS resource served. */
  readonly natsName: string;
  readonly natsNamespace: string;
  readonly images: NatsImages;
  readonly clusterDomain: string;
  /** How soon a blocked deletion or a name conflict is looked at again (nothing watches them). */
  readonly recheckMs: number;
}

/** The writes a reconcile sends (for metrics: an idle manager sends none). */
export type WriteVerb = 'apply' | 'delete' | 'status' | 'finalizer';

export interface ReconcilerDeps {
  readonly kc: KubeConfig;
  readonly settings: ReconcilerSettings;
  readonly natsCache: ObjectCache<Nats>;
  /** The cache of a child kind, by `apiVersion/kind`; undefined when that kind is not watched. */
  readonly childCache: (apiVersionKind: string) => ObjectCache<KubeObject> | undefined;
  readonly record: EventRecorder;
  /** Whether Istio's DestinationRule API is served (then a DestinationRule is a child). */
  readonly istioPresent: () => boolean;
  readonly checkCustomerData: (url: string) => Promise<CustomerDataCheck>;
  /** Where NATS clients connect; the Service's cluster DNS name unless replaced (tests). */
  readonly natsUrl?: (nats: { name: string; namespace: string }) => string;
  /** Told of every write sent, for metrics. */
  readonly onWrite?: (kind: string, verb: WriteVerb) => void;
  readonly log: Logger;
  readonly now?: () => Date;
}

export interface ReconcileResult {
  /** Look again after this long although no watch event may come. */
  readonly requeueAfterMs?: number;
}

/** `key=value,...`, the API's equality-based label selector. */
function labelSelector(labels: Record<string, string>): string {
  return Object.entries(labels)
    .map(([key, value]) => `${key}=${value}`)
    .join(',');
}

function natsPath(namespace: string, name: string, subresource = ''): string {
  return resourcePath(NATS_API_VERSION, NATS_KIND, namespace, name) + subresource;
}

function describe(object: KubeObject): string {
  return `${object.kind} ${object.metadata.namespace ?? ''}/${object.metadata.name ?? ''}`;
}

function ownedBy(object: KubeObject, uid: string): boolean {
  const refs = (object.metadata.ownerReferences ?? []) as readonly { uid?: string }[];
  return refs.some((ref) => ref.uid === uid);
}

interface Target extends EventTarget {
  readonly nats: Nats;
  readonly log: Logger;
}

/** Runs reconciles; the deps hold the caches and the clients. */
export class NatsReconciler {
  private readonly deps: ReconcilerDeps;

  constructor(deps: ReconcilerDeps) {
    this.deps = deps;
  }

  async reconcile(namespace: string, name: string): Promise<ReconcileResult> {
    const nats = this.deps.natsCache.get(namespace, name);
    // Gone: its children go by garbage collection.
    if (nats === undefined) return {};
    const uid = nats.metadata?.uid ?? '';
    const target: Target = {
      nats,
      name,
      namespace,
      uid,
      resourceVersion: nats.metadata?.resourceVersion,
      log: this.deps.log.with({ nats: `${namespace}/${name}` }),
    };
    const { settings } = this.deps;
    if (name !== settings.natsName || namespace !== settings.natsNamespace) {
      if (nats.metadata?.deletionTimestamp !== undefined) return {};
      await this.writeStatus(target, {
        kind: 'forbidden',
        message:
          `The NATS Manager serves only one NATS resource, ${settings.natsNamespace}/` +
          `${settings.natsName}; this one is not reconciled. Delete it.`,
      });
      return {};
    }
    if (nats.metadata?.deletionTimestamp !== undefined) return this.delete(target);
    return this.apply(target);
  }

  private async apply(target: Target): Promise<ReconcileResult> {
    const withFinalizer = await this.ensureFinalizer(target);
    const current: Target = {
      ...target,
      nats: withFinalizer,
      resourceVersion: withFinalizer.metadata?.resourceVersion,
    };
    const input = natsRenderInput(withFinalizer);
    const existingSecret = await this.lookup(
      'v1',
      'Secret',
      input.namespace,
      objectNames(input.name).secret,
    );
    const keptPassword =
      existingSecret !== undefined && ownedBy(existingSecret, current.uid)
        ? systemAccountPasswordFrom(existingSecret)
        : undefined;
    const desired = renderNats(input, {
      istioPresent: this.deps.istioPresent(),
      systemAccountPassword: keptPassword ?? generateSystemAccountPassword(),
      images: this.deps.settings.images,
      clusterDomain: this.deps.settings.clusterDomain,
    });

    const conflicts: string[] = [];
    let statefulSet: ObservedStatefulSet | undefined;
    try {
      for (const object of desired) {
        const result = await this.applyChild(current, object);
        if (result === 'conflict') conflicts.push(describe(object));
        else if (object.kind === 'StatefulSet') statefulSet = result as ObservedStatefulSet;
      }
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      await this.writeStatus(current, { kind: 'failed', message: `Failed to apply: ${message}` });
      throw error;
    }
    if (conflicts.length > 0) {
      const message =
        `${conflicts.join(', ')} already exist${conflicts.length === 1 ? 's' : ''} and ` +
        `${conflicts.length === 1 ? 'is' : 'are'} not owned by this NATS resource; the manager ` +
        'does not take over objects it did not create. Delete or rename them.';
      await this.writeStatus(current, { kind: 'failed', message });
      await this.deps.record(current, { type: 'Warning', reason: 'NameConflict', message });
      return { requeueAfterMs: this.deps.settings.recheckMs };
    }
    const zones =
      statefulSet !== undefined && input.spec.cluster.size >= MIN_CLUSTER_SIZE
        ? await this.podZones(input.namespace, selectorLabels(input), input.spec.cluster.size)
        : undefined;
    await this.writeStatus(current, { kind: 'applied' }, { statefulSet, zones });
    return {};
  }

  /**
   * Applies one child when it differs from the live object. Returns the object as it now is,
   * or 'conflict' when an object of that name exists that is not ours.
   */
  private async applyChild(target: Target, desired: KubeObject): Promise<KubeObject | 'conflict'> {
    const { namespace = target.namespace, name = '' } = desired.metadata;
    const live = await this.lookup(desired.apiVersion, desired.kind, namespace, name);
    if (live !== undefined && !ownedBy(live, target.uid)) return 'conflict';
    const drift = live === undefined ? undefined : findDrift(desired, live, FIELD_MANAGER);
    if (live !== undefined && drift === undefined) return live;

    this.deps.onWrite?.(desired.kind, 'apply');
    const applied = await applyObject(this.deps.kc, desired, { fieldManager: FIELD_MANAGER });
    target.log.info(live === undefined ? 'created' : 'applied', {
      child: describe(desired),
      ...(drift === undefined ? {} : { drift }),
    });
    await this.deps.record(target, this.childEvent(target, desired, live === undefined, drift));
    return applied;
  }

  /**
   * The event for a child write. When the resource's spec is the one last reconciled, the
   * child changed under us: that is a restore, and the event says so.
   */
  private childEvent(
    target: Target,
    desired: KubeObject,
    created: boolean,
    drift: string | undefined,
  ): NatsEvent {
    const status = target.nats.status;
    const specUnchanged =
      status?.observedGeneration !== undefined &&
      status.observedGeneration === target.nats.metadata?.generation;
    if (created) {
      return specUnchanged && status.state !== undefined
        ? {
            type: 'Warning',
            reason: 'Restored',
            message: `Recreated ${desired.kind} ${desired.metadata.name ?? ''}, which was deleted.`,
          }
        : {
            type: 'Normal',
            reason: 'Created',
            message: `Created ${desired.kind} ${desired.metadata.name ?? ''}.`,
          };
    }
    return specUnchanged
      ? {
          type: 'Warning',
          reason: 'Restored',
          message: `Restored ${desired.kind} ${desired.metadata.name ?? ''}: ${drift ?? ''} was changed outside the NATS resource.`,
        }
      : {
          type: 'Normal',
          reason: 'Updated',
          message: `Updated ${desired.kind} ${desired.metadata.name ?? ''} (${drift ?? ''}).`,
        };
  }

  private async delete(target: Target): Promise<ReconcileResult> {
    const finalizers = target.nats.metadata?.finalizers ?? [];
    if (!finalizers.includes(NATS_FINALIZER)) return {};
    const url = (this.deps.natsUrl ?? this.serviceUrl.bind(this))(target);
    const check = await this.deps.checkCustomerData(url);
    if (check.kind === 'blocked' || check.kind === 'error') {
      const message =
        check.kind === 'blocked'
          ? check.message
          : `Cannot delete NATS cluster: checking it for customer streams failed: ${check.error}`;
      // Written only when it changes: a deletion blocked for hours writes nothing on rechecks.
      await this.writeStatus(target, { kind: 'deletionBlocked', message });
      return { requeueAfterMs: this.deps.settings.recheckMs };
    }
    if (check.kind === 'unreachable') {
      target.log.info('NATS is unreachable; deleting without the customer-stream check', {
        url,
        error: check.error,
      });
    }
    const latest = await this.writeStatus(target, { kind: 'deleting' });
    await this.deleteVolumeClaims(target);
    await this.patchFinalizers(
      latest,
      finalizers.filter((f) => f !== NATS_FINALIZER),
    );
    target.log.info('finalizer removed; the children go by garbage collection');
    return {};
  }

  private serviceUrl(nats: { name: string; namespace: string }): string {
    return clientUrl(objectNames(nats.name), nats.namespace, this.deps.settings.clusterDomain);
  }

  /** The StatefulSet's claims outlive it by design; a deleted NATS must not leave them behind. */
  private async deleteVolumeClaims(target: Target): Promise<void> {
    const input = natsRenderInput(target.nats);
    const list = (await requestJson(this.deps.kc, {
      method: 'GET',
      path: `/api/v1/namespaces/${target.namespace}/persistentvolumeclaims`,
      query: { labelSelector: labelSelector(selectorLabels(input)) },
    })) as { items?: KubeObject[] };
    for (const claim of list.items ?? []) {
      const claimName = claim.metadata.name ?? '';
      this.deps.onWrite?.('PersistentVolumeClaim', 'delete');
      try {
        await requestJson(this.deps.kc, {
          method: 'DELETE',
          path: `/api/v1/namespaces/${target.namespace}/persistentvolumeclaims/${claimName}`,
        });
        target.log.info('deleted volume claim', { claim: claimName });
      } catch (error) {
        if (!isApiStatus(error, 404)) throw error;
      }
    }
  }

  private async ensureFinalizer(target: Target): Promise<Nats> {
    const finalizers = target.nats.metadata?.finalizers ?? [];
    if (finalizers.includes(NATS_FINALIZER)) return target.nats;
    return this.patchFinalizers(target.nats, [...finalizers, NATS_FINALIZER]);
  }

  /** resourceVersion makes it a compare-and-swap: a stale cache gets 409 and a retry. */
  private async patchFinalizers(nats: Nats, finalizers: string[]): Promise<Nats> {
    const { name = '', namespace = '', resourceVersion } = nats.metadata ?? {};
    this.deps.onWrite?.(NATS_KIND, 'finalizer');
    return (await requestJson(this.deps.kc, {
      method: 'PATCH',
      path: natsPath(namespace, name),
      body: { metadata: { resourceVersion, finalizers } },
      contentType: 'application/merge-patch+json',
    })) as Nats;
  }

  /**
   * Writes the status when it changed; returns the resource as now stored, so that a write
   * after it carries the current resourceVersion instead of meeting a conflict.
   */
  private async writeStatus(
    target: Target,
    outcome: ReconcileOutcome,
    observed: { statefulSet?: ObservedStatefulSet; zones?: readonly string[] } = {},
  ): Promise<Nats> {
    const { nats } = target;
    const previous = nats.status;
    const next = computeNatsStatus({
      nats: {
        name: target.name,
        namespace: target.namespace,
        generation: nats.metadata?.generation,
        deleting: nats.metadata?.deletionTimestamp !== undefined,
      },
      previous,
      now: (this.deps.now ?? (() => new Date()))(),
      clusterDomain: this.deps.settings.clusterDomain,
      outcome,
      statefulSet: observed.statefulSet,
      zones: observed.zones,
      size: natsSize(nats),
    });
    if (!statusChanged(previous, next)) return nats;
    this.deps.onWrite?.(NATS_KIND, 'status');
    const written = (await requestJson(this.deps.kc, {
      method: 'PUT',
      path: natsPath(target.namespace, target.name, '/status'),
      body: { ...nats, apiVersion: NATS_API_VERSION, kind: NATS_KIND, status: next },
    })) as Nats;
    target.log.info('status written', { state: next.state });
    if (previous?.state !== next.state || outcome.kind === 'deletionBlocked') {
      await this.deps.record(target, stateEvent(next, outcome));
    }
    return written;
  }

  /**
   * A child from its cache, else from the API: not in the cache means absent, or present
   * without our label (which the label-selected cache never sees). Undefined when absent.
   */
  private async lookup(
    apiVersion: string,
    kind: string,
    namespace: string,
    name: string,
  ): Promise<KubeObject | undefined> {
    const cached = this.deps.childCache(`${apiVersion}/${kind}`)?.get(namespace, name);
    return cached ?? getObject(this.deps.kc, resourcePath(apiVersion, kind, namespace, name));
  }

  /**
   * The zone of the node of each NATS pod, or undefined while any pod is unscheduled or its
   * node has no zone label (then the zone count would be a guess).
   */
  private async podZones(
    namespace: string,
    selector: Record<string, string>,
    size: number,
  ): Promise<readonly string[] | undefined> {
    const pods = (await requestJson(this.deps.kc, {
      method: 'GET',
      path: `/api/v1/namespaces/${namespace}/pods`,
      query: { labelSelector: labelSelector(selector) },
    })) as { items?: { spec?: { nodeName?: string } }[] };
    const nodeNames = (pods.items ?? []).map((pod) => pod.spec?.nodeName ?? '');
    if (nodeNames.length < size || nodeNames.includes('')) return undefined;
    const zoneOfNode = new Map<string, string>();
    for (const nodeName of new Set(nodeNames)) {
      const node = await getObject<{ metadata?: { labels?: Record<string, string> } }>(
        this.deps.kc,
        `/api/v1/nodes/${nodeName}`,
      );
      const zone = node?.metadata?.labels?.[ZONE_LABEL];
      if (zone === undefined) return undefined;
      zoneOfNode.set(nodeName, zone);
    }
    return nodeNames.map((nodeName) => zoneOfNode.get(nodeName) ?? '');
  }
}

function natsSize(nats: Nats): number {
  return defaultNatsSpec(nats.spec).cluster.size;
}

function stateEvent(status: NatsStatus, outcome: ReconcileOutcome): NatsEvent {
  const deleted = status.conditions?.find((c) => c.type === ConditionType.Deleted);
  const available = status.conditions?.find((c) => c.type === ConditionType.Available);
  const message =
    outcome.kind === 'deletionBlocked'
      ? (deleted?.message ?? '')
      : status.state === NatsState.Deleting
        ? 'The NATS resource is being deleted.'
        : (available?.message ?? '');
  const warning = status.state === NatsState.Error || status.state === NatsState.Warning;
  return {
    type: warning ? 'Warning' : 'Normal',
    reason: outcome.kind === 'deletionBlocked' ? 'DeletionBlocked' : (status.state ?? 'Unknown'),
    message,
  };
}
