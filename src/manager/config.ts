// The manager's configuration: flags override environment variables, which override defaults.
// Names follow the upstream manager where it has one (NATS_CR_NAME, NATS_CR_NAMESPACE, ...).
// Parsing is pure, so every rule here is unit-tested without a process.
import { DEFAULT_IMAGES, type NatsImages } from '../render/context.ts';

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
  readonly certificateSecretName: string;
  /** How often the certificate Secret is re-read, to renew in time and see other replicas' writes. */
  readonly certificateCheckSeconds: number;
  readonly metricsAddress: string;
  readonly probeAddress: string;
  readonly leaderElect: boolean;
  readonly leaderElectionId: string;
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
} as const satisfies Record<string, Setting>;

type SettingName = keyof typeof SETTINGS;

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
  return {
    natsName: get('natsName'),
    natsNamespace: get('natsNamespace'),
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
    certificateSecretName: get('certificateSecret'),
    certificateCheckSeconds: seconds('--cert-check-interval', get('certificateCheck')),
    metricsAddress: get('metricsAddress'),
    probeAddress: get('probeAddress'),
    leaderElect: bool('--leader-elect', get('leaderElect')),
    leaderElectionId: get('leaderElectionId'),
  };
}
