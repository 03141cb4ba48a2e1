// What the plan tests start from: the manager's settings for the production resource, and the
// children it renders for a resource, as the caches would hold them before any write.
import type { Nats } from '../../src/api/nats.ts';
import type { KubeObject } from '../../src/base/object.ts';
import type { PlanSettings } from '../../src/controller/plan.ts';
import { DEFAULT_IMAGES } from '../../src/render/context.ts';
import { natsRenderInput, renderNats } from '../../src/render/render.ts';

export const PLAN_SETTINGS: PlanSettings = {
  natsName: 'eventing-nats',
  natsNamespace: 'kyma-system',
  images: DEFAULT_IMAGES,
  clusterDomain: 'cluster.local',
  recheckMs: 10_000,
};

/** The children of `resource`, with the given system-account password. */
export function renderedChildren(
  resource: Nats,
  systemAccountPassword: string,
  istioPresent = false,
): KubeObject[] {
  return renderNats(natsRenderInput(resource), {
    istioPresent,
    systemAccountPassword,
    images: DEFAULT_IMAGES,
    clusterDomain: 'cluster.local',
  });
}
