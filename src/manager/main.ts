// Entry point of the NATS Manager (`npm start`).
import * as k8s from '@kubernetes/client-node';
import { buildNatsCrd } from '../api/crd.ts';
import { applyObject } from '../kube/api.ts';
import { connectCluster, type Cluster } from '../kube/cluster.ts';
import { ensureCrd } from '../kube/crd.ts';
import { startAdmission } from './admission.ts';
import { ConfigError, parseConfig, type ManagerConfig } from './config.ts';
import { jsonLogger } from './log.ts';

const FIELD_MANAGER = 'nats-manager';
const log = jsonLogger({ logger: 'manager' });

function printEmbeddedBanner(cluster: Cluster, config: ManagerConfig): void {
  if (cluster.plane === undefined) return;
  const kubeconfig = cluster.plane.kubeconfigPath;
  process.stdout.write(
    [
      '',
      'NATS Manager is running on an embedded local control plane (etcd + kube-apiserver).',
      `  kubeconfig: ${kubeconfig}`,
      `  try:        kubectl --kubeconfig ${kubeconfig} get nats,ns -A`,
      `  a NATS:     kubectl --kubeconfig ${kubeconfig} apply -f config/samples/nats.yaml`,
      `  (only ${config.natsNamespace}/${config.natsName} is served; the webhooks answer at once)`,
      'Stop with Ctrl-C; the plane and its data go with it.',
      '',
    ].join('\n') + '\n',
  );
}

/** What a real cluster gets from deploy/, the embedded plane gets here. */
async function prepareEmbeddedPlane(cluster: Cluster, config: ManagerConfig): Promise<void> {
  await ensureCrd(cluster.kc, buildNatsCrd(), FIELD_MANAGER);
  for (const name of new Set([config.managerNamespace, config.natsNamespace])) {
    await applyObject(
      cluster.kc,
      { apiVersion: 'v1', kind: 'Namespace', metadata: { name } },
      { fieldManager: FIELD_MANAGER },
    );
  }
}

async function main(): Promise<void> {
  const config = parseConfig(process.argv.slice(2), process.env);
  const cluster = await connectCluster();
  const closers: (() => Promise<void>)[] = [];
  let stopping = false;
  const shutdown = async (signal: string): Promise<void> => {
    if (stopping) return;
    stopping = true;
    log.info('shutting down', { signal });
    for (const close of closers.reverse()) {
      await close().catch((error: unknown) => {
        log.error('error while shutting down', { error });
      });
    }
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
  const offCluster = cluster.source !== 'in-cluster';
  if (cluster.plane !== undefined) {
    await prepareEmbeddedPlane(cluster, config);
    log.info('installed the NATS CRD on the embedded plane');
  }
  const admission = await startAdmission({ kc: cluster.kc, config, log, offCluster });
  closers.push(() => admission.close());
  printEmbeddedBanner(cluster, config);
}

main().catch((error: unknown) => {
  if (error instanceof ConfigError) {
    process.stderr.write(`nats-manager: ${error.message}\n`);
    process.exit(2);
  }
  log.error('manager failed', { error });
  process.exit(1);
});
