// The PodDisruptionBudget `<n>`: voluntary evictions take one server at a time.
import type { V1PodDisruptionBudget } from '@kubernetes/client-node';
import type { KubeObject } from '../base/object.ts';
import type { RenderInput } from './context.ts';
import { childMetadata, selectorLabels } from './labels.ts';
import { objectNames } from './names.ts';

export function renderPodDisruptionBudget(input: RenderInput): V1PodDisruptionBudget & KubeObject {
  return {
    apiVersion: 'policy/v1',
    kind: 'PodDisruptionBudget',
    metadata: childMetadata(input, objectNames(input.name).podDisruptionBudget),
    spec: {
      maxUnavailable: 1,
      selector: { matchLabels: selectorLabels(input) },
    },
  } satisfies V1PodDisruptionBudget;
}
