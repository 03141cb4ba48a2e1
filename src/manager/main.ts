// Entry point of the NATS Manager (`npm start`).
import * as k8s from '@kubernetes/client-node';
import { buildNatsCrd } from '../api/crd.ts';
import { connectCluster, type Cluster } from '../kube/cluster.ts';
import { ensureCrd } from '../kube/crd.ts';
import { jsonLogger } from './log.ts';

const FIELD_MANAGER = 'nats-manager';
const log = jsonLogger({ logger: 'manager' });

function printEmbeddedBanner(cluster: Cluster): void {
  if (cluster.plane === undefined) return;
  const kubeconfig = cluster.plane.kubeconfigPath;
  process.stdout.write(
    [
      '',
      'NATS Manager is running on an embedded local control plane (etcd + kube-apiserver).',
      `  kubeconfig: ${kubeconfig}`,
      `  try:        kubectl --kubeconfig ${kubeconfig} get nats,ns -A`,
      'Stop with Ctrl-C; the plane and its data go with it.',
      '',
    ].join('\n') + '\n',
  );
}

async function main(): Promise<void> {
  const cluster = await connectCluster();
  let stopping = false;
  const shutdown = async (signal: string): Promise<void> => {
    if (stopping) return;
    stopping = true;
    log.info('shutting down', { signal });
    await cluster.plane?.stop();
    process.exit(0);
  };
  process.on('SIGINT', () => void shutdown('SIGINT'));
  process.on('SIGTERM', () => void shutdown('SIGTERM'));

  const version = await cluster.kc.makeApiClient(k8s.VersionApi).getCode();
  log.info('connected', {
    source: cluster.source,
    server: cluster.kc.getCurrentCluster()?.server,
    serverVersion: version.gitVersion,
  });
  if (cluster.plane !== undefined) {
    // In a real cluster the CRD comes from deploy/; the embedded plane gets it here.
    await ensureCrd(cluster.kc, buildNatsCrd(), FIELD_MANAGER);
    log.info('installed the NATS CRD on the embedded plane');
  }
  printEmbeddedBanner(cluster);
}

main().catch((error: unknown) => {
  log.error('manager failed', { error });
  process.exit(1);
});
