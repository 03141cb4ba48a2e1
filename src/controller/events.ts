// Kubernetes Events on a NATS resource, for what `kubectl describe nats` should tell: state
// transitions, children created or put back, deletion blocked. Only notable transitions are
// recorded, so an idle manager writes none.
import type { KubeConfig } from '@kubernetes/client-node';
import { NATS_API_VERSION, NATS_KIND } from '../api/nats.ts';
import { kubeTime, requestJson } from '../kube/api.ts';
import type { Logger } from '../manager/log.ts';

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
): Record<string, unknown> {
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
export function apiEventRecorder(kc: KubeConfig, instance: string, log: Logger): EventRecorder {
  return async (target, event) => {
    try {
      await requestJson(kc, {
        method: 'POST',
        path: `/api/v1/namespaces/${target.namespace}/events`,
        body: buildEvent(target, event, new Date(), instance),
      });
    } catch (error) {
      log.error('could not record event', { reason: event.reason, error });
    }
  };
}
