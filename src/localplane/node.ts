// Real worker nodes for the local plane, one per zone (the manager reports zones, and a cluster
// of three in one zone is a Warning): each a kubelet that joins with its node certificate and a
// containerd 2 of its own with runc, all on one bridge with the Debian CNI plugins; shared by
// them kube-scheduler, kube-proxy in nftables mode, CoreDNS for cluster.local, a `default`
// StorageClass with local volumes per node (resized when a claim grows), and the NATS images imported without a registry. Host changes are recorded first and undone by
// cleanupHost() (see host.ts), also by the reaper when the owner is killed.
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { dump } from 'js-yaml';
import { issueCertificate, type KeyPair } from '../../certs/x509.ts';
import { parseQuantity, quantityToBytes } from '../api/quantity.ts';
import type { Log, NodeBinaryName } from './binaries.ts';
import {
  cgroupMountPoints,
  cleanupHost,
  CNI_BIN_DIR,
  snapshotHost,
  type HostSnapshot,
} from './host.ts';
import { httpGet, planeRequest, type TlsClient } from './http.ts';
import {
  forwardApiServer,
  publishKubernetesEndpoints,
  type ApiServerForward,
} from './apiserver-forward.ts';
import { PAUSE_IMAGE, type BuiltImage } from './images.ts';
import { kubeconfigYaml } from './kubeconfig.ts';
import { startProcess, stopProcess, waitUntil, type PlaneProcess } from './processes.ts';

/** One node per host (see host.ts), so its addresses can be fixed; checked against the routes. */
export const NODE_NETWORK = {
  bridge: 'natsmgr0',
  podCidr: '10.244.0.0/24',
  /** The bridge's address: node IP, kubelet address and cluster DNS. */
  gateway: '10.244.0.1',
  serviceCidr: '10.96.0.0/24',
  /** The `kubernetes` Service's ClusterIP, the first address of the service range. */
  kubernetesServiceIp: '10.96.0.1',
} as const;

/** The worker nodes: one per zone, each with its own slice of the pod range and cgroup root. */
export const WORKERS = ['a', 'b', 'c'].map((letter, index) => ({
  name: `nats-manager-node-${letter}`,
  zone: `local-${letter}`,
  rangeStart: `10.244.0.${String(10 + index * 80)}`,
  rangeEnd: `10.244.0.${String(89 + index * 80)}`,
  cgroupRoot: `nats-manager-node-${letter}`,
}));

type Worker = (typeof WORKERS)[number];
export const CLUSTER_DOMAIN = 'cluster.local';
export const STORAGE_CLASS = 'default';
const VOLUME_SIZE = '5Gi';
/** Free local volumes kept per node: a StatefulSet of 5 spreads over the three. */
const VOLUMES_FREE_PER_NODE = 2;
const POOL_LABEL = 'localplane.nats-manager.io/volume-pool';
const FIELD_MANAGER = 'nats-manager-localplane';

export interface LocalNode {
  /** The worker nodes, by name, with their zones. */
  readonly workers: readonly { readonly name: string; readonly zone: string }[];
  readonly podCidr: string;
  readonly serviceCidr: string;
  /** Where pods (and the host, see cluster-dns.ts) resolve `*.svc.cluster.local`. */
  readonly clusterDns: string;
  readonly clusterDomain: string;
  readonly images: readonly string[];
  /** Milliseconds from the first host change to every node Ready. */
  readonly startedInMs: number;
}

export interface NodeContext {
  readonly dir: string;
  readonly server: string;
  readonly ca: KeyPair;
  readonly admin: KeyPair;
  readonly log: Log;
  readonly bins: Record<NodeBinaryName, string>;
  readonly images: readonly BuiltImage[];
  readonly freePort: () => Promise<number>;
}

/** What restarting one worker took. */
export interface WorkerRestart {
  readonly worker: string;
  /** Containers that were running on it and were killed, as a power cut would. */
  readonly containersKilled: number;
  /** From stopping the kubelet to the kubelet serving again. */
  readonly downMs: number;
}

export interface RunningNode {
  readonly info: LocalNode;
  readonly snapshot: HostSnapshot;
  /**
   * Restarts one worker as a reboot would: its kubelet stops, every container on it is killed,
   * containerd stops; then containerd and the kubelet start again with their state on disk.
   */
  restartWorker(name: string): Promise<WorkerRestart>;
  stop(): Promise<void>;
}

/** The kubelet client certificate files the API server presents to the kubelet. */
export function kubeletClientPair(ca: KeyPair): KeyPair {
  return issueCertificate(ca, {
    commonName: 'kube-apiserver-kubelet-client',
    organizations: ['system:masters'],
    usage: 'client',
    validDays: 365,
  });
}

/** What kube-apiserver needs besides its API-only flags when a node joins. */
export function nodeApiServerArgs(kubeletClientCert: string, kubeletClientKey: string): string[] {
  return [
    '--authorization-mode=Node,RBAC',
    '--enable-admission-plugins=NodeRestriction',
    `--kubelet-client-certificate=${kubeletClientCert}`,
    `--kubelet-client-key=${kubeletClientKey}`,
    // Else logs and exec dial the node by its name, which nothing resolves.
    '--kubelet-preferred-address-types=InternalIP',
  ];
}

function ipToInt(ip: string): number {
  return ip.split('.').reduce((acc, part) => acc * 256 + Number(part), 0);
}

function cidrRange(cidr: string): [number, number] {
  const [ip = '0.0.0.0', bits = '32'] = cidr.split('/');
  const size = 2 ** (32 - Number(bits));
  const start = Math.floor(ipToInt(ip) / size) * size;
  return [start, start + size - 1];
}

export function cidrsOverlap(a: string, b: string): boolean {
  const [a0, a1] = cidrRange(a);
  const [b0, b1] = cidrRange(b);
  return a0 <= b1 && b0 <= a1;
}

/** Routes of the host that the node's pod or service range would shadow. */
export function conflictingRoutes(routes: readonly string[]): string[] {
  return routes.filter((route) => {
    const dst = route.split(' ')[0] ?? '';
    if (dst === 'default' || !/^\d+\.\d+\.\d+\.\d+(\/\d+)?$/.test(dst)) return false;
    const cidr = dst.includes('/') ? dst : `${dst}/32`;
    return cidrsOverlap(cidr, NODE_NETWORK.podCidr) || cidrsOverlap(cidr, NODE_NETWORK.serviceCidr);
  });
}

async function exec(
  cmd: string,
  args: readonly string[],
  timeoutMs = 30_000,
): Promise<{ ok: boolean; out: string }> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], timeout: timeoutMs });
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (out += chunk.toString()));
    child.on('error', (error) => {
      resolve({ ok: false, out: `${out}${error.message}` });
    });
    child.on('close', (code) => {
      resolve({ ok: code === 0, out });
    });
  });
}

async function mustExec(cmd: string, args: readonly string[]): Promise<string> {
  const result = await exec(cmd, args);
  if (!result.ok) throw new Error(`${cmd} ${args.join(' ')} failed: ${result.out.trim()}`);
  return result.out;
}

function containerdConfig(workerDir: string, socket: string): string {
  const root = join(workerDir, 'containerd');
  return `version = 3
root = "${root}/root"
state = "${root}/state"
# NRI and tracing would open host-wide sockets; the node needs neither.
disabled_plugins = ["io.containerd.nri.v1.nri", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "${socket}"

[ttrpc]
  address = "${socket}.ttrpc"

[plugins.'io.containerd.internal.v1.opt']
  path = "${root}/opt"

[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = "${PAUSE_IMAGE}"

[plugins.'io.containerd.cri.v1.runtime']
  # Root here may lack CAP_SYS_RESOURCE: runc cannot lower oom_score_adj below containerd's own.
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  enable_cdi = false
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["${CNI_BIN_DIR}"]
    conf_dir = "${workerDir}/cni"
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = "runc"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        SystemdCgroup = false
`;
}

function cniConfig(workerDir: string, worker: Worker): string {
  return JSON.stringify(
    {
      cniVersion: '1.0.0',
      name: 'nats-manager-node',
      plugins: [
        {
          type: 'bridge',
          bridge: NODE_NETWORK.bridge,
          isGateway: true,
          // Pods talk to the bridge and the host only: nothing to masquerade.
          ipMasq: false,
          hairpinMode: true,
          ipam: {
            type: 'host-local',
            ranges: [
              [
                {
                  subnet: NODE_NETWORK.podCidr,
                  gateway: NODE_NETWORK.gateway,
                  rangeStart: worker.rangeStart,
                  rangeEnd: worker.rangeEnd,
                },
              ],
            ],
            routes: [{ dst: '0.0.0.0/0' }],
            dataDir: join(workerDir, 'cni-ipam'),
          },
        },
      ],
    },
    null,
    2,
  );
}

interface Ports {
  readonly scheduler: number;
  readonly proxyHealthz: number;
  readonly proxyMetrics: number;
  readonly dnsReady: number;
}

interface KubeletPorts {
  readonly kubelet: number;
  readonly kubeletHealthz: number;
}

/** What one worker's kubelet is configured from. */
interface KubeletSetup {
  readonly workerDir: string;
  readonly worker: Worker;
  /** containerd's socket. */
  readonly socket: string;
  readonly ports: KubeletPorts;
  /** The directory of the CA and the node's serving certificate. */
  readonly pki: string;
}

function kubeletConfig({ workerDir, worker, socket, ports, pki }: KubeletSetup): string {
  return dump({
    apiVersion: 'kubelet.config.k8s.io/v1beta1',
    kind: 'KubeletConfiguration',
    // Kubernetes 1.35+ refuses cgroup v1 unless told; these machines have only v1.
    failCgroupV1: false,
    cgroupDriver: 'cgroupfs',
    // Each node's pods in a cgroup tree of its own, created by the harness.
    cgroupRoot: `/${worker.cgroupRoot}`,
    failSwapOn: false,
    address: NODE_NETWORK.gateway,
    port: ports.kubelet,
    readOnlyPort: 0,
    healthzBindAddress: '127.0.0.1',
    healthzPort: ports.kubeletHealthz,
    clusterDNS: [NODE_NETWORK.gateway],
    clusterDomain: CLUSTER_DOMAIN,
    // Pods get cluster names only, not the host's search domains and resolvers.
    resolvConf: '',
    authentication: {
      anonymous: { enabled: false },
      webhook: { enabled: true },
      x509: { clientCAFile: join(pki, 'ca.crt') },
    },
    authorization: { mode: 'Webhook' },
    tlsCertFile: join(pki, `${worker.name}.crt`),
    tlsPrivateKeyFile: join(pki, `${worker.name}.key`),
    containerRuntimeEndpoint: `unix://${socket}`,
    podLogsDir: join(workerDir, 'pod-logs'),
    // Imported images cannot be pulled again: never collect them.
    imageGCHighThresholdPercent: 100,
    imageGCLowThresholdPercent: 99,
    evictionHard: {
      'memory.available': '50Mi',
      'nodefs.available': '1%',
      'nodefs.inodesFree': '1%',
      'imagefs.available': '1%',
    },
    serializeImagePulls: false,
    // Mounted ConfigMaps follow their object within seconds, so the reloader sees a change soon.
    syncFrequency: '10s',
    maxPods: 40,
    shutdownGracePeriod: '0s',
    shutdownGracePeriodCriticalPods: '0s',
    registerNode: true,
  });
}

function kubeProxyConfig(kubeconfig: string, ports: Ports): string {
  return dump({
    apiVersion: 'kubeproxy.config.k8s.io/v1alpha1',
    kind: 'KubeProxyConfiguration',
    mode: 'nftables',
    clientConnection: { kubeconfig },
    hostnameOverride: WORKERS[0]?.name,
    bindAddress: '127.0.0.1',
    healthzBindAddress: `127.0.0.1:${String(ports.proxyHealthz)}`,
    metricsBindAddress: `127.0.0.1:${String(ports.proxyMetrics)}`,
    clusterCIDR: NODE_NETWORK.podCidr,
    nodePortAddresses: [`${NODE_NETWORK.gateway}/32`],
    // Leave the host's conntrack sysctls alone.
    conntrack: {
      maxPerCore: 0,
      min: 0,
      tcpEstablishedTimeout: '0s',
      tcpCloseWaitTimeout: '0s',
    },
  });
}

function corefile(kubeconfig: string, ports: Ports): string {
  return `${CLUSTER_DOMAIN}:53 {
  bind ${NODE_NETWORK.gateway}
  errors
  ready 127.0.0.1:${String(ports.dnsReady)}
  kubernetes ${CLUSTER_DOMAIN} {
    kubeconfig ${kubeconfig} nats-manager-local
    pods insecure
    ttl 5
  }
  cache 5
  loadbalance
}
`;
}

/** Objects every node cluster has: DNS's read access, the default StorageClass. */
function clusterObjects(): unknown[] {
  return [
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRole',
      metadata: { name: 'localplane:coredns' },
      rules: [
        {
          apiGroups: [''],
          resources: ['services', 'pods', 'namespaces'],
          verbs: ['list', 'watch'],
        },
        {
          apiGroups: ['discovery.k8s.io'],
          resources: ['endpointslices'],
          verbs: ['list', 'watch'],
        },
      ],
    },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRoleBinding',
      metadata: { name: 'localplane:coredns' },
      roleRef: {
        apiGroup: 'rbac.authorization.k8s.io',
        kind: 'ClusterRole',
        name: 'localplane:coredns',
      },
      subjects: [
        { apiGroup: 'rbac.authorization.k8s.io', kind: 'User', name: 'localplane:coredns' },
      ],
    },
    {
      apiVersion: 'storage.k8s.io/v1',
      kind: 'StorageClass',
      metadata: {
        name: STORAGE_CLASS,
        annotations: { 'storageclass.kubernetes.io/is-default-class': 'true' },
      },
      provisioner: 'kubernetes.io/no-provisioner',
      volumeBindingMode: 'WaitForFirstConsumer',
      reclaimPolicy: 'Retain',
      // The volume pool resizes a grown claim's volume, as a CSI driver's resizer would.
      allowVolumeExpansion: true,
    },
  ];
}

function objectPath(object: {
  apiVersion: string;
  kind: string;
  metadata: { name: string };
}): string {
  const plural: Record<string, string> = {
    ClusterRole: 'clusterroles',
    ClusterRoleBinding: 'clusterrolebindings',
    StorageClass: 'storageclasses',
    PersistentVolume: 'persistentvolumes',
  };
  const base = object.apiVersion.includes('/')
    ? `/apis/${object.apiVersion}`
    : `/api/${object.apiVersion}`;
  return `${base}/${plural[object.kind] ?? ''}/${object.metadata.name}`;
}

interface PersistentVolumeList {
  items: {
    metadata: { name: string; deletionTimestamp?: string; labels?: Record<string, string> };
    spec: { local?: { path: string }; capacity?: { storage?: string } };
    status?: { phase?: string };
  }[];
}

interface ClaimList {
  items: {
    metadata: { name: string; namespace: string };
    spec: { volumeName?: string; resources?: { requests?: { storage?: string } } };
    status?: { phase?: string; capacity?: { storage?: string } };
  }[];
}

function bytes(size: string): bigint {
  return quantityToBytes(parseQuantity(size));
}

/** What a bound claim asks for beyond the capacity it reports; undefined when nothing. */
function grownRequest(claim: ClaimList['items'][number]): string | undefined {
  const requested = claim.spec.resources?.requests?.storage;
  const capacity = claim.status?.capacity?.storage;
  if (requested === undefined || claim.status?.phase !== 'Bound') return undefined;
  return capacity !== undefined && bytes(requested) <= bytes(capacity) ? undefined : requested;
}

/** A volume no claim holds yet, or one being bound: it counts towards the free ones. */
function isFree(phase: string | undefined): boolean {
  return phase === 'Available' || phase === 'Pending' || phase === undefined;
}

/**
 * Keeps local PersistentVolumes ready for claims, as a provisioner would: a pool to start with,
 * a released volume wiped and deleted, a new one whenever fewer than a few are free. And resizes
 * them as a CSI driver's resizer would: a bound claim that asks for more than its volume holds
 * gets the volume's capacity raised, then its status.capacity (a local volume is a directory, so
 * the size is nominal: nothing on disk changes).
 */
class VolumePool {
  private next = 0;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> = Promise.resolve();

  private readonly server: string;
  private readonly tls: TlsClient;
  private readonly dir: string;
  private readonly log: Log;

  constructor(server: string, tls: TlsClient, dir: string, log: Log) {
    this.server = server;
    this.tls = tls;
    this.dir = dir;
    this.log = log;
  }

  private async create(node: string): Promise<void> {
    const name = `${node}-pv-${String(this.next++)}`;
    const path = join(this.dir, name);
    mkdirSync(path, { recursive: true });
    const pv = {
      apiVersion: 'v1',
      kind: 'PersistentVolume',
      metadata: { name, labels: { [POOL_LABEL]: node } },
      spec: {
        capacity: { storage: VOLUME_SIZE },
        accessModes: ['ReadWriteOnce'],
        persistentVolumeReclaimPolicy: 'Retain',
        storageClassName: STORAGE_CLASS,
        volumeMode: 'Filesystem',
        local: { path },
        nodeAffinity: {
          required: {
            nodeSelectorTerms: [
              {
                matchExpressions: [
                  { key: 'kubernetes.io/hostname', operator: 'In', values: [node] },
                ],
              },
            ],
          },
        },
      },
    };
    const res = await planeRequest(`${this.server}/api/v1/persistentvolumes`, this.tls, {
      method: 'POST',
      body: pv,
    });
    if (res.status !== 201) throw new Error(`creating ${name}: ${String(res.status)} ${res.body}`);
  }

  /** Deletes a volume its claim has let go of and wipes its directory for the next one. */
  private async release(pv: PersistentVolumeList['items'][number]): Promise<void> {
    await planeRequest(`${this.server}/api/v1/persistentvolumes/${pv.metadata.name}`, this.tls, {
      method: 'DELETE',
    });
    if (pv.spec.local !== undefined) rmSync(pv.spec.local.path, { recursive: true, force: true });
    this.log(`volume ${pv.metadata.name} released: wiped and deleted`);
  }

  async reconcile(): Promise<void> {
    const res = await planeRequest(
      `${this.server}/api/v1/persistentvolumes?labelSelector=${encodeURIComponent(POOL_LABEL)}`,
      this.tls,
    );
    if (res.status !== 200) return;
    const list = JSON.parse(res.body) as PersistentVolumeList;
    const free = new Map<string, number>(WORKERS.map((worker) => [worker.name, 0]));
    for (const pv of list.items) {
      const phase = pv.status?.phase;
      if (pv.metadata.deletionTimestamp !== undefined) continue;
      const node = pv.metadata.labels?.[POOL_LABEL] ?? '';
      if (isFree(phase)) free.set(node, (free.get(node) ?? 0) + 1);
      if (phase === 'Released' || phase === 'Failed') await this.release(pv);
    }
    for (const [node, count] of free) {
      for (let n = count; n < VOLUMES_FREE_PER_NODE; n++) await this.create(node);
    }
    await this.resize(list.items);
  }

  private async resize(pool: PersistentVolumeList['items']): Promise<void> {
    const res = await planeRequest(`${this.server}/api/v1/persistentvolumeclaims`, this.tls);
    if (res.status !== 200) return;
    const volumes = new Map(pool.map((pv) => [pv.metadata.name, pv]));
    for (const claim of (JSON.parse(res.body) as ClaimList).items) {
      const pv = volumes.get(claim.spec.volumeName ?? '');
      const requested = grownRequest(claim);
      if (pv === undefined || requested === undefined) continue;
      const volumeCapacity = pv.spec.capacity?.storage;
      if (volumeCapacity === undefined || bytes(volumeCapacity) < bytes(requested)) {
        await this.patch(`/api/v1/persistentvolumes/${pv.metadata.name}`, {
          spec: { capacity: { storage: requested } },
        });
      }
      const { namespace, name } = claim.metadata;
      await this.patch(`/api/v1/namespaces/${namespace}/persistentvolumeclaims/${name}/status`, {
        status: { capacity: { storage: requested } },
      });
      this.log(`volume ${pv.metadata.name} of claim ${namespace}/${name} resized to ${requested}`);
    }
  }

  private async patch(path: string, body: unknown): Promise<void> {
    const res = await planeRequest(`${this.server}${path}`, this.tls, {
      method: 'PATCH',
      body,
      contentType: 'application/merge-patch+json',
    });
    if (res.status !== 200) throw new Error(`patching ${path}: ${String(res.status)} ${res.body}`);
  }

  start(): void {
    const tick = (): void => {
      this.running = this.reconcile().catch((error: unknown) => {
        this.log(`volume pool: ${String(error)}`);
      });
      void this.running.then(() => {
        if (this.timer !== undefined) this.timer = setTimeout(tick, 1_000);
      });
    };
    this.timer = setTimeout(tick, 1_000);
  }

  async stop(): Promise<void> {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    await this.running;
  }
}

/** How a worker's kubelet is started, kept to start it again. */
interface KubeletLaunch {
  readonly worker: Worker;
  readonly args: string[];
  readonly healthzPort: number;
}

interface WorkerProcesses {
  readonly containerd: PlaneProcess;
  readonly kubelet: PlaneProcess;
  readonly launch: KubeletLaunch;
}

function writeKeyPair(pki: string, name: string, pair: KeyPair): void {
  writeFileSync(join(pki, `${name}.crt`), pair.certPem, { mode: 0o600 });
  writeFileSync(join(pki, `${name}.key`), pair.keyPem, { mode: 0o600 });
}

/** The cgroup of each node's pods in every hierarchy; cpuset needs its CPUs and memory nodes. */
function createCgroupRoot(name: string): void {
  for (const mount of cgroupMountPoints()) {
    const dir = join(mount, name);
    mkdirSync(dir, { recursive: true });
    if (mount.endsWith('/cpuset')) {
      for (const file of ['cpuset.cpus', 'cpuset.mems']) {
        writeFileSync(join(dir, file), readFileSync(join(mount, file), 'utf8').trim());
      }
    }
  }
}

/**
 * Starts the nodes' parts on a plane whose API server already serves with the node flags. On
 * failure everything it started is stopped and the host put back before the error is thrown.
 */
export async function startNode(ctx: NodeContext): Promise<RunningNode> {
  const nodeDir = join(ctx.dir, 'node');
  const pki = join(nodeDir, 'pki');
  mkdirSync(pki, { recursive: true });
  mkdirSync(join(nodeDir, 'volumes'), { recursive: true });
  const workerDir = (worker: Worker): string => join(nodeDir, worker.name);
  const socketOf = (worker: Worker): string =>
    join(workerDir(worker), 'containerd', 'containerd.sock');
  for (const worker of WORKERS) {
    for (const sub of ['cni', 'cni-ipam', 'pod-logs', 'kubelet', 'containerd']) {
      mkdirSync(join(workerDir(worker), sub), { recursive: true });
    }
  }
  const started = Date.now();
  const snapshot = snapshotHost(ctx.dir, NODE_NETWORK.bridge, WORKERS.map(socketOf), [
    'kubepods',
    ...WORKERS.map((worker) => worker.cgroupRoot),
  ]);
  const processes: PlaneProcess[] = [];
  let apiForward: ApiServerForward | undefined;
  const pool = new VolumePool(
    ctx.server,
    { ca: ctx.ca.certPem, cert: ctx.admin.certPem, key: ctx.admin.keyPem },
    join(nodeDir, 'volumes'),
    ctx.log,
  );
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    await pool.stop();
    // Kubelets first, so they do not restart what is being torn down; pods go with SIGKILL.
    await Promise.all(
      processes
        .filter((proc) => !proc.name.startsWith('containerd'))
        .map((proc) => stopProcess(proc, 3_000)),
    );
    await apiForward?.close();
    cleanupHost(snapshot);
  };
  const adminTls: TlsClient = {
    ca: ctx.ca.certPem,
    cert: ctx.admin.certPem,
    key: ctx.admin.keyPem,
  };
  const api = (path: string): string => `${ctx.server}${path}`;
  const workers = new Map<string, WorkerProcesses>();
  let restartWorker = (name: string): Promise<WorkerRestart> =>
    Promise.reject(new Error(`worker ${name} has not started`));
  const start = (name: string, bin: string, args: string[]): PlaneProcess => {
    const proc = startProcess(ctx.dir, name, bin, args);
    processes.push(proc);
    return proc;
  };

  try {
    // The bridge exists before anything binds its address (CoreDNS, the kubelets).
    await mustExec('ip', ['link', 'add', NODE_NETWORK.bridge, 'type', 'bridge']);
    await mustExec('ip', ['addr', 'add', `${NODE_NETWORK.gateway}/24`, 'dev', NODE_NETWORK.bridge]);
    await mustExec('ip', ['link', 'set', NODE_NETWORK.bridge, 'up']);
    // Pod-to-ClusterIP traffic between pods on the one bridge must pass kube-proxy's rules.
    writeFileSync('/proc/sys/net/bridge/bridge-nf-call-iptables', '1');
    // In-cluster clients (the manager as a pod) reach the API server by the `kubernetes` Service.
    const apiPort = Number(new URL(ctx.server).port);
    apiForward = await forwardApiServer(NODE_NETWORK.gateway, apiPort);
    await publishKubernetesEndpoints(
      ctx.server,
      { ca: ctx.ca.certPem, cert: ctx.admin.certPem, key: ctx.admin.keyPem },
      NODE_NETWORK.gateway,
      apiPort,
    );
    for (const worker of WORKERS) {
      writeFileSync(
        join(workerDir(worker), 'cni', '10-nats-manager.conflist'),
        cniConfig(workerDir(worker), worker),
      );
      createCgroupRoot(worker.cgroupRoot);
    }

    const ports: Ports = {
      scheduler: await ctx.freePort(),
      proxyHealthz: await ctx.freePort(),
      proxyMetrics: await ctx.freePort(),
      dnsReady: await ctx.freePort(),
    };

    // Identities: each part as the user bootstrap RBAC (or the Node authorizer) expects.
    const ca = ctx.ca;
    writeFileSync(join(pki, 'ca.crt'), ca.certPem);
    const kubeconfigFor = (file: string, user: string, organizations: string[] = []): string => {
      const pair = issueCertificate(ca, {
        commonName: user,
        organizations,
        usage: 'client',
        validDays: 365,
      });
      const path = join(nodeDir, file);
      writeFileSync(path, kubeconfigYaml(ctx.server, ca.certPem, user, pair), { mode: 0o600 });
      return path;
    };
    const schedulerKubeconfig = kubeconfigFor('kube-scheduler.kubeconfig', 'system:kube-scheduler');
    const proxyKubeconfig = kubeconfigFor('kube-proxy.kubeconfig', 'system:kube-proxy');
    const dnsKubeconfig = kubeconfigFor('coredns.kubeconfig', 'localplane:coredns');

    for (const object of clusterObjects()) {
      const typed = object as { apiVersion: string; kind: string; metadata: { name: string } };
      const res = await planeRequest(
        `${api(objectPath(typed))}?fieldManager=${FIELD_MANAGER}&force=true`,
        adminTls,
        { method: 'PATCH', body: object, contentType: 'application/apply-patch+yaml' },
      );
      if (res.status >= 300)
        throw new Error(`applying ${typed.kind} ${typed.metadata.name}: ${res.body}`);
    }

    const scheduler = start('kube-scheduler', ctx.bins['kube-scheduler'], [
      `--kubeconfig=${schedulerKubeconfig}`,
      `--authentication-kubeconfig=${schedulerKubeconfig}`,
      `--authorization-kubeconfig=${schedulerKubeconfig}`,
      '--leader-elect=false',
      '--bind-address=127.0.0.1',
      `--secure-port=${String(ports.scheduler)}`,
      '--v=1',
    ]);
    const proxyConf = join(nodeDir, 'kube-proxy.yaml');
    writeFileSync(proxyConf, kubeProxyConfig(proxyKubeconfig, ports));
    const proxy = start('kube-proxy', ctx.bins['kube-proxy'], [`--config=${proxyConf}`, '--v=1']);
    const corefilePath = join(nodeDir, 'Corefile');
    writeFileSync(corefilePath, corefile(dnsKubeconfig, ports));
    const dns = start('coredns', ctx.bins.coredns, [`-conf=${corefilePath}`]);

    // The shim must be on containerd's PATH; runc comes from the Debian package.
    const containerdPath = `${dirnameOf(ctx.bins['containerd-shim-runc-v2'])}:${process.env.PATH ?? ''}:/usr/sbin:/sbin`;
    const ctrOf =
      (worker: Worker) =>
      (args: string[], timeoutMs?: number): Promise<{ ok: boolean; out: string }> =>
        exec(
          ctx.bins.ctr,
          [`--address=${socketOf(worker)}`, '--namespace=k8s.io', ...args],
          timeoutMs,
        );
    const suffixOf = (worker: Worker): string => worker.name.slice(worker.name.lastIndexOf('-'));
    const launchContainerd = async (worker: Worker): Promise<PlaneProcess> => {
      const containerdConf = join(workerDir(worker), 'containerd.toml');
      const containerd = start(`containerd${suffixOf(worker)}`, '/usr/bin/env', [
        `PATH=${containerdPath}`,
        ctx.bins.containerd,
        `--config=${containerdConf}`,
        '--log-level=warn',
      ]);
      const ctr = ctrOf(worker);
      await waitUntil(
        containerd,
        'containerd to serve',
        async () => (await ctr(['version'], 5_000)).ok,
      );
      return containerd;
    };
    const launchKubelet = async (launch: KubeletLaunch): Promise<PlaneProcess> => {
      const kubelet = start(`kubelet${suffixOf(launch.worker)}`, ctx.bins.kubelet, launch.args);
      const healthz = `http://127.0.0.1:${String(launch.healthzPort)}/healthz`;
      await waitUntil(kubelet, `the kubelet of ${launch.worker.name} to serve`, async () => {
        return (await httpGet(healthz)).status === 200;
      });
      return kubelet;
    };
    const startWorker = async (worker: Worker): Promise<void> => {
      const dir = workerDir(worker);
      const socket = socketOf(worker);
      // containerd, with the images imported under the names pods use.
      writeFileSync(join(dir, 'containerd.toml'), containerdConfig(dir, socket));
      const containerd = await launchContainerd(worker);
      const ctr = ctrOf(worker);
      for (const image of ctx.images) {
        const result = await ctr(['images', 'import', image.archive], 120_000);
        if (!result.ok) throw new Error(`importing ${image.name}: ${result.out.trim()}`);
      }
      writeKeyPair(
        pki,
        worker.name,
        issueCertificate(ca, {
          commonName: `system:node:${worker.name}`,
          organizations: ['system:nodes'],
          dnsNames: [worker.name],
          ipAddresses: [NODE_NETWORK.gateway, '127.0.0.1'],
          usage: 'both',
          validDays: 365,
        }),
      );
      const kubeletKubeconfig = kubeconfigFor(
        `${worker.name}.kubeconfig`,
        `system:node:${worker.name}`,
        ['system:nodes'],
      );
      const kubeletConf = join(dir, 'kubelet.yaml');
      const kubeletPorts = { kubelet: await ctx.freePort(), kubeletHealthz: await ctx.freePort() };
      writeFileSync(
        kubeletConf,
        kubeletConfig({ workerDir: dir, worker, socket, ports: kubeletPorts, pki }),
      );
      const launch: KubeletLaunch = {
        worker,
        healthzPort: kubeletPorts.kubeletHealthz,
        args: [
          `--config=${kubeletConf}`,
          `--kubeconfig=${kubeletKubeconfig}`,
          `--root-dir=${join(dir, 'kubelet')}`,
          `--cert-dir=${pki}`,
          `--hostname-override=${worker.name}`,
          `--node-ip=${NODE_NETWORK.gateway}`,
          `--node-labels=topology.kubernetes.io/zone=${worker.zone}`,
          '--v=1',
        ],
      };
      const kubelet = await launchKubelet(launch);
      workers.set(worker.name, { containerd, kubelet, launch });
      await waitUntil(kubelet, `node ${worker.name} Ready`, async () => {
        const res = await planeRequest(api(`/api/v1/nodes/${worker.name}`), adminTls);
        if (res.status !== 200) return false;
        const node = JSON.parse(res.body) as {
          status?: { conditions?: { type: string; status: string }[] };
        };
        return (
          node.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') === true
        );
      });
    };
    await Promise.all(WORKERS.map(startWorker));
    restartWorker = async (name: string): Promise<WorkerRestart> => {
      const running = workers.get(name);
      if (running === undefined)
        throw new Error(`no worker ${name}: ${[...workers.keys()].join(', ')}`);
      const { worker } = running.launch;
      const stoppedAt = Date.now();
      await stopProcess(running.kubelet, 3_000);
      // A power cut: no container gets to stop on its own, and no kubelet sees them go.
      const ctr = ctrOf(worker);
      const tasks = (await ctr(['tasks', 'ls', '--quiet'], 10_000)).out.split('\n');
      const ids = tasks.map((id) => id.trim()).filter((id) => id !== '');
      await Promise.all(ids.map((id) => ctr(['tasks', 'kill', '--signal', 'SIGKILL', id], 10_000)));
      await stopProcess(running.containerd, 5_000);
      const containerd = await launchContainerd(worker);
      const kubelet = await launchKubelet(running.launch);
      workers.set(name, { containerd, kubelet, launch: running.launch });
      return { worker: name, containersKilled: ids.length, downMs: Date.now() - stoppedAt };
    };

    await waitUntil(scheduler, 'kube-scheduler /healthz', async () => {
      return (
        (await planeRequest(`https://127.0.0.1:${String(ports.scheduler)}/healthz`, {})).status ===
        200
      );
    });
    await waitUntil(dns, 'CoreDNS ready', async () => {
      return (await httpGet(`http://127.0.0.1:${String(ports.dnsReady)}/ready`)).status === 200;
    });
    await waitUntil(proxy, 'kube-proxy /livez', async () => {
      return (await httpGet(`http://127.0.0.1:${String(ports.proxyHealthz)}/livez`)).status === 200;
    });
    await pool.reconcile();
    pool.start();
    const info: LocalNode = {
      workers: WORKERS.map((worker) => ({ name: worker.name, zone: worker.zone })),
      podCidr: NODE_NETWORK.podCidr,
      serviceCidr: NODE_NETWORK.serviceCidr,
      clusterDns: NODE_NETWORK.gateway,
      clusterDomain: CLUSTER_DOMAIN,
      images: ctx.images.map((image) => image.name),
      startedInMs: Date.now() - started,
    };
    return { info, snapshot, restartWorker: (name) => restartWorker(name), stop };
  } catch (error) {
    await stop();
    throw error;
  }
}

function dirnameOf(path: string): string {
  return path.slice(0, path.lastIndexOf('/'));
}
