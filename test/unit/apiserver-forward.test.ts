// The node's forward from the bridge address to the loopback-only API server, and the endpoints
// that send the `kubernetes` Service there. 127.0.0.2 stands in for the bridge address here.
import { createConnection, createServer, type AddressInfo } from 'node:net';
import {
  forwardApiServer,
  kubernetesEndpointObjects,
} from '../../src/localplane/apiserver-forward.ts';

describe('the API server forward for pods', () => {
  it('carries a connection to the same port on loopback, both ways', async () => {
    const upstream = createServer((socket) => socket.pipe(socket));
    await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
    const { port } = upstream.address() as AddressInfo;
    const forward = await forwardApiServer('127.0.0.2', port);
    try {
      const echoed = await new Promise<string>((resolve, reject) => {
        const client = createConnection({ host: '127.0.0.2', port }, () => client.end('hello'));
        let data = '';
        client.on('data', (chunk: Buffer) => (data += chunk.toString()));
        client.on('end', () => {
          resolve(data);
        });
        client.on('error', reject);
      });
      expect(echoed).toBe('hello');
    } finally {
      await forward.close();
      await new Promise((resolve) => upstream.close(resolve));
    }
  });

  it('publishes the address as the endpoints of the kubernetes Service, not mirrored twice', () => {
    const [endpoints, slice] = kubernetesEndpointObjects('10.244.0.1', 6443);
    expect(endpoints).toMatchObject({
      kind: 'Endpoints',
      metadata: { name: 'kubernetes', namespace: 'default' },
      subsets: [{ addresses: [{ ip: '10.244.0.1' }], ports: [{ name: 'https', port: 6443 }] }],
    });
    expect(endpoints?.metadata).toMatchObject({
      labels: { 'endpointslice.kubernetes.io/skip-mirror': 'true' },
    });
    expect(slice).toMatchObject({
      kind: 'EndpointSlice',
      metadata: { labels: { 'kubernetes.io/service-name': 'kubernetes' } },
      endpoints: [{ addresses: ['10.244.0.1'], conditions: { ready: true } }],
      ports: [{ name: 'https', port: 6443 }],
    });
  });
});
