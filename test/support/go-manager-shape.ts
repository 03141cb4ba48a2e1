// The children of a NATS resource as the Go NATS manager (1.0.x, chart 0.17.3) leaves them, written
// out by hand from the facts in the project's reference on its behaviour (names, labels, selectors,
// annotations, ports, probes, the claim template, nats.conf in substance), never from our
// renderer: a takeover test against our own rendering would prove nothing. Where the reference is
// silent and a running pod needs a value (mount paths, sidecar arguments), the value is ours, and
// the README says so; those cannot differ on takeover by construction.
import type { KubeObject } from '../../src/base/object.ts';
import type { NatsImages } from '../../src/render/context.ts';

export interface GoManagerInput {
  /** The NATS resource: `eventing-nats` in production. */
  readonly name: string;
  readonly namespace: string;
  readonly uid: string;
  readonly images: NatsImages;
  readonly clusterDomain: string;
  /** 60 characters, as its Secret holds. */
  readonly password: string;
  readonly size: number;
}

/** Its field manager, used with force on every server-side apply. */
export const GO_FIELD_MANAGER = 'nats-manager';
export const GO_FINALIZER = 'nats.operator.kyma-project.io/finalizer';

function objectName(name: string): string {
  return name.includes('nats') ? name : `${name}-nats`;
}

function selector(input: GoManagerInput): Record<string, string> {
  return {
    'app.kubernetes.io/name': 'nats',
    'app.kubernetes.io/instance': input.name === 'eventing-nats' ? 'eventing' : input.name,
    'kyma-project.io/dashboard': 'eventing',
  };
}

const COMMON = {
  'app.kubernetes.io/component': 'nats-manager',
  'app.kubernetes.io/created-by': 'nats-manager',
  'app.kubernetes.io/managed-by': 'nats-manager',
  'app.kubernetes.io/part-of': 'nats-manager',
  'control-plane': 'nats-manager',
  'helm.sh/chart': 'nats-0.17.3',
};

function metadata(
  input: GoManagerInput,
  name: string,
  annotations?: Record<string, string>,
): KubeObject['metadata'] {
  return {
    name,
    namespace: input.namespace,
    labels: { ...COMMON, ...selector(input) },
    ...(annotations === undefined ? {} : { annotations }),
    ownerReferences: [
      {
        apiVersion: 'operator.kyma-project.io/v1alpha1',
        kind: 'NATS',
        name: input.name,
        uid: input.uid,
        controller: true,
        blockOwnerDeletion: true,
      },
    ],
  };
}

/** nats.conf as the reference describes it for size >= 3 with defaults. */
export function goNatsConf(input: GoManagerInput): string {
  const n = objectName(input.name);
  const routes = Array.from(
    { length: input.size },
    (_, i) =>
      `    "nats://${n}-${String(i)}.${n}.${input.namespace}.svc.${input.clusterDomain}:6222"`,
  );
  return [
    'port: 4222',
    'http_port: 8222',
    'pid_file: "/var/run/nats/nats.pid"',
    'server_name: $SERVER_NAME',
    'lame_duck_grace_period: "10s"',
    'lame_duck_duration: "120s"',
    'jetstream {',
    '  max_memory_store: 1073741824',
    '  store_dir: "/data"',
    // The whole claim: the Go manager leaves no headroom for the file system.
    '  max_file_store: 1073741824',
    '}',
    'cluster {',
    `  name: "${n}"`,
    '  port: 6222',
    '  routes: [',
    ...routes,
    '  ]',
    '  cluster_advertise: $CLUSTER_ADVERTISE',
    '  connect_retries: 120',
    '}',
    'include "../nats-secret/resolver.conf"',
    '',
  ].join('\n');
}

function probe(path: string, periodSeconds: number, failureThreshold: number): unknown {
  return {
    httpGet: { path, port: 8222 },
    initialDelaySeconds: 10,
    timeoutSeconds: 5,
    periodSeconds,
    successThreshold: 1,
    failureThreshold,
  };
}

const SECURITY = {
  allowPrivilegeEscalation: false,
  readOnlyRootFilesystem: true,
  capabilities: { drop: ['ALL'] },
};

function statefulSet(input: GoManagerInput): KubeObject {
  const n = objectName(input.name);
  const mounts = [
    { name: 'config', mountPath: '/etc/nats-config' },
    { name: 'resolver', mountPath: '/etc/nats-secret' },
    { name: 'pid', mountPath: '/var/run/nats' },
  ];
  const antiAffinity = (topologyKey: string, weight: number): unknown => ({
    weight,
    podAffinityTerm: { labelSelector: { matchLabels: selector(input) }, topologyKey },
  });
  return {
    apiVersion: 'apps/v1',
    kind: 'StatefulSet',
    metadata: metadata(input, n),
    spec: {
      replicas: input.size,
      podManagementPolicy: 'Parallel',
      serviceName: n,
      selector: { matchLabels: selector(input) },
      template: {
        metadata: {
          labels: { ...COMMON, ...selector(input), nats_cluster: n },
          annotations: { 'prometheus.io/scrape': 'false', 'sidecar.istio.io/inject': 'false' },
        },
        spec: {
          shareProcessNamespace: true,
          priorityClassName: 'nats-manager-priority-class',
          terminationGracePeriodSeconds: 150,
          securityContext: {
            runAsNonRoot: true,
            runAsUser: 1000,
            fsGroup: 10001,
            seccompProfile: { type: 'RuntimeDefault' },
          },
          affinity: {
            podAntiAffinity: {
              preferredDuringSchedulingIgnoredDuringExecution: [
                antiAffinity('topology.kubernetes.io/zone', 70),
                antiAffinity('kubernetes.io/hostname', 35),
              ],
            },
          },
          containers: [
            {
              name: 'nats',
              image: input.images.nats,
              command: ['nats-server', '--config', '/etc/nats-config/nats.conf'],
              env: [
                { name: 'SERVER_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
                {
                  name: 'CLUSTER_ADVERTISE',
                  value: `$(SERVER_NAME).${n}.${input.namespace}.svc.${input.clusterDomain}:6222`,
                },
                { name: 'POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
                {
                  name: 'POD_NAMESPACE',
                  valueFrom: { fieldRef: { fieldPath: 'metadata.namespace' } },
                },
              ],
              ports: [
                { name: 'client', containerPort: 4222, protocol: 'TCP' },
                { name: 'cluster', containerPort: 6222, protocol: 'TCP' },
                { name: 'monitor', containerPort: 8222, protocol: 'TCP' },
              ],
              resources: {
                limits: { cpu: '500m', memory: '1Gi' },
                requests: { cpu: '40m', memory: '64Mi' },
              },
              startupProbe: probe('/healthz', 10, 90),
              readinessProbe: probe('/healthz?js-server-only=true', 10, 3),
              livenessProbe: probe('/healthz?js-enabled-only=true', 30, 3),
              lifecycle: {
                preStop: { exec: { command: ['nats-server', '-sl=ldm=/var/run/nats/nats.pid'] } },
              },
              volumeMounts: [...mounts, { name: `${n}-js-pvc`, mountPath: '/data' }],
              securityContext: SECURITY,
            },
            {
              name: 'reloader',
              image: input.images.configReloader,
              args: [
                '-pid',
                '/var/run/nats/nats.pid',
                '-config',
                '/etc/nats-config/nats.conf',
                '-config',
                '/etc/nats-secret/resolver.conf',
              ],
              volumeMounts: mounts,
              resources: {
                requests: { cpu: '10m', memory: '16Mi' },
                limits: { memory: '64Mi' },
              },
              securityContext: SECURITY,
            },
            {
              name: 'metrics',
              image: input.images.metricsExporter,
              args: [
                '-port=7777',
                '-connz',
                '-routez',
                '-subz',
                '-varz',
                '-prefix=nats',
                '-use_internal_server_id',
                '-jsz=all',
                'http://localhost:8222/',
              ],
              ports: [{ name: 'metrics', containerPort: 7777, protocol: 'TCP' }],
              resources: {
                requests: { cpu: '10m', memory: '32Mi' },
                limits: { memory: '128Mi' },
              },
              securityContext: SECURITY,
            },
          ],
          volumes: [
            { name: 'config', configMap: { name: `${n}-config` } },
            { name: 'resolver', secret: { secretName: `${n}-secret` } },
            { name: 'pid', emptyDir: {} },
          ],
        },
      },
      volumeClaimTemplates: [
        {
          metadata: {
            name: `${n}-js-pvc`,
            // The reference: its deletion flow finds the claims by the instance label.
            labels: { ...selector(input), 'app.kubernetes.io/managed-by': 'nats-manager' },
          },
          spec: {
            accessModes: ['ReadWriteOnce'],
            resources: { requests: { storage: '1Gi' } },
          },
        },
      ],
    },
  };
}

/** Every child, in the order the Go manager applies them. */
export function goManagerChildren(input: GoManagerInput): KubeObject[] {
  const n = objectName(input.name);
  const resolverConf = [
    'accounts: {',
    '  "$SYS": {',
    '    users: [',
    `      {user: "admin", password: "${input.password}"}`,
    '    ]',
    '  },',
    '}',
    'system_account: "$SYS"',
    'resolver: MEMORY',
    '',
  ].join('\n');
  const ports = [
    ['client', 4222],
    ['cluster', 6222],
    ['monitor', 8222],
    ['metrics', 7777],
    ['leafnodes', 7422],
    ['gateways', 7522],
  ] as const;
  return [
    {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: metadata(input, `${n}-config`),
      data: { 'nats.conf': goNatsConf(input) },
    },
    {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: metadata(input, `${n}-secret`),
      type: 'Opaque',
      data: { 'resolver.conf': Buffer.from(resolverConf).toString('base64') },
    },
    {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: metadata(input, n, {
        'prometheus.io/scrape': 'true',
        'prometheus.io/port': '7777',
      }),
      spec: {
        clusterIP: 'None',
        publishNotReadyAddresses: true,
        selector: selector(input),
        ports: ports.map(([name, port]) => ({ name, port, targetPort: port, protocol: 'TCP' })),
      },
    },
    statefulSet(input),
    {
      apiVersion: 'policy/v1',
      kind: 'PodDisruptionBudget',
      metadata: metadata(input, n),
      spec: { maxUnavailable: 1, selector: { matchLabels: selector(input) } },
    },
  ];
}
