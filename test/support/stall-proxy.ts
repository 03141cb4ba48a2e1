// A TCP proxy on loopback between a client and the API server, able to fail the way networks
// fail long-running watches: go silent (a load balancer or NAT that forgot the connection: both
// sockets stay open, bytes vanish, no FIN, no RST) or refuse connections outright.
import { connect, createServer, type Socket } from 'node:net';
import * as k8s from '@kubernetes/client-node';

export interface StallProxy {
  /** `https://127.0.0.1:<port>`: the API server's certificate is valid for it too. */
  readonly server: string;
  /**
   * The path goes silent: every connection, open now or opened until heal(), drops all bytes in
   * both directions and never closes towards the client.
   */
  stall(): void;
  /** New connections work again; those already stalled stay dead, as a forgotten NAT entry does. */
  heal(): void;
  /** While refusing, open connections are cut and new ones are closed as soon as accepted. */
  refuse(refusing: boolean): void;
  /** Connections accepted and forwarded so far. */
  connectionsOpened(): number;
  close(): Promise<void>;
}

interface Connection {
  readonly client: Socket;
  readonly upstream: Socket;
  stalled: boolean;
}

export async function startStallProxy(target: string): Promise<StallProxy> {
  const { hostname, port } = new URL(target);
  const connections = new Set<Connection>();
  let refusing = false;
  let stalling = false;
  let opened = 0;

  const server = createServer((client) => {
    if (refusing) {
      client.destroy();
      return;
    }
    opened++;
    const upstream = connect(Number(port), hostname);
    const connection: Connection = { client, upstream, stalled: stalling };
    connections.add(connection);
    client.on('data', (chunk: Buffer) => {
      if (!connection.stalled) upstream.write(chunk);
    });
    upstream.on('data', (chunk: Buffer) => {
      if (!connection.stalled) client.write(chunk);
    });
    // A silent path carries no close either: the client must find out on its own.
    upstream.on('close', () => {
      if (!connection.stalled) client.destroy();
    });
    client.on('close', () => {
      upstream.destroy();
      connections.delete(connection);
    });
    client.on('error', () => undefined);
    upstream.on('error', () => undefined);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const address = server.address();
  if (address === null || typeof address !== 'object') throw new Error('proxy has no address');

  return {
    server: `https://127.0.0.1:${String(address.port)}`,
    stall: () => {
      stalling = true;
      for (const connection of connections) connection.stalled = true;
    },
    heal: () => {
      stalling = false;
    },
    refuse: (value) => {
      refusing = value;
      if (value) for (const connection of connections) connection.client.destroy();
    },
    connectionsOpened: () => opened,
    close: async () => {
      for (const connection of connections) connection.client.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

/** The same credentials and CA, but every request goes to `server`. */
export function kubeConfigVia(kc: k8s.KubeConfig, server: string): k8s.KubeConfig {
  const routed = new k8s.KubeConfig();
  routed.loadFromOptions({
    clusters: kc.getClusters().map((cluster) => ({ ...cluster, server })),
    users: kc.getUsers(),
    contexts: kc.getContexts(),
    currentContext: kc.getCurrentContext(),
  });
  return routed;
}
