// The headless Service `<n>`: stable DNS names for the pods (cluster routes, client URL).
import type { V1Service } from '@kubernetes/client-node';
import type { KubeObject } from '../base/object.ts';
import type { RenderInput } from './context.ts';
import { SERVICE_ANNOTATIONS, childMetadata, selectorLabels } from './labels.ts';
import { objectNames } from './names.ts';
import { PORTS } from './nats-conf.ts';

// appProtocol tells Istio what it cannot sniff: NATS is server-first (the server speaks first,
// with INFO), so protocol detection, which waits for the client's bytes, would stall it.
export const SERVICE_PORTS: readonly { name: string; port: number; appProtocol: string }[] = [
  { name: 'client', port: PORTS.client, appProtocol: 'tcp' },
  { name: 'cluster', port: PORTS.cluster, appProtocol: 'tcp' },
  { name: 'monitor', port: PORTS.monitor, appProtocol: 'http' },
  { name: 'metrics', port: PORTS.metrics, appProtocol: 'http' },
  { name: 'leafnodes', port: PORTS.leafnodes, appProtocol: 'tcp' },
  { name: 'gateways', port: PORTS.gateways, appProtocol: 'tcp' },
];

export function renderService(input: RenderInput): V1Service & KubeObject {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: childMetadata(input, objectNames(input.name).service, SERVICE_ANNOTATIONS),
    spec: {
      clusterIP: 'None',
      // Routes need every peer's DNS name while the cluster forms, before any pod is ready.
      publishNotReadyAddresses: true,
      selector: selectorLabels(input),
      ports: SERVICE_PORTS.map((port) => ({ ...port, protocol: 'TCP', targetPort: port.port })),
    },
  } satisfies V1Service;
}
