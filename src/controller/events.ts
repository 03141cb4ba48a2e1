// Kubernetes Events on a NATS resource, for what `kubectl describe nats` should tell: state
// transitions, children created or put back, deletion blocked. Only notable transitions are
// recorded, so an idle manager writes none.
import { NATS_API_VERSION, NATS_KIND } from '../api/nats.ts';
import { kubeTime, type KubeObject } from '../base/object.ts';
import type { KubeClient } from '../kube/client.ts';
import type { Logger } from '../base/log.ts';

export type EventType = 'Normal' | 'Warning';

export interface EventTarget {
  readonly name: string;
  readonly namespace: string;
  readonly uid: string;
  readonly resourceVersion?: string;
}

export interface NatsEvent {
  readonly type: EventType;
  /** UpperCamelCase, what happened: `Ready`, `Restored`, `DeletionBlocked`. */
  readonly reason: string;
  readonly message: string;
}

export type EventRecorder = (target: EventTarget, event: NatsEvent) => Promise<void>;

export const EVENT_SOURCE = 'nats-manager';

/** A v1 Event; the name is unique per occurrence, as client-go's recorder makes them. */
export function buildEvent(
  target: EventTarget,
  event: NatsEvent,
  now: Date,
  instance: string,
): KubeObject {
  const time = kubeTime(now);
  return {
    apiVersion: 'v1',
    kind: 'Event',
    metadata: {
      name: `${target.name}.${now.getTime().toString(16)}${Math.floor(Math.random() * 0xffff).toString(16)}`,
      namespace: target.namespace,
    },
    involvedObject: {
      apiVersion: NATS_API_VERSION,
      kind: NATS_KIND,
      name: target.name,
      namespace: target.namespace,
      uid: target.uid,
      ...(target.resourceVersion === undefined ? {} : { resourceVersion: target.resourceVersion }),
    },
    type: event.type,
    reason: event.reason,
    message: event.message,
    source: { component: EVENT_SOURCE },
    reportingComponent: EVENT_SOURCE,
    reportingInstance: instance,
    firstTimestamp: time,
    lastTimestamp: time,
    count: 1,
  };
}

/**
 * Records events through the API. An event that cannot be written is logged and dropped: it
 * informs, and must never fail or repeat a reconcile.
 */
export function apiEventRecorder(client: KubeClient, instance: string, log: Logger): EventRecorder {
  return async (target, event) => {
    try {
      // Short: an event that cannot be written soon is not worth holding a reconcile for.
      await client.create(buildEvent(target, event, new Date(), instance), { timeoutMs: 5_000 });
    } catch (error) {
      log.error('could not record event', { reason: event.reason, error });
    }
  };
}
