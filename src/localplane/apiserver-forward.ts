// Pods reach the API server as in a cluster: through the `kubernetes` Service (10.96.0.1:443).
// The plane's kube-apiserver listens on loopback only, so the node forwards the bridge's address
// (the gateway every pod routes through) to it, and the `kubernetes` Service's endpoints name
// that address: kube-proxy then carries a pod's 10.96.0.1:443 to the API server. TCP only: TLS
// and the service account tokens go end to end. Nothing outside the host sees the bridge.
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { planeRequest, type TlsClient } from './http.ts';

const FIELD_MANAGER = 'nats-manager-localplane';

export interface ApiServerForward {
  readonly address: string;
  readonly port: number;
  close(): Promise<void>;
}

/** Listens on `address:port` and pipes every connection to 127.0.0.1:port. */
export async function forwardApiServer(address: string, port: number): Promise<ApiServerForward> {
  const sockets = new Set<Socket>();
  // Half-open allowed on both sides: an end from one side reaches the other through the pipe, and
  // what is still on its way back is delivered before either socket closes.
  const server: Server = createServer({ allowHalfOpen: true }, (client) => {
    const upstream = createConnection({ host: '127.0.0.1', port, allowHalfOpen: true });
    sockets.add(client).add(upstream);
    const end = (): void => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, address, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return {
    address,
    port,
    close: () =>
      new Promise((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => {
          resolve();
        });
      }),
  };
}

/** What the API server's own endpoint reconciler would write: the address pods reach it at. */
export function kubernetesEndpointObjects(
  address: string,
  port: number,
): Record<string, unknown>[] {
  return [
    {
      apiVersion: 'v1',
      kind: 'Endpoints',
      metadata: {
        name: 'kubernetes',
        namespace: 'default',
        // As the API server marks its own: the EndpointSlice below is not mirrored from this.
        labels: { 'endpointslice.kubernetes.io/skip-mirror': 'true' },
      },
      subsets: [
        { addresses: [{ ip: address }], ports: [{ name: 'https', port, protocol: 'TCP' }] },
      ],
    },
    {
      apiVersion: 'discovery.k8s.io/v1',
      kind: 'EndpointSlice',
      metadata: {
        name: 'kubernetes',
        namespace: 'default',
        labels: {
          'kubernetes.io/service-name': 'kubernetes',
          'endpointslice.kubernetes.io/managed-by': 'localplane.nats-manager.io',
        },
      },
      addressType: 'IPv4',
      endpoints: [{ addresses: [address], conditions: { ready: true } }],
      ports: [{ name: 'https', port, protocol: 'TCP' }],
    },
  ];
}

/** Applies the `kubernetes` Service's endpoints (server-side apply, as the plane's admin). */
export async function publishKubernetesEndpoints(
  server: string,
  tls: TlsClient,
  address: string,
  port: number,
): Promise<void> {
  for (const object of kubernetesEndpointObjects(address, port)) {
    const path =
      object.kind === 'Endpoints'
        ? '/api/v1/namespaces/default/endpoints/kubernetes'
        : '/apis/discovery.k8s.io/v1/namespaces/default/endpointslices/kubernetes';
    const res = await planeRequest(
      `${server}${path}?fieldManager=${FIELD_MANAGER}&force=true`,
      tls,
      {
        method: 'PATCH',
        body: object,
        contentType: 'application/apply-patch+yaml',
      },
    );
    if (res.status >= 300)
      throw new Error(`applying the kubernetes ${String(object.kind)}: ${res.body}`);
  }
}
