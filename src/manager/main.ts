// Entry point of the NATS Manager (`npm start`).
import * as k8s from '@kubernetes/client-node';
import type { KubeConfig } from '@kubernetes/client-node';
import { hostname } from 'node:os';
import { createNatsController } from '../controller/controller.ts';
import { apiEventRecorder } from '../controller/events.ts';
import { createLeaderElector, defaultLeaderIdentity } from '../controller/leader-election.ts';
import { connectCluster, type Cluster } from '../kube/cluster.ts';
import { whoAmI } from '../kube/identity.ts';
import { checkCustomerData } from '../nats/customer-data.ts';
import { startAdmission } from './admission.ts';
import { ConfigError, parseConfig, type ManagerConfig } from './config.ts';
import { prepareEmbeddedPlane } from './embedded.ts';
import { startEndpoints } from './endpoints.ts';
import { jsonLogger } from './log.ts';
import { createManagerMetrics } from './metrics.ts';

// A blocked deletion or a name conflict is not announced by any watch: look again this often.
const RECHECK_MS = 10_000;
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

/** Who writes the children: the service account (embedded, in-cluster) or the kubeconfig's user. */
async function managerIdentity(
  cluster: Cluster,
  config: ManagerConfig,
): Promise<{ kc: KubeConfig; extraManagerUsernames: string[] }> {
  if (cluster.plane !== undefined) {
    const kc = await prepareEmbeddedPlane(cluster, config);
    log.info('prepared the embedded plane: NATS CRD, namespaces, deploy/rbac');
    return { kc, extraManagerUsernames: [] };
  }
  const { username } = await whoAmI(cluster.kc);
  log.info('authenticated', { username });
  const extra = username !== config.managerUsername && username !== '' ? [username] : [];
  return { kc: cluster.kc, extraManagerUsernames: extra };
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
    log.info('stopped');
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
  const identity = await managerIdentity(cluster, config);
  const metrics = createManagerMetrics();
  let webhooksServing = false;
  const controller = createNatsController({
    kc: identity.kc,
    settings: {
      natsName: config.natsName,
      natsNamespace: config.natsNamespace,
      images: config.images,
      clusterDomain: config.clusterDomain,
      recheckMs: RECHECK_MS,
    },
    log,
    record: apiEventRecorder(identity.kc, hostname(), log),
    checkCustomerData,
    metrics,
  });
  metrics.trackQueue(() => controller.queueStats());
  const endpoints = await startEndpoints({
    metricsAddress: config.metricsAddress,
    probeAddress: config.probeAddress,
    registry: metrics.registry,
    readinessChecks: [
      { name: 'webhooks', check: () => webhooksServing || 'the webhook server is not up' },
      { name: 'caches', check: () => controller.hasSynced() || 'the watch caches are not synced' },
    ],
    log,
  });
  closers.push(() => endpoints.close());
  log.info('serving metrics and probes', {
    metricsPort: endpoints.metricsPort,
    probePort: endpoints.probePort,
  });

  const offCluster = cluster.source !== 'in-cluster';
  const admission = await startAdmission({
    kc: identity.kc,
    config: { ...config, extraManagerUsernames: identity.extraManagerUsernames },
    log,
    offCluster,
    onAdmission: metrics.onAdmission,
  });
  webhooksServing = true;
  closers.push(() => admission.close());

  await controller.start();
  log.info('watch caches synced');
  if (config.leaderElect) {
    const elector = createLeaderElector(identity.kc, {
      namespace: config.managerNamespace,
      name: config.leaderElectionId,
      identity: defaultLeaderIdentity(),
      log,
      onStartedLeading: () => {
        log.info('leading: reconciling');
        metrics.setLeader(true);
        controller.run();
      },
      onStoppedLeading: () => {
        log.info('no longer leading: reconciling stops');
        metrics.setLeader(false);
        controller.pause();
      },
    });
    elector.start();
    // Runs before the controller stops (closers run in reverse): the Lease is released only
    // once no reconcile of ours is in flight.
    closers.push(() => elector.stop());
  } else {
    metrics.setLeader(true);
    controller.run();
  }
  closers.push(() => controller.stop());
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
