// The Istio DestinationRule `<n>`, rendered only where Istio's API exists. Meshed clients would
// otherwise originate mutual TLS towards the NATS pods; NATS speaks its own protocol on plain
// TCP, so TLS is turned off for this host.
import type { KubeObject } from '../base/object.ts';
import type { RenderContext, RenderInput } from './context.ts';
import { childMetadata, type ChildMetadata } from './labels.ts';
import { objectNames } from './names.ts';

export const DESTINATION_RULE_API_VERSION = 'networking.istio.io/v1';

/** The part of networking.istio.io/v1 DestinationRule that this operator writes. */
export interface DestinationRule extends KubeObject {
  apiVersion: typeof DESTINATION_RULE_API_VERSION;
  kind: 'DestinationRule';
  metadata: ChildMetadata;
  spec: {
    host: string;
    trafficPolicy: { tls: { mode: 'DISABLE' } };
  };
}

export function renderDestinationRule(input: RenderInput, context: RenderContext): DestinationRule {
  const names = objectNames(input.name);
  return {
    apiVersion: DESTINATION_RULE_API_VERSION,
    kind: 'DestinationRule',
    metadata: childMetadata(input, names.destinationRule),
    spec: {
      host: `${names.service}.${input.namespace}.svc.${context.clusterDomain}`,
      trafficPolicy: { tls: { mode: 'DISABLE' } },
    },
  };
}
