// Entry point of the NATS Manager (`npm start`).
import { hostname } from 'node:os';
import { NATS_API_VERSION, NATS_KIND } from '../api/nats.ts';
import { createNatsController } from '../controller/controller.ts';
import { apiEventRecorder } from '../controller/events.ts';
import { createLeaderElector, defaultLeaderIdentity } from '../controller/leader-election.ts';
import { createKubeClient, type KubeClient } from '../kube/client.ts';
import { whoAmI } from '../kube/identity.ts';
import { readProvider } from '../kube/shoot-info.ts';
import { checkCustomerData } from '../nats/customer-data.ts';
import { startAdmission } from './admission.ts';
import { connectCluster, NotInClusterError, type Cluster } from './cluster.ts';
import { ConfigError, parseConfig, type ManagerConfig } from './config.ts';
import { prepareEmbeddedPlane } from './embedded.ts';
import { startEndpoints } from './endpoints.ts';
import { jsonLogger, setLogLevel } from '../base/log.ts';
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
): Promise<{ client: KubeClient; extraManagerUsernames: string[] }> {
  if (cluster.plane !== undefined) {
    const kc = await prepareEmbeddedPlane(cluster, config);
    log.info('prepared the embedded plane: NATS CRD, namespaces, deploy/rbac');
    return { client: createKubeClient(kc), extraManagerUsernames: [] };
  }
  const client = createKubeClient(cluster.kc);
  const { username } = await whoAmI(client);
  log.info('authenticated', { username });
  const extra = username !== config.managerUsername && username !== '' ? [username] : [];
  return { client, extraManagerUsernames: extra };
}

/** A Warning Event on the served NATS resource; resolves to false when there is none yet. */
async function warnOnNats(
  client: KubeClient,
  config: ManagerConfig,
  record: ReturnType<typeof apiEventRecorder>,
  missing: readonly string[],
): Promise<boolean> {
  const nats = await client
    .get({
      apiVersion: NATS_API_VERSION,
      kind: NATS_KIND,
      namespace: config.natsNamespace,
      name: config.natsName,
    })
    .catch(() => undefined);
  const uid = nats?.metadata.uid;
  if (typeof uid !== 'string') return false;
  await record(
    { name: config.natsName, namespace: config.natsNamespace, uid },
    {
      type: 'Warning',
      reason: 'WebhookConfigurationMissing',
      message: `${missing.join(', ')} cannot be put in place: specs and child edits are not checked at admission, only reverted by the reconciler`,
    },
  );
  return true;
}

/**
 * Without its webhook configurations the manager still reconciles, but nothing is refused at
 * admission: say so in the metric on every attempt, and once per configuration that goes missing
 * in a Warning Event on the served NATS resource for `kubectl describe` (on a later attempt when
 * the resource does not exist yet).
 */
function reportMissingConfigurations(
  client: KubeClient,
  config: ManagerConfig,
  metrics: ReturnType<typeof createManagerMetrics>,
): (missing: readonly string[]) => void {
  const record = apiEventRecorder(client, hostname(), log);
  const announced = new Set<string>();
  let announcing = false;
  return (missing) => {
    metrics.setWebhookConfigurationsMissing(missing);
    for (const configuration of announced) {
      if (!missing.includes(configuration)) announced.delete(configuration);
    }
    const fresh = missing.filter((configuration) => !announced.has(configuration));
    if (fresh.length === 0 || announcing) return;
    announcing = true;
    void warnOnNats(client, config, record, fresh)
      .then((recorded) => {
        if (recorded) for (const configuration of fresh) announced.add(configuration);
      })
      .finally(() => {
        announcing = false;
      });
  };
}

async function main(): Promise<void> {
  const config = parseConfig(process.argv.slice(2), process.env);
  setLogLevel(config.logLevel);
  const cluster = await connectCluster(process.env, config.inCluster);
  const closers: (() => Promise<void>)[] = [];
  let stopping = false;
  const shutdown = async (signal: string): Promise<void> => {
    if (stopping) return;
    stopping = true;
    log.info('shutting down', { signal, timeoutSeconds: config.shutdownTimeoutSeconds });
    // Inside the pod's termination grace period: what has not closed by then is cut short,
    // before the kubelet's SIGKILL could interrupt a write half way.
    setTimeout(() => {
      log.error('shutdown did not finish in time; exiting', {
        timeoutSeconds: config.shutdownTimeoutSeconds,
      });
      process.exit(1);
    }, config.shutdownTimeoutSeconds * 1000).unref();
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

  const version = (await createKubeClient(cluster.kc).request({
    method: 'GET',
    path: '/version',
  })) as {
    gitVersion?: string;
  };
  log.info('connected', {
    source: cluster.source,
    server: cluster.kc.getCurrentCluster()?.server,
    serverVersion: version.gitVersion,
  });
  const identity = await managerIdentity(cluster, config);
  // Read once, as the Go manager does: the provider decides the file-storage default.
  const provider = await readProvider(identity.client);
  if (provider !== undefined) log.info('cloud provider', { provider });
  const metrics = createManagerMetrics();
  let webhooksServing = false;
  const controller = createNatsController({
    client: identity.client,
    settings: {
      natsName: config.natsName,
      natsNamespace: config.natsNamespace,
      images: config.images,
      clusterDomain: config.clusterDomain,
      recheckMs: RECHECK_MS,
      ...(provider === undefined ? {} : { provider }),
    },
    log,
    record: apiEventRecorder(identity.client, hostname(), log),
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
    client: identity.client,
    config: {
      ...config,
      extraManagerUsernames: identity.extraManagerUsernames,
      provider: () => provider,
    },
    log,
    offCluster,
    onAdmission: metrics.onAdmission,
    onConfigurationsMissing: reportMissingConfigurations(identity.client, config, metrics),
  });
  webhooksServing = true;
  closers.push(() => admission.close());

  await controller.start();
  log.info('watch caches synced');
  if (config.leaderElect) {
    const elector = createLeaderElector(identity.client, {
      namespace: config.managerNamespace,
      name: config.leaderElectionId,
      identity: defaultLeaderIdentity(),
      log,
      onStartedLeading: () => {
        log.info('leading: reconciling');
        metrics.setLeader(true);
        controller.run();
      },
      // Awaited before the Lease is released: the reconciles in flight are aborted first.
      onStoppedLeading: async () => {
        log.info('no longer leading: reconciling stops');
        metrics.setLeader(false);
        await controller.pause();
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
  if (error instanceof ConfigError || error instanceof NotInClusterError) {
    process.stderr.write(`nats-manager: ${error.message}\n`);
    process.exit(2);
  }
  log.error('manager failed', { error });
  process.exit(1);
});
