// Wires the admission side of the manager: the serving certificate (from a Secret the manager
// keeps, or from mounted files), the HTTPS webhook server, and the CA bundle in the webhook
// configurations, re-published after every rotation.
import { setTimeout as sleep } from 'node:timers/promises';
import type { KubeConfig } from '@kubernetes/client-node';
import { injectCaBundle } from '../../certs/ca-bundle.ts';
import { startFileCertificateSource } from '../../certs/file-source.ts';
import { servingNames } from '../../certs/plan.ts';
import { startSecretCertificateSource } from '../../certs/secret-source.ts';
import {
  certificateListeners,
  type CertificateSource,
  type ServingCertificate,
} from '../../certs/source.ts';
import {
  createAdmissionApp,
  startWebhookServer,
  type AdmissionAppDeps,
  type AdmissionConfig,
} from '../../webhooks/server.ts';
import { applyObject } from '../kube/api.ts';
import type { ManagerConfig } from './config.ts';
import type { Logger } from './log.ts';
import {
  MUTATING_CONFIGURATION,
  VALIDATING_CONFIGURATION,
  desiredWebhookConfigurations,
  loadWebhookConfigurations,
} from './webhook-configurations.ts';

export interface Admission {
  readonly port: number;
  readonly certificates: CertificateSource;
  close(): Promise<void>;
}

export interface AdmissionOptions {
  readonly kc: KubeConfig;
  /** extraManagerUsernames: who the manager writes as besides its service account (off-cluster). */
  readonly config: ManagerConfig & Pick<AdmissionConfig, 'extraManagerUsernames'>;
  readonly log: Logger;
  /**
   * Off-cluster (the embedded plane) the API server reaches the webhooks by url on loopback, and
   * the manager installs the configurations itself. In a cluster they come from deploy/ and the
   * manager only writes their CA bundle.
   */
  readonly offCluster: boolean;
  readonly onAdmission?: AdmissionAppDeps['onAdmission'];
}

async function startCertificates(
  options: AdmissionOptions,
): Promise<CertificateSource & { close(): Promise<void> }> {
  const { config, kc, log } = options;
  if (config.certificateMode === 'files') {
    return startFileCertificateSource({ dir: config.certificateDir, log });
  }
  return startSecretCertificateSource({
    kc,
    namespace: config.managerNamespace,
    secretName: config.certificateSecretName,
    names: servingNames(config.webhookServiceName, config.managerNamespace, config.clusterDomain),
    resyncIntervalMs: config.certificateCheckSeconds * 1000,
    log,
  });
}

/** How long API servers get to see a new CA bundle before the server presents a certificate it signs. */
export const BUNDLE_PROPAGATION_MS = 2_000;

/**
 * A source that hands the server a new certificate only after `beforeRelease` has run: the CA
 * bundle must trust the new certificate before it is presented, or API servers reject the
 * handshake in between (when the CA itself was replaced, e.g. after the Secret was deleted).
 */
function gatedSource(
  source: CertificateSource,
  beforeRelease: (next: ServingCertificate, previous: ServingCertificate) => Promise<void>,
  log: Logger,
): CertificateSource & { stop(): void } {
  let released = source.current();
  const listeners = certificateListeners((error) => {
    log.error('certificate listener failed', { error });
  });
  let chain = Promise.resolve();
  const unsubscribe = source.onChange((next) => {
    chain = chain
      .then(async () => {
        await beforeRelease(next, released);
        released = next;
        listeners.emit(next);
      })
      .catch((error: unknown) => {
        log.error('could not roll out the new webhook certificate', { error });
      });
  });
  return {
    current: () => released,
    onChange: listeners.onChange,
    stop: unsubscribe,
  };
}

/** Both CAs while one replaces the other, so certificates signed by either are trusted. */
function bundleOf(...cas: string[]): string {
  return [...new Set(cas.map((ca) => ca.trim()))].join('\n') + '\n';
}

export async function startAdmission(options: AdmissionOptions): Promise<Admission> {
  const { config, kc, log } = options;
  const certificates = await startCertificates(options);
  const publish = async (caBundle: string, port: number): Promise<void> => {
    if (options.offCluster) {
      const desired = desiredWebhookConfigurations(loadWebhookConfigurations(), {
        baseUrl: `https://127.0.0.1:${String(port)}`,
        caPem: caBundle,
        natsNamespace: config.natsNamespace,
      });
      for (const configuration of desired) {
        await applyObject(kc, configuration, { fieldManager: 'nats-manager' });
      }
    } else {
      await injectCaBundle(kc, caBundle, {
        mutating: [MUTATING_CONFIGURATION],
        validating: [VALIDATING_CONFIGURATION],
      });
    }
    log.info('webhook configurations trust the current CA');
  };

  let port = 0;
  const served = gatedSource(
    certificates,
    async (next, previous) => {
      if (next.caPem === previous.caPem) return;
      await publish(bundleOf(next.caPem, previous.caPem), port);
      await sleep(BUNDLE_PROPAGATION_MS);
    },
    log,
  );
  const app = createAdmissionApp(config, {
    log,
    ...(options.onAdmission ? { onAdmission: options.onAdmission } : {}),
  });
  const server = await startWebhookServer({
    app,
    host: options.offCluster ? '127.0.0.1' : config.webhookHost,
    port: config.webhookPort,
    certificates: served,
    log,
  });
  port = server.port;
  await publish(bundleOf(served.current().caPem), port);
  log.info('admission webhooks serving', { port: server.port });

  return {
    port: server.port,
    certificates: served,
    close: async () => {
      served.stop();
      await server.close();
      await certificates.close();
    },
  };
}
