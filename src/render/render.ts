// Everything one NATS resource should produce in the cluster, as a pure function of the resource
// and the render context.
import { defaultNatsSpec } from '../api/defaults.ts';
import type { Nats } from '../api/nats.ts';
import type { KubeObject } from '../base/object.ts';
import { renderedChildKinds } from './children.ts';
import type { RenderContext, RenderInput } from './context.ts';

/**
 * The desired children, in the order to apply them (the order of CHILD_KINDS). The
 * DestinationRule only when Istio's API exists.
 */
export function renderNats(input: RenderInput, context: RenderContext): KubeObject[] {
  // Istio's DestinationRule is the only kind that follows a CRD.
  return renderedChildKinds(() => context.istioPresent).map((child) =>
    child.render(input, context),
  );
}

/**
 * The render input of a NATS resource as read from the API: its identity and its spec with
 * every default applied.
 * @throws Error when metadata.name, namespace or uid is missing (a resource not yet stored).
 */
export function natsRenderInput(resource: Nats): RenderInput {
  const { name, namespace, uid } = resource.metadata ?? {};
  const missing = Object.entries({ name, namespace, uid })
    .filter(([, value]) => value === undefined || value === '')
    .map(([field]) => `metadata.${field}`);
  if (name === undefined || namespace === undefined || uid === undefined || missing.length > 0) {
    throw new Error(
      `cannot render NATS ${namespace ?? '?'}/${name ?? '?'}: ${missing.join(', ')} missing`,
    );
  }
  return { name, namespace, uid, spec: defaultNatsSpec(resource.spec) };
}
