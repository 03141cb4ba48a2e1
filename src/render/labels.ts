// Labels, annotations and the ownerReference that every child of a NATS resource carries.
//
// Everything here is computed from the render input alone and never merged with what a child
// already has: the shell applies the full desired object with server-side apply, so a label or
// annotation removed from the spec disappears from the children (upstream kept them forever).
import type { V1ObjectMeta, V1OwnerReference } from '@kubernetes/client-node';
import { MANAGED_BY_LABEL, MANAGED_BY_VALUE, NATS_API_VERSION, NATS_KIND } from '../api/nats.ts';
import type { KubeObject } from '../kube/api.ts';
import type { RenderInput } from './context.ts';
import { objectNames } from './names.ts';

export const NAME_LABEL = 'app.kubernetes.io/name';
export const NAME_VALUE = 'nats';
export const INSTANCE_LABEL = 'app.kubernetes.io/instance';

export type StringMap = Record<string, string>;

/** Sorted keys, so that equal maps written in another order render identically. */
function sorted(map: StringMap): StringMap {
  return Object.fromEntries(Object.entries(map).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

/**
 * The labels that select the pods of one NATS cluster. StatefulSet selectors and volume claim
 * templates are immutable, so this set is fixed by the base name and never includes user labels.
 */
export function selectorLabels(input: RenderInput): StringMap {
  return sorted({
    [NAME_LABEL]: NAME_VALUE,
    [INSTANCE_LABEL]: objectNames(input.name).base,
  });
}

/** Selector labels plus managed-by: what the operator needs, nothing a user can change. */
export function operatorLabels(input: RenderInput): StringMap {
  return sorted({ ...selectorLabels(input), [MANAGED_BY_LABEL]: MANAGED_BY_VALUE });
}

/**
 * The labels of every child: the spec's labels, then the operator's on top. Ours win because the
 * operator's cache only sees objects labelled managed-by, and Services, the PDB and the
 * StatefulSet find their pods by the name and instance labels; a user value there would hide
 * the object from the operator or cut the pods off from their selectors.
 */
export function childLabels(input: RenderInput): StringMap {
  return sorted({ ...input.spec.labels, ...operatorLabels(input) });
}

/** The spec's annotations; the operator adds none of its own. */
export function childAnnotations(input: RenderInput): StringMap {
  return sorted({ ...input.spec.annotations });
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
export function labelsAndAnnotations(input: RenderInput): {
  labels: StringMap;
  annotations?: StringMap;
} {
  const annotations = childAnnotations(input);
  return {
    labels: childLabels(input),
    ...(Object.keys(annotations).length > 0 ? { annotations } : {}),
  };
}

/** metadata of a child: fits both the client's typed models and KubeObject. */
export type ChildMetadata = KubeObject['metadata'] &
  V1ObjectMeta & { name: string; namespace: string; labels: StringMap };

/** metadata of a namespaced child named `name`. */
export function childMetadata(input: RenderInput, name: string): ChildMetadata {
  return {
    name,
    namespace: input.namespace,
    ...labelsAndAnnotations(input),
    ownerReferences: [ownerReference(input)],
  };
}
