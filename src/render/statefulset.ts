// The StatefulSet `<n>`: one nats-server per pod, each with its own JetStream volume, a config
// reloader and a Prometheus exporter beside it.
//
// There is deliberately no pod annotation with a hash of nats.conf. The reloader signals
// nats-server to re-read its configuration when the mounted ConfigMap changes, so a change of
// logging or of the routes (scaling) applies without a restart; a hash would instead roll every
// pod for each such edit and make JetStream move its leaders for nothing.
import type {
  V1Container,
  V1EnvVar,
  V1PersistentVolumeClaim,
  V1PodSpec,
  V1Probe,
  V1ResourceRequirements,
  V1SecurityContext,
  V1StatefulSet,
  V1WeightedPodAffinityTerm,
} from '@kubernetes/client-node';
import type { DefaultedNatsSpec } from '../api/nats.ts';
import { canonicalResourceQuantity, parseQuantity, quantityToBytes } from '../api/quantity.ts';
import { effectiveFileStorageSize } from '../api/storage.ts';
import type { KubeObject } from '../base/object.ts';
import type { RenderContext, RenderInput } from './context.ts';
import { goMemLimitBytes } from './guards.ts';
import {
  childMetadata,
  operatorLabels,
  podTemplateMetadata,
  selectorLabels,
  type StringMap,
} from './labels.ts';
import { objectNames } from './names.ts';
import {
  CLUSTER_ADVERTISE_ENV,
  DATA_DIR,
  NATS_CONF_KEY,
  NATS_CONFIG_MOUNT,
  PID_DIR,
  PID_FILE,
  PORTS,
  RESOLVER_CONF_KEY,
  RESOLVER_CONF_MOUNT,
  SERVER_NAME_ENV,
} from './nats-conf.ts';

export const PRIORITY_CLASS_NAME = 'nats-manager-priority-class';
/** lame_duck_grace_period 10s + lame_duck_duration 120s + 20s for the server to shut down. */
export const TERMINATION_GRACE_PERIOD_SECONDS = 150;
export const NATS_CONTAINER = 'nats';
/** The Go runtime's soft memory limit, in bytes. */
export const GOMEMLIMIT_ENV = 'GOMEMLIMIT';
export const RELOADER_CONTAINER = 'reloader';
export const METRICS_CONTAINER = 'metrics';
/** The file-storage class that means "leave storageClassName unset" (the cluster default). */
export const DEFAULT_STORAGE_CLASS = 'default';

const RUN_AS_USER = 1000;
const FS_GROUP = 10001;

const VOLUME = { config: 'config', resolver: 'resolver', pid: 'pid' } as const;

function containerSecurityContext(): V1SecurityContext {
  return {
    allowPrivilegeEscalation: false,
    // Every container writes only to its volumes: the pid file, JetStream's store.
    readOnlyRootFilesystem: true,
    capabilities: { drop: ['ALL'] },
  };
}

/** Only cpu and memory matter; quantities in the canonical form the apiserver stores. */
function canonicalResources(resources: DefaultedNatsSpec['resources']): V1ResourceRequirements {
  const pick = (map: Record<string, string | number> | undefined): StringMap | undefined => {
    const picked: StringMap = {};
    for (const name of ['cpu', 'memory']) {
      const value = map?.[name];
      if (value !== undefined) picked[name] = canonicalResourceQuantity(value);
    }
    return Object.keys(picked).length > 0 ? picked : undefined;
  };
  const limits = pick(resources.limits);
  const requests = pick(resources.requests);
  return {
    ...(limits === undefined ? {} : { limits }),
    ...(requests === undefined ? {} : { requests }),
  };
}

/** GOMEMLIMIT from the memory limit (see guards.ts); none without a limit. */
function goMemLimitEnv(resources: DefaultedNatsSpec['resources']): V1EnvVar[] {
  const limit = resources.limits?.memory;
  const bytes = goMemLimitBytes(
    limit === undefined ? undefined : quantityToBytes(parseQuantity(limit)),
  );
  return bytes === undefined ? [] : [{ name: GOMEMLIMIT_ENV, value: bytes.toString() }];
}

function healthProbe(path: string, periodSeconds: number, failureThreshold: number): V1Probe {
  return {
    httpGet: { path, port: PORTS.monitor },
    initialDelaySeconds: 10,
    timeoutSeconds: 5,
    periodSeconds,
    successThreshold: 1,
    failureThreshold,
  };
}

function natsContainer(input: RenderInput, context: RenderContext): V1Container {
  const names = objectNames(input.name);
  return {
    name: NATS_CONTAINER,
    image: context.images.nats,
    command: ['nats-server', '--config', `${NATS_CONFIG_MOUNT}/${NATS_CONF_KEY}`],
    env: [
      { name: SERVER_NAME_ENV, valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
      // $(SERVER_NAME) expands because SERVER_NAME is defined above it.
      {
        name: CLUSTER_ADVERTISE_ENV,
        value: `$(${SERVER_NAME_ENV}).${names.service}.${input.namespace}.svc.${context.clusterDomain}:${String(PORTS.cluster)}`,
      },
      { name: 'POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
      { name: 'POD_NAMESPACE', valueFrom: { fieldRef: { fieldPath: 'metadata.namespace' } } },
      ...goMemLimitEnv(input.spec.resources),
    ],
    ports: [
      { name: 'client', containerPort: PORTS.client, protocol: 'TCP' },
      { name: 'cluster', containerPort: PORTS.cluster, protocol: 'TCP' },
      { name: 'monitor', containerPort: PORTS.monitor, protocol: 'TCP' },
    ],
    resources: canonicalResources(input.spec.resources),
    // Startup waits for JetStream to catch up (up to 15 minutes); afterwards readiness only asks
    // whether the server runs, so a catching-up server still serves, and liveness only whether
    // JetStream is enabled, so a slow peer is never restarted into a longer catch-up.
    startupProbe: healthProbe('/healthz', 10, 90),
    readinessProbe: healthProbe('/healthz?js-server-only=true', 10, 3),
    livenessProbe: healthProbe('/healthz?js-enabled-only=true', 30, 3),
    lifecycle: {
      // Lame duck mode: stop accepting clients and hand them to the peers before shutting down.
      preStop: { exec: { command: ['nats-server', `-sl=ldm=${PID_FILE}`] } },
    },
    volumeMounts: [
      { name: VOLUME.config, mountPath: NATS_CONFIG_MOUNT },
      { name: VOLUME.resolver, mountPath: RESOLVER_CONF_MOUNT },
      { name: VOLUME.pid, mountPath: PID_DIR },
      { name: names.volumeClaim, mountPath: DATA_DIR },
    ],
    securityContext: containerSecurityContext(),
  };
}

// The sidecars' needs are small and fixed (they do not grow with the NATS spec). Requests get
// them scheduled and counted under a ResourceQuota; memory limits contain a leak. No CPU
// limits: throttling a sidecar would only delay reloads and scrapes.
const RELOADER_RESOURCES: V1ResourceRequirements = {
  requests: { cpu: '10m', memory: '16Mi' },
  limits: { memory: '64Mi' },
};
const METRICS_RESOURCES: V1ResourceRequirements = {
  requests: { cpu: '10m', memory: '32Mi' },
  limits: { memory: '128Mi' },
};

/** Signals nats-server (through the shared pid file) when nats.conf or its include changes. */
function reloaderContainer(context: RenderContext): V1Container {
  return {
    name: RELOADER_CONTAINER,
    image: context.images.configReloader,
    args: [
      '-pid',
      PID_FILE,
      '-config',
      `${NATS_CONFIG_MOUNT}/${NATS_CONF_KEY}`,
      '-config',
      `${RESOLVER_CONF_MOUNT}/${RESOLVER_CONF_KEY}`,
    ],
    volumeMounts: [
      { name: VOLUME.config, mountPath: NATS_CONFIG_MOUNT },
      { name: VOLUME.resolver, mountPath: RESOLVER_CONF_MOUNT },
      { name: VOLUME.pid, mountPath: PID_DIR },
    ],
    resources: RELOADER_RESOURCES,
    securityContext: containerSecurityContext(),
  };
}

function metricsContainer(context: RenderContext): V1Container {
  return {
    name: METRICS_CONTAINER,
    image: context.images.metricsExporter,
    args: [
      `-port=${String(PORTS.metrics)}`,
      '-connz',
      '-routez',
      '-subz',
      '-varz',
      '-prefix=nats',
      '-use_internal_server_id',
      '-jsz=all',
      `http://localhost:${String(PORTS.monitor)}/`,
    ],
    ports: [{ name: 'metrics', containerPort: PORTS.metrics, protocol: 'TCP' }],
    resources: METRICS_RESOURCES,
    securityContext: containerSecurityContext(),
  };
}

function antiAffinityTerm(
  input: RenderInput,
  topologyKey: string,
  weight: number,
): V1WeightedPodAffinityTerm {
  return {
    weight,
    podAffinityTerm: { labelSelector: { matchLabels: selectorLabels(input) }, topologyKey },
  };
}

function podSpec(input: RenderInput, context: RenderContext): V1PodSpec {
  const names = objectNames(input.name);
  return {
    // The reloader has to see nats-server's process to signal it.
    shareProcessNamespace: true,
    priorityClassName: PRIORITY_CLASS_NAME,
    terminationGracePeriodSeconds: TERMINATION_GRACE_PERIOD_SECONDS,
    securityContext: {
      runAsNonRoot: true,
      runAsUser: RUN_AS_USER,
      fsGroup: FS_GROUP,
      seccompProfile: { type: 'RuntimeDefault' },
    },
    affinity: {
      podAntiAffinity: {
        // Preferred, not required: a cluster with fewer zones or nodes than servers still runs.
        preferredDuringSchedulingIgnoredDuringExecution: [
          antiAffinityTerm(input, 'topology.kubernetes.io/zone', 70),
          antiAffinityTerm(input, 'kubernetes.io/hostname', 35),
        ],
      },
    },
    containers: [
      natsContainer(input, context),
      reloaderContainer(context),
      metricsContainer(context),
    ],
    volumes: [
      { name: VOLUME.config, configMap: { name: names.configMap } },
      { name: VOLUME.resolver, secret: { secretName: names.secret } },
      { name: VOLUME.pid, emptyDir: {} },
    ],
  };
}

function volumeClaimTemplate(input: RenderInput, context: RenderContext): V1PersistentVolumeClaim {
  const { storageClassName, size: specSize } = input.spec.jetStream.fileStorage;
  // Absent or zero: the default ("0" is how the Go manager's clients send an unset size).
  const size = effectiveFileStorageSize(specSize, context.provider);
  return {
    // Claim templates are immutable: only labels no user can change.
    metadata: { name: objectNames(input.name).volumeClaim, labels: operatorLabels(input) },
    spec: {
      accessModes: ['ReadWriteOnce'],
      ...(storageClassName === DEFAULT_STORAGE_CLASS ? {} : { storageClassName }),
      resources: { requests: { storage: canonicalResourceQuantity(size) } },
    },
  };
}

export function renderStatefulSet(
  input: RenderInput,
  context: RenderContext,
): V1StatefulSet & KubeObject {
  const names = objectNames(input.name);
  return {
    apiVersion: 'apps/v1',
    kind: 'StatefulSet',
    metadata: childMetadata(input, names.statefulSet),
    spec: {
      replicas: input.spec.cluster.size,
      // Ordered start would deadlock: no server is ready before it sees its peers.
      podManagementPolicy: 'Parallel',
      // The manager rolls the pods itself, one at a time and each only once the previous server
      // is current again (src/controller/rollout.ts); the StatefulSet controller's own rolling
      // update waits for readiness only, which a JetStream server reaches before catching up.
      updateStrategy: { type: 'OnDelete' },
      serviceName: names.service,
      selector: { matchLabels: selectorLabels(input) },
      template: {
        // User labels and annotations reach the pods too; changing them rolls the pods one at
        // a time. The Go manager's pod labels and annotations, so a takeover restarts nothing.
        metadata: podTemplateMetadata(input),
        spec: podSpec(input, context),
      },
      volumeClaimTemplates: [volumeClaimTemplate(input, context)],
    },
  } satisfies V1StatefulSet;
}
