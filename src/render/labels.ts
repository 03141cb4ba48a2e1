// Labels, annotations and the ownerReference that every child of a NATS resource carries.
//
// Everything here is computed from the render input alone and never merged with what a child
// already has: the shell applies the full desired object with server-side apply, so a label or
// annotation removed from the spec disappears from the children (upstream kept them forever).
import type { V1ObjectMeta, V1OwnerReference } from '@kubernetes/client-node';
import { MANAGED_BY_LABEL, MANAGED_BY_VALUE, NATS_API_VERSION, NATS_KIND } from '../api/nats.ts';
import type { KubeObject } from '../base/object.ts';
import type { RenderInput } from './context.ts';
import { objectNames } from './names.ts';
import { PORTS } from './nats-conf.ts';

export const NAME_LABEL = 'app.kubernetes.io/name';
export const NAME_VALUE = 'nats';
export const INSTANCE_LABEL = 'app.kubernetes.io/instance';
export const DASHBOARD_LABEL = 'kyma-project.io/dashboard';
export const DASHBOARD_VALUE = 'eventing';
/** The pod label the Go manager's troubleshooting selects on: `-l nats_cluster=<object name>`. */
export const CLUSTER_LABEL = 'nats_cluster';
/**
 * The Go manager's chart label. We render without Helm, but keep it: it is on the Go manager's
 * pod template, and a pod template that differs would restart every pod on takeover.
 */
export const CHART_LABEL = 'helm.sh/chart';
export const CHART_VALUE = 'nats-0.17.3';

const MANAGER = 'nats-manager';

/** Labels the Go manager puts on every object; kept so that a takeover changes nothing. */
export const COMMON_LABELS: Readonly<StringMap> = {
  'app.kubernetes.io/component': MANAGER,
  'app.kubernetes.io/created-by': MANAGER,
  [MANAGED_BY_LABEL]: MANAGED_BY_VALUE,
  'app.kubernetes.io/part-of': MANAGER,
  'control-plane': MANAGER,
  [CHART_LABEL]: CHART_VALUE,
};

/** Pod annotations of the Go manager: scraped through the Service, never meshed. */
export const POD_ANNOTATIONS: Readonly<StringMap> = {
  'prometheus.io/scrape': 'false',
  'sidecar.istio.io/inject': 'false',
};

/** Service annotations of the Go manager: Prometheus scrapes the exporter through it. */
export const SERVICE_ANNOTATIONS: Readonly<StringMap> = {
  'prometheus.io/scrape': 'true',
  'prometheus.io/port': String(PORTS.metrics),
};

export type StringMap = Record<string, string>;

/** Sorted keys, so that equal maps written in another order render identically. */
function sorted(map: StringMap): StringMap {
  // Keys in code-unit order (sort()'s default). Built key by key: the admission webhooks render
  // every child per request, and entries/fromEntries was their largest single cost.
  const result: StringMap = {};
  for (const key of Object.keys(map).sort()) result[key] = map[key] ?? '';
  return result;
}

/**
 * The instance label value: the Go manager's Helm release is `eventing` for the production
 * resource `eventing-nats`, and the resource's own name for any other.
 */
export function instanceValue(crName: string): string {
  return crName === 'eventing-nats' ? 'eventing' : crName;
}

/**
 * The labels that select the pods of one NATS cluster, the Go manager's exactly: StatefulSet
 * selectors are immutable, so a takeover of its StatefulSet needs the same set. Never includes
 * user labels.
 */
export function selectorLabels(input: RenderInput): StringMap {
  return sorted({
    [NAME_LABEL]: NAME_VALUE,
    [INSTANCE_LABEL]: instanceValue(input.name),
    [DASHBOARD_LABEL]: DASHBOARD_VALUE,
  });
}

/** Selector labels plus managed-by: what the operator needs, nothing a user can change. */
export function operatorLabels(input: RenderInput): StringMap {
  return sorted({ ...selectorLabels(input), [MANAGED_BY_LABEL]: MANAGED_BY_VALUE });
}

/**
 * The labels of every child: the spec's labels, then the operator's on top (the common labels
 * and the selector labels). Ours win because the operator's cache only sees objects labelled
 * managed-by, and Services, the PDB and the StatefulSet find their pods by the selector labels;
 * a user value there would hide the object from the operator or cut the pods off.
 */
export function childLabels(input: RenderInput): StringMap {
  return sorted({ ...input.spec.labels, ...COMMON_LABELS, ...selectorLabels(input) });
}

/** The labels of the pods: a child's, plus the cluster label the Go manager's docs select on. */
export function podLabels(input: RenderInput): StringMap {
  return sorted({ ...childLabels(input), [CLUSTER_LABEL]: objectNames(input.name).base });
}

/** The spec's annotations, then `own` on top (the operator's own keys win). */
export function childAnnotations(input: RenderInput, own: StringMap = {}): StringMap {
  return sorted({ ...input.spec.annotations, ...own });
}

export function ownerReference(input: RenderInput): V1OwnerReference {
  return {
    apiVersion: NATS_API_VERSION,
    kind: NATS_KIND,
    name: input.name,
    uid: input.uid,
    controller: true,
    blockOwnerDeletion: true,
  };
}

/** Labels, and annotations only when there are any (an empty map says nothing). */
export function labelsAndAnnotations(
  input: RenderInput,
  own: StringMap = {},
): { labels: StringMap; annotations?: StringMap } {
  const annotations = childAnnotations(input, own);
  return {
    labels: childLabels(input),
    ...(Object.keys(annotations).length > 0 ? { annotations } : {}),
  };
}

/** metadata of the StatefulSet's pod template. */
export function podTemplateMetadata(input: RenderInput): {
  labels: StringMap;
  annotations: StringMap;
} {
  return { labels: podLabels(input), annotations: childAnnotations(input, POD_ANNOTATIONS) };
}

/** metadata of a child: fits both the client's typed models and KubeObject. */
export type ChildMetadata = KubeObject['metadata'] &
  V1ObjectMeta & { name: string; namespace: string; labels: StringMap };

/** metadata of a namespaced child named `name`, with the operator's own annotations `own`. */
export function childMetadata(
  input: RenderInput,
  name: string,
  own: StringMap = {},
): ChildMetadata {
  return {
    name,
    namespace: input.namespace,
    ...labelsAndAnnotations(input, own),
    ownerReferences: [ownerReference(input)],
  };
}
