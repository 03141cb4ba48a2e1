// The manager's configuration: flags override environment variables, which override defaults.
// Names follow the upstream manager where it has one (NATS_CR_NAME, NATS_CR_NAMESPACE, ...).
// Parsing is pure, so every rule here is unit-tested without a process.
import { isLogLevel, LOG_LEVELS, type LogLevel } from '../base/log.ts';
import { DEFAULT_IMAGES, type NatsImages } from '../render/context.ts';
import { servedNameProblem } from '../render/limits.ts';

export type CertificateMode = 'secret' | 'files';

export interface ManagerConfig {
  /** The only NATS resource served (the single-instance rule). */
  readonly natsName: string;
  readonly natsNamespace: string;
  readonly images: NatsImages;
  readonly clusterDomain: string;
  /** Namespace the manager runs in: its Service, certificate Secret and Lease live there. */
  readonly managerNamespace: string;
  /** The manager's own identity, the one allowed to write managed children. */
  readonly managerUsername: string;
  /** Break-glass identities that may edit managed children directly. */
  readonly breakGlassUsers: readonly string[];
  readonly breakGlassGroups: readonly string[];
  readonly webhookPort: number;
  readonly webhookHost: string;
  /** Name of the Service in front of the webhook server (used for the certificate's names). */
  readonly webhookServiceName: string;
  /** `secret`: the manager keeps its own CA in a Secret; `files`: certificates mounted (cert-manager). */
  readonly certificateMode: CertificateMode;
  readonly certificateDir: string;
  /**
   * Whether the manager writes the CA into its webhook configurations. Off when another writes
   * it (cert-manager's CA injector): the manager then only creates a deleted configuration again.
   */
  readonly injectCaBundle: boolean;
  readonly certificateSecretName: string;
  /** How often the certificate Secret is re-read, to renew in time and see other replicas' writes. */
  readonly certificateCheckSeconds: number;
  readonly metricsAddress: string;
  readonly probeAddress: string;
  readonly leaderElect: boolean;
  readonly leaderElectionId: string;
  readonly logLevel: LogLevel;
  /**
   * Running as a pod: the service account's token and KUBERNETES_SERVICE_HOST must be there, and
   * their absence is an error, never a reason to start an embedded plane.
   */
  readonly inCluster: boolean;
  /**
   * /metrics answers anyone who reaches it. In a cluster a non-loopback metrics address needs
   * this said explicitly: the NetworkPolicy is then what limits who scrapes.
   */
  readonly metricsAllowUnauthenticated: boolean;
  /** Shutdown is cut short after this long, inside the pod's termination grace period. */
  readonly shutdownTimeoutSeconds: number;
}

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

interface Setting {
  readonly flag: string;
  readonly env: string;
  readonly fallback: string;
}

const SETTINGS = {
  natsName: { flag: 'nats-cr-name', env: 'NATS_CR_NAME', fallback: 'eventing-nats' },
  natsNamespace: { flag: 'nats-cr-namespace', env: 'NATS_CR_NAMESPACE', fallback: 'kyma-system' },
  natsImage: { flag: 'nats-image', env: 'NATS_IMAGE', fallback: DEFAULT_IMAGES.nats },
  reloaderImage: {
    flag: 'config-reloader-image',
    env: 'NATS_CONFIG_RELOADER_IMAGE',
    fallback: DEFAULT_IMAGES.configReloader,
  },
  exporterImage: {
    flag: 'metrics-exporter-image',
    env: 'NATS_METRICS_EXPORTER_IMAGE',
    fallback: DEFAULT_IMAGES.metricsExporter,
  },
  clusterDomain: { flag: 'cluster-domain', env: 'CLUSTER_DOMAIN', fallback: 'cluster.local' },
  managerNamespace: { flag: 'namespace', env: 'POD_NAMESPACE', fallback: 'kyma-system' },
  serviceAccount: {
    flag: 'service-account',
    env: 'SERVICE_ACCOUNT_NAME',
    fallback: 'nats-manager',
  },
  breakGlassUsers: { flag: 'break-glass-users', env: 'BREAK_GLASS_USERS', fallback: '' },
  breakGlassGroups: { flag: 'break-glass-groups', env: 'BREAK_GLASS_GROUPS', fallback: '' },
  webhookPort: { flag: 'webhook-port', env: 'WEBHOOK_PORT', fallback: '9443' },
  webhookHost: { flag: 'webhook-host', env: 'WEBHOOK_HOST', fallback: '0.0.0.0' },
  webhookService: {
    flag: 'webhook-service',
    env: 'WEBHOOK_SERVICE',
    fallback: 'nats-manager-webhook',
  },
  certificateMode: { flag: 'cert-mode', env: 'CERT_MODE', fallback: 'secret' },
  certificateDir: {
    flag: 'cert-dir',
    env: 'CERT_DIR',
    fallback: '/tmp/k8s-webhook-server/serving-certs',
  },
  injectCaBundle: { flag: 'inject-ca-bundle', env: 'INJECT_CA_BUNDLE', fallback: 'true' },
  certificateSecret: {
    flag: 'cert-secret',
    env: 'CERT_SECRET_NAME',
    fallback: 'nats-manager-webhook-certs',
  },
  certificateCheck: { flag: 'cert-check-interval', env: 'CERT_CHECK_INTERVAL', fallback: '60' },
  metricsAddress: { flag: 'metrics-bind-address', env: 'METRICS_BIND_ADDRESS', fallback: ':8080' },
  probeAddress: {
    flag: 'health-probe-bind-address',
    env: 'HEALTH_PROBE_BIND_ADDRESS',
    fallback: ':8081',
  },
  leaderElect: { flag: 'leader-elect', env: 'LEADER_ELECT', fallback: 'false' },
  leaderElectionId: {
    flag: 'leader-election-id',
    env: 'LEADER_ELECTION_ID',
    fallback: 'nats-manager.operator.kyma-project.io',
  },
  logLevel: { flag: 'log-level', env: 'LOG_LEVEL', fallback: 'info' },
  inCluster: { flag: 'in-cluster', env: 'IN_CLUSTER', fallback: 'false' },
  metricsAllowUnauthenticated: {
    flag: 'metrics-allow-unauthenticated',
    env: 'METRICS_ALLOW_UNAUTHENTICATED',
    fallback: 'false',
  },
  shutdownTimeout: {
    flag: 'shutdown-timeout',
    env: 'SHUTDOWN_TIMEOUT',
    fallback: '25',
  },
} as const satisfies Record<string, Setting>;

type SettingName = keyof typeof SETTINGS;

/** What each setting does: the README's configuration reference is generated from these. */
const HELP: Record<SettingName, string> = {
  natsName: 'The one NATS resource served (others are refused and reported)',
  natsNamespace: 'Its namespace; the children and the children Role live there',
  natsImage: 'Image of the nats container',
  reloaderImage: 'Image of the config reloader sidecar',
  exporterImage: 'Image of the Prometheus exporter sidecar',
  clusterDomain: 'DNS domain of the cluster (route and client URLs)',
  managerNamespace: "The manager's namespace: webhook Service, certificate Secret, Lease",
  serviceAccount: "The manager's service account: the one identity allowed to write children",
  breakGlassUsers:
    'Users who may edit managed children directly (comma-separated; reverted anyway)',
  breakGlassGroups: 'Groups who may do so, e.g. `nats-manager:break-glass` in deploy/',
  webhookPort: 'Port of the HTTPS admission server (`0`: a free port)',
  webhookHost: 'Address it listens on',
  webhookService: 'Service in front of it (names in the serving certificate)',
  certificateMode:
    '`secret`: the manager keeps a CA in a Secret; `files`: `tls.crt`, `tls.key`, `ca.crt` from `--cert-dir`',
  certificateDir: 'Where `files` mode reads the certificate (re-read when it changes)',
  injectCaBundle:
    "Write the CA into the webhook configurations (`false` under cert-manager's CA injector)",
  certificateSecret: 'The Secret of `secret` mode',
  certificateCheck: 'Seconds between checks of the certificate and the webhook configurations',
  metricsAddress: '`/metrics` (Prometheus); `[host]:port`',
  probeAddress: '`/healthz`, and `/readyz` once the webhooks serve and the caches are synced',
  leaderElect: 'Only the holder of a Lease reconciles (every replica serves the webhooks)',
  leaderElectionId: "The Lease's name, in the manager's namespace",
  logLevel: '`debug`, `info`, `warn` or `error`',
  inCluster:
    'Run as a pod: the service account or an error, never an embedded plane (set in deploy/)',
  metricsAllowUnauthenticated:
    'With `--in-cluster`, allow a metrics address beyond loopback (metrics have no authentication)',
  shutdownTimeout: 'Seconds a shutdown may take before the process exits anyway',
};

export interface SettingReference extends Setting {
  readonly help: string;
}

/** Every setting: flag, environment variable, default and what it does. */
export const CONFIG_SETTINGS: readonly SettingReference[] = (
  Object.keys(SETTINGS) as SettingName[]
).map((name) => ({ ...SETTINGS[name], help: HELP[name] }));

/** The README's configuration table: one row per setting, generated from the settings. */
export function configurationReference(): string[][] {
  const code = (value: string): string => (value === '' ? 'none' : `\`${value}\``);
  return CONFIG_SETTINGS.map((s) => [`\`--${s.flag}\``, `\`${s.env}\``, code(s.fallback), s.help]);
}

/** `--name=value` and `--name value`; a bare `--name` is `true` (for booleans). */
function parseFlags(argv: readonly string[]): Map<string, string> {
  const known = new Set<string>(Object.values(SETTINGS).map((s) => s.flag));
  const flags = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] ?? '';
    if (!arg.startsWith('--')) throw new ConfigError(`unexpected argument "${arg}"`);
    const [name = '', inline] = arg.slice(2).split(/=(.*)/s, 2);
    if (!known.has(name)) throw new ConfigError(`unknown flag --${name}`);
    if (inline !== undefined) flags.set(name, inline);
    else if (argv[i + 1] !== undefined && !(argv[i + 1] ?? '').startsWith('--'))
      flags.set(name, argv[++i] ?? '');
    else flags.set(name, 'true');
  }
  return flags;
}

function list(value: string): string[] {
  return value
    .split(',')
    .map((item) => item.trim())
    .filter((item) => item !== '');
}

/** 0 asks the system for a free port (tests, several managers on one machine). */
function port(name: string, value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isInteger(n) || n < 0 || n > 65_535) {
    throw new ConfigError(`${name}: "${value}" is not a port number (0-65535)`);
  }
  return n;
}

function seconds(name: string, value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n <= 0) {
    throw new ConfigError(`${name}: "${value}" is not a positive number of seconds`);
  }
  return n;
}

function bool(name: string, value: string): boolean {
  if (value === 'true') return true;
  if (value === 'false') return false;
  throw new ConfigError(`${name}: "${value}" is neither true nor false`);
}

/** Loopback hosts: 127.0.0.0/8, ::1, localhost. An empty host means every interface. */
function isLoopback(metricsAddress: string): boolean {
  const host = /^(?:\[([^\]]*)\]|([^:]*)):\d+$/.exec(metricsAddress);
  const name = host?.[1] ?? host?.[2] ?? '';
  return name === 'localhost' || name === '::1' || /^127\.\d+\.\d+\.\d+$/.test(name);
}

export function parseConfig(argv: readonly string[], env: NodeJS.ProcessEnv): ManagerConfig {
  const flags = parseFlags(argv);
  const get = (name: SettingName): string => {
    const setting = SETTINGS[name];
    return flags.get(setting.flag) ?? env[setting.env] ?? setting.fallback;
  };
  const certificateMode = get('certificateMode');
  if (certificateMode !== 'secret' && certificateMode !== 'files') {
    throw new ConfigError(`--cert-mode: "${certificateMode}" must be "secret" or "files"`);
  }
  const managerNamespace = get('managerNamespace');
  const [natsName, natsNamespace] = [get('natsName'), get('natsNamespace')];
  // A name whose children Kubernetes would refuse could never be served: say so at start.
  if (!/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/.test(natsNamespace)) {
    throw new ConfigError(`--nats-cr-namespace: "${natsNamespace}" is not a namespace name`);
  }
  const nameProblem = servedNameProblem(natsName, natsNamespace, get('clusterDomain'));
  if (nameProblem !== undefined) {
    throw new ConfigError(`--nats-cr-name: "${natsName}" ${nameProblem}`);
  }
  const logLevel = get('logLevel');
  if (!isLogLevel(logLevel)) {
    throw new ConfigError(`--log-level: "${logLevel}" is not one of ${LOG_LEVELS.join(', ')}`);
  }
  const inCluster = bool('--in-cluster', get('inCluster'));
  const metricsAllowUnauthenticated = bool(
    '--metrics-allow-unauthenticated',
    get('metricsAllowUnauthenticated'),
  );
  const metricsAddress = get('metricsAddress');
  if (inCluster && !metricsAllowUnauthenticated && !isLoopback(metricsAddress)) {
    throw new ConfigError(
      `--metrics-bind-address: "${metricsAddress}" serves /metrics without authentication beyond the pod; ` +
        'bind it to 127.0.0.1 or say --metrics-allow-unauthenticated=true (and limit scrapers with a NetworkPolicy)',
    );
  }
  return {
    natsName,
    natsNamespace,
    images: {
      nats: get('natsImage'),
      configReloader: get('reloaderImage'),
      metricsExporter: get('exporterImage'),
    },
    clusterDomain: get('clusterDomain'),
    managerNamespace,
    managerUsername: `system:serviceaccount:${managerNamespace}:${get('serviceAccount')}`,
    breakGlassUsers: list(get('breakGlassUsers')),
    breakGlassGroups: list(get('breakGlassGroups')),
    webhookPort: port('--webhook-port', get('webhookPort')),
    webhookHost: get('webhookHost'),
    webhookServiceName: get('webhookService'),
    certificateMode,
    certificateDir: get('certificateDir'),
    injectCaBundle: bool('--inject-ca-bundle', get('injectCaBundle')),
    certificateSecretName: get('certificateSecret'),
    certificateCheckSeconds: seconds('--cert-check-interval', get('certificateCheck')),
    metricsAddress,
    probeAddress: get('probeAddress'),
    leaderElect: bool('--leader-elect', get('leaderElect')),
    leaderElectionId: get('leaderElectionId'),
    logLevel,
    inCluster,
    metricsAllowUnauthenticated,
    shutdownTimeoutSeconds: seconds('--shutdown-timeout', get('shutdownTimeout')),
  };
}
