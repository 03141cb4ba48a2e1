// A real Kubernetes control plane on loopback: etcd, kube-apiserver and kube-controller-manager
// as local processes (the way envtest does it). Used by `npm start` when no cluster is
// configured, and by the integration and end-to-end tests. Without nodes, pods are created but
// never run; with `node: true` real worker nodes join, one per zone (node.ts), and they do.
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createSigningKeyPair } from '../../certs/keys.ts';
import { createCertificateAuthority, issueCertificate, type KeyPair } from '../../certs/x509.ts';
import { ensureBinaries, NODE_BINARIES, type Log } from './binaries.ts';
import {
  cleanupHost,
  lockNode,
  NodeUnavailableError,
  nodeUnavailableReason,
  readSnapshot,
  unlockNode,
} from './host.ts';
import { httpGet, httpsGet, type TlsClient } from './http.ts';
import { ensureImages, type BuiltImage } from './images.ts';
import {
  conflictingRoutes,
  kubeletClientPair,
  NODE_NETWORK,
  nodeApiServerArgs,
  startNode,
  type LocalNode,
  type NodeContext,
  type RunningNode,
  type WorkerRestart,
} from './node.ts';
import { kubeconfigYaml } from './kubeconfig.ts';
import { startProcess, stopProcess, waitUntil, type PlaneProcess } from './processes.ts';
import { signalGroup } from './reaper.ts';

export interface LocalPlane {
  readonly dir: string;
  /** Admin kubeconfig (client certificate in system:masters). */
  readonly kubeconfigPath: string;
  readonly server: string;
  /** The CA that signs the serving and client certificates, for clients outside kubeconfig. */
  readonly ca: KeyPair;
  readonly admin: KeyPair;
  /** The worker nodes and what they share, when the plane was started with them. */
  readonly node?: LocalNode;
  /**
   * Stops kube-apiserver (SIGTERM, or SIGKILL when `crash`) and starts it again on the same port
   * and etcd, resolving once it is ready: what a watch meets when a real cluster's API server is
   * upgraded or crashes. A graceful stop sends every watch a bookmark at the latest
   * resourceVersion first; a crash leaves each watch where its last event was.
   */
  restartApiServer(options?: { readonly crash?: boolean }): Promise<void>;
  /**
   * Restarts one worker node as a reboot would (node.ts): its containers killed, containerd and
   * the kubelet started again. Rejects on a plane without nodes.
   */
  restartWorker(name: string): Promise<WorkerRestart>;
  /** Ends every process of the plane and removes its directory. Safe to call twice. */
  stop(): Promise<void>;
}

export interface LocalPlaneOptions {
  /** Controllers for kube-controller-manager; none means it is not started. */
  readonly controllers?: readonly string[];
  readonly log?: Log;
  /** Keep the directory after stop (logs for a post-mortem). */
  readonly keepDir?: boolean;
  /**
   * Start a process of the plane again when it exits on its own (killed, crashed), as a kubelet
   * restarts a control plane's static pods: for a plane people use by hand, where killing the
   * API server to see what the manager makes of it is fair game.
   */
  readonly restartOnExit?: boolean;
  /**
   * Start real worker nodes, one per zone of three (kubelets and containerds; kube-scheduler,
   * kube-proxy, CoreDNS, local volumes and the NATS images shared). Throws NodeUnavailableError,
   * before starting anything, when this host cannot run them (not root, no overlayfs, unusable
   * cgroups, another plane's nodes running). 'auto': nodes where the host can run them, else
   * none; the log says which and why.
   */
  readonly node?: boolean | 'auto';
  /** More images for the nodes' containerd beside the NATS ones (e.g. the manager's own). */
  readonly extraImages?: readonly BuiltImage[];
}

export { NodeUnavailableError } from './host.ts';

/** Why a node cannot start here, or undefined: the checks startLocalPlane makes first. */
export function localNodeUnavailableReason(): string | undefined {
  const reason = nodeUnavailableReason();
  if (reason !== undefined) return reason;
  const routes = spawnSync('ip', ['-4', 'route', 'show', 'table', 'all'], {
    encoding: 'utf8',
    timeout: 5_000,
  });
  // Routes of a running plane's own bridge are that plane's: the node lock names it.
  const conflicts = conflictingRoutes(
    routes.stdout.split('\n').filter((route) => !route.includes(` dev ${NODE_NETWORK.bridge} `)),
  );
  if (conflicts.length > 0) {
    return `the node's pod range ${NODE_NETWORK.podCidr} or service range ${NODE_NETWORK.serviceCidr} overlaps routes of this host: ${conflicts.join('; ')}`;
  }
  return undefined;
}

const RESTART_DELAY_MS = 1_000;

export const DEFAULT_CONTROLLERS = [
  'garbagecollector',
  'statefulset',
  'namespace',
  'serviceaccount',
  'serviceaccount-token',
] as const;

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => {
        if (address !== null && typeof address === 'object') resolve(address.port);
        else reject(new Error('no port'));
      });
    });
  });
}

function writePki(dir: string): {
  ca: KeyPair;
  admin: KeyPair;
  kcm: KeyPair;
  kubeletClient: KeyPair;
} {
  const ca = createCertificateAuthority('nats-manager-localplane-ca', 365);
  const serving = issueCertificate(ca, {
    commonName: 'kube-apiserver',
    dnsNames: ['localhost', 'kubernetes', 'kubernetes.default', 'kubernetes.default.svc'],
    ipAddresses: ['127.0.0.1', '10.0.0.1', NODE_NETWORK.kubernetesServiceIp, NODE_NETWORK.gateway],
    usage: 'server',
    validDays: 365,
  });
  const admin = issueCertificate(ca, {
    commonName: 'admin',
    organizations: ['system:masters'],
    usage: 'client',
    validDays: 365,
  });
  // The bootstrap RBAC policy binds this user name to the controller manager's roles.
  const kcm = issueCertificate(ca, {
    commonName: 'system:kube-controller-manager',
    usage: 'client',
    validDays: 365,
  });
  const kubeletClient = kubeletClientPair(ca);
  const sa = createSigningKeyPair();
  const files: Record<string, string> = {
    'ca.crt': ca.certPem,
    'ca.key': ca.keyPem,
    'apiserver.crt': serving.certPem,
    'apiserver.key': serving.keyPem,
    'sa.key': sa.privateKeyPem,
    'sa.pub': sa.publicKeyPem,
    'kubelet-client.crt': kubeletClient.certPem,
    'kubelet-client.key': kubeletClient.keyPem,
  };
  for (const [name, content] of Object.entries(files)) {
    writeFileSync(join(dir, 'pki', name), content, { mode: 0o600 });
  }
  return { ca, admin, kcm, kubeletClient };
}

function startReaper(dir: string): void {
  const script = join(dirname(fileURLToPath(import.meta.url)), 'reaper.ts');
  const reaper = spawn(process.execPath, ['--no-warnings', script, String(process.pid), dir], {
    detached: true,
    stdio: 'ignore',
  });
  reaper.unref();
}

/**
 * Whether nodes are asked for and this host can run them: `true` insists (NodeUnavailableError
 * before anything starts), 'auto' goes on without them and says why.
 */
function nodeWanted(options: LocalPlaneOptions, log: Log): boolean {
  if (options.node !== true && options.node !== 'auto') return false;
  const reason = localNodeUnavailableReason();
  if (reason === undefined) return true;
  if (options.node === true) throw new NodeUnavailableError(`no local node: ${reason}`);
  log(`starting without a node, so pods will not run: ${reason}`);
  return false;
}

/**
 * Takes the host's node lock for the plane in `dir`. When another plane holds it, 'auto' goes on
 * without nodes; otherwise the directory is removed and the error thrown.
 */
function lockNodeOrGoWithout(dir: string, options: LocalPlaneOptions, log: Log): boolean {
  try {
    lockNode(dir);
    return true;
  } catch (error) {
    if (options.node === true || !(error instanceof NodeUnavailableError)) {
      rmSync(dir, { recursive: true, force: true });
      throw error;
    }
    log(`starting without a node, so pods will not run: ${error.message}`);
    return false;
  }
}

/** The nodes' binaries and images, built or taken from the cache. */
async function ensureNodeParts(log: Log): Promise<Pick<NodeContext, 'bins' | 'images'>> {
  const bins = await ensureBinaries(NODE_BINARIES, log);
  const images = await ensureImages(log);
  return { bins, images };
}

function pkiPath(dir: string, name: string): string {
  return join(dir, 'pki', name);
}

function etcdArgs(dir: string, etcdUrl: string, peerPort: number): string[] {
  const peerUrl = `http://127.0.0.1:${String(peerPort)}`;
  return [
    `--data-dir=${join(dir, 'etcd')}`,
    `--listen-client-urls=${etcdUrl}`,
    `--advertise-client-urls=${etcdUrl}`,
    `--listen-peer-urls=${peerUrl}`,
    `--initial-advertise-peer-urls=${peerUrl}`,
    `--initial-cluster=default=${peerUrl}`,
    '--unsafe-no-fsync',
    '--log-level=warn',
  ];
}

function apiServerArgs(dir: string, etcdUrl: string, port: number, withNode: boolean): string[] {
  return [
    `--etcd-servers=${etcdUrl}`,
    '--bind-address=127.0.0.1',
    '--advertise-address=127.0.0.1',
    `--secure-port=${String(port)}`,
    `--cert-dir=${join(dir, 'pki')}`,
    `--tls-cert-file=${pkiPath(dir, 'apiserver.crt')}`,
    `--tls-private-key-file=${pkiPath(dir, 'apiserver.key')}`,
    `--client-ca-file=${pkiPath(dir, 'ca.crt')}`,
    `--service-cluster-ip-range=${withNode ? NODE_NETWORK.serviceCidr : '10.0.0.0/24'}`,
    '--service-account-issuer=https://kubernetes.default.svc.cluster.local',
    `--service-account-key-file=${pkiPath(dir, 'sa.pub')}`,
    `--service-account-signing-key-file=${pkiPath(dir, 'sa.key')}`,
    ...(withNode
      ? nodeApiServerArgs(pkiPath(dir, 'kubelet-client.crt'), pkiPath(dir, 'kubelet-client.key'))
      : ['--authorization-mode=RBAC']),
    '--allow-privileged=true',
    '--endpoint-reconciler-type=none',
    '--v=1',
  ];
}

/** A process of the plane in its slot, started again on purpose or by supervision. */
interface SupervisedProcess {
  current(): PlaneProcess;
  startAgain(): Promise<void>;
}

type RunProcess = (
  start: () => PlaneProcess,
  ready: (proc: PlaneProcess) => Promise<void>,
) => Promise<SupervisedProcess>;

/** What kube-controller-manager is started with, on a plane whose API server is ready. */
interface ControllerManagerSetup {
  readonly dir: string;
  readonly binary: string;
  readonly server: string;
  readonly ca: KeyPair;
  /** Its client certificate, named for the bootstrap RBAC policy's user. */
  readonly client: KeyPair;
  readonly adminTls: TlsClient;
  readonly port: number;
  readonly controllers: readonly string[];
  /** Nodes join: it signs their certificates. */
  readonly withNode: boolean;
  readonly run: RunProcess;
}

function controllerManagerArgs(setup: ControllerManagerSetup, kubeconfig: string): string[] {
  const { dir } = setup;
  return [
    `--kubeconfig=${kubeconfig}`,
    '--leader-elect=false',
    '--bind-address=127.0.0.1',
    `--secure-port=${String(setup.port)}`,
    `--cert-dir=${join(dir, 'pki')}`,
    `--controllers=${setup.controllers.join(',')}`,
    // Each controller acts as its own service account, as in a real cluster: admission
    // webhooks that tell identities apart can only be tested truthfully this way.
    '--use-service-account-credentials',
    `--service-account-private-key-file=${pkiPath(dir, 'sa.key')}`,
    `--root-ca-file=${pkiPath(dir, 'ca.crt')}`,
    ...(setup.withNode
      ? [
          `--cluster-signing-cert-file=${pkiPath(dir, 'ca.crt')}`,
          `--cluster-signing-key-file=${pkiPath(dir, 'ca.key')}`,
        ]
      : []),
    '--v=1',
  ];
}

/** Starts kube-controller-manager and waits until it is healthy and, if it runs, serving accounts. */
async function startControllerManager(setup: ControllerManagerSetup): Promise<void> {
  const kubeconfig = join(setup.dir, 'kube-controller-manager.kubeconfig');
  writeFileSync(
    kubeconfig,
    kubeconfigYaml(setup.server, setup.ca.certPem, 'kube-controller-manager', setup.client),
    { mode: 0o600 },
  );
  const args = controllerManagerArgs(setup, kubeconfig);
  const start = (): PlaneProcess =>
    startProcess(setup.dir, 'kube-controller-manager', setup.binary, args);
  const waitForHealthz = (proc: PlaneProcess): Promise<void> =>
    waitUntil(proc, 'kube-controller-manager /healthz', async () => {
      return (await httpsGet(`https://127.0.0.1:${String(setup.port)}/healthz`, {})).status === 200;
    });
  const kcm = await setup.run(start, waitForHealthz);
  if (!setup.controllers.includes('serviceaccount')) return;
  // The default service account in `default` shows the controllers are really working.
  await waitUntil(kcm.current(), 'the default service account', async () => {
    const res = await httpsGet(
      `${setup.server}/api/v1/namespaces/default/serviceaccounts/default`,
      setup.adminTls,
    );
    return res.status === 200;
  });
}

export async function startLocalPlane(options: LocalPlaneOptions = {}): Promise<LocalPlane> {
  const log = options.log ?? ((line: string) => process.stderr.write(`[localplane] ${line}\n`));
  const wanted = nodeWanted(options, log);
  const bins = await ensureBinaries(['etcd', 'kube-apiserver', 'kube-controller-manager'], log);
  // Built before anything starts, so a first run does not hold half a plane while compiling.
  const nodeParts = wanted ? await ensureNodeParts(log) : undefined;

  const dir = mkdtempSync(join(tmpdir(), 'nats-manager-plane-'));
  for (const sub of ['pki', 'logs', 'etcd']) mkdirSync(join(dir, sub));
  startReaper(dir);
  const withNode = wanted && lockNodeOrGoWithout(dir, options, log);
  // A node cluster runs every controller a real one does (endpointslice, PV binder, ...).
  const controllers = options.controllers ?? (withNode ? ['*'] : DEFAULT_CONTROLLERS);
  if (withNode) {
    log(
      'starting with a local node (kubelet, containerd, kube-scheduler, kube-proxy, CoreDNS): pods will run',
    );
  }
  const processes: PlaneProcess[] = [];
  let runningNode: RunningNode | undefined;
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    process.off('exit', killOnExit);
    await runningNode?.stop();
    unlockNode(dir);
    for (const proc of [...processes].reverse()) {
      stoppedOnPurpose.add(proc);
      await stopProcess(proc, 10_000);
    }
    // Also after a node that failed half way: mounts must go before the directory does.
    const snapshot = readSnapshot(dir);
    if (snapshot !== undefined) cleanupHost(snapshot);
    if (options.keepDir !== true) rmSync(dir, { recursive: true, force: true });
  };
  // Last resort when the owner exits without stop(); the reaper covers kill -9.
  const killOnExit = (): void => {
    for (const proc of processes)
      if (proc.child.pid !== undefined) signalGroup(proc.child.pid, 'SIGKILL');
    const snapshot = readSnapshot(dir);
    if (snapshot !== undefined) cleanupHost(snapshot);
    unlockNode(dir);
    rmSync(dir, { recursive: true, force: true });
  };
  process.on('exit', killOnExit);

  // Processes stopped on purpose (stop(), restartApiServer()) are not started again.
  const stoppedOnPurpose = new WeakSet<PlaneProcess>();
  const supervise = (proc: PlaneProcess, restart: () => Promise<void>): void => {
    if (options.restartOnExit !== true) return;
    proc.child.once('exit', (code, signal) => {
      if (stopped || stoppedOnPurpose.has(proc)) return;
      log(`${proc.name} exited (${signal ?? String(code)}); starting it again`);
      setTimeout(() => {
        if (stopped) return;
        restart().then(
          () => {
            log(`${proc.name} is back`);
          },
          (error: unknown) => {
            log(`${proc.name} did not come back: ${String(error)}`);
          },
        );
      }, RESTART_DELAY_MS).unref();
    });
  };
  /** Starts a process into its slot of `processes` (stop order) and supervises it. */
  const replace = (old: PlaneProcess, next: PlaneProcess, restart: () => Promise<void>): void => {
    const slot = processes.indexOf(old);
    if (slot >= 0) processes[slot] = next;
    else processes.push(next);
    supervise(next, restart);
  };

  /** Starts a process into its slot, waits until it is ready; supervised if asked. */
  const run: RunProcess = async (start, ready) => {
    let proc = start();
    const startAgain = async (): Promise<void> => {
      const next = start();
      replace(proc, next, startAgain);
      proc = next;
      await ready(next);
    };
    replace(proc, proc, startAgain);
    await ready(proc);
    return { current: () => proc, startAgain };
  };

  try {
    const pki = writePki(dir);
    const [etcdPort, etcdPeerPort, apiPort, kcmPort] = await Promise.all([
      freePort(),
      freePort(),
      freePort(),
      freePort(),
    ]);
    const etcdUrl = `http://127.0.0.1:${String(etcdPort)}`;
    const startEtcd = (): PlaneProcess =>
      startProcess(dir, 'etcd', bins.etcd, etcdArgs(dir, etcdUrl, etcdPeerPort));
    const waitForEtcd = (proc: PlaneProcess): Promise<void> =>
      waitUntil(proc, 'etcd health', async () => {
        const res = await httpGet(`${etcdUrl}/health`);
        return res.status === 200 && res.body.includes('"health":"true"');
      });
    await run(startEtcd, waitForEtcd);

    const server = `https://127.0.0.1:${String(apiPort)}`;
    const apiserverArgs = apiServerArgs(dir, etcdUrl, apiPort, withNode);
    const adminTls = { ca: pki.ca.certPem, cert: pki.admin.certPem, key: pki.admin.keyPem };
    const startApiServer = (): PlaneProcess =>
      startProcess(dir, 'kube-apiserver', bins['kube-apiserver'], apiserverArgs);
    const waitForApiServer = (proc: PlaneProcess): Promise<void> =>
      waitUntil(proc, 'kube-apiserver /readyz', async () => {
        return (await httpsGet(`${server}/readyz`, adminTls)).status === 200;
      });
    const apiserver = await run(startApiServer, waitForApiServer);
    const restartApiServer = async (restart?: { readonly crash?: boolean }): Promise<void> => {
      if (stopped) throw new Error('the local plane is stopped');
      stoppedOnPurpose.add(apiserver.current());
      await stopProcess(apiserver.current(), restart?.crash === true ? 0 : 10_000);
      // Same slot, so stop() still ends the controller manager before the API server.
      await apiserver.startAgain();
    };

    const kubeconfigPath = join(dir, 'kubeconfig');
    writeFileSync(kubeconfigPath, kubeconfigYaml(server, pki.ca.certPem, 'admin', pki.admin), {
      mode: 0o600,
    });

    if (controllers.length > 0) {
      await startControllerManager({
        dir,
        binary: bins['kube-controller-manager'],
        server,
        ca: pki.ca,
        client: pki.kcm,
        adminTls,
        port: kcmPort,
        controllers,
        withNode,
        run,
      });
    }
    if (withNode && nodeParts !== undefined) {
      runningNode = await startNode({
        dir,
        server,
        ca: pki.ca,
        admin: pki.admin,
        log,
        ...nodeParts,
        images: [...nodeParts.images, ...(options.extraImages ?? [])],
        freePort,
      });
    }
    return {
      dir,
      kubeconfigPath,
      server,
      ca: pki.ca,
      admin: pki.admin,
      ...(runningNode === undefined ? {} : { node: runningNode.info }),
      restartApiServer,
      restartWorker: (name) =>
        runningNode === undefined
          ? Promise.reject(new Error('this plane has no nodes'))
          : runningNode.restartWorker(name),
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}
