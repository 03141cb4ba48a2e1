// What rendering needs besides the NATS resource itself. Everything here is decided by the
// impure shell (cluster discovery, the existing Secret, configuration) and passed in, so that
// rendering stays a pure, deterministic function.
import type { DefaultedNatsSpec } from '../api/nats.ts';

/** The NATS resource being rendered, with its spec already defaulted. */
export interface RenderInput {
  readonly name: string;
  readonly namespace: string;
  readonly uid: string;
  readonly spec: DefaultedNatsSpec;
}

export interface NatsImages {
  readonly nats: string;
  readonly configReloader: string;
  readonly metricsExporter: string;
}

/** Pinned defaults; the manager takes overrides from its configuration (environment). */
export const DEFAULT_IMAGES: NatsImages = {
  nats: 'nats:2.14.9-alpine',
  configReloader: 'natsio/nats-server-config-reloader:0.23.0',
  metricsExporter: 'natsio/prometheus-nats-exporter:0.20.1',
};

export interface RenderContext {
  /** Istio's DestinationRule API exists in the cluster. */
  readonly istioPresent: boolean;
  /** The $SYS account password: read from the existing Secret, or newly generated once. */
  readonly systemAccountPassword: string;
  readonly images: NatsImages;
  /** DNS domain of the cluster, for stable pod names in routes and the client URL. */
  readonly clusterDomain: string;
  /**
   * The cloud provider from kube-system/shoot-info (`alicloud`, ...), which decides the default
   * file-storage size; absent where the cluster does not say.
   */
  readonly provider?: string;
  /**
   * The size max_file_store is derived from while the volume claims grow (the smallest capacity
   * they report so far, src/controller/storage-growth.ts); absent: the spec's claim size.
   */
  readonly fileStoreSize?: string;
}
