// Wires the admission side of the manager: the serving certificate (from a Secret the manager
// keeps, or from mounted files), the HTTPS webhook server, and the CA bundle in the webhook
// configurations, re-published after every rotation.
import type { KubeConfig } from '@kubernetes/client-node';
import { injectCaBundle } from '../../certs/ca-bundle.ts';
import { startFileCertificateSource } from '../../certs/file-source.ts';
import { servingNames } from '../../certs/plan.ts';
import { startSecretCertificateSource } from '../../certs/secret-source.ts';
import type { CertificateSource } from '../../certs/source.ts';
import {
  createAdmissionApp,
  startWebhookServer,
  type AdmissionAppDeps,
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
  readonly config: ManagerConfig;
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
    log,
  });
}

export async function startAdmission(options: AdmissionOptions): Promise<Admission> {
  const { config, kc, log } = options;
  const certificates = await startCertificates(options);
  const app = createAdmissionApp(config, {
    log,
    ...(options.onAdmission ? { onAdmission: options.onAdmission } : {}),
  });
  const server = await startWebhookServer({
    app,
    host: options.offCluster ? '127.0.0.1' : config.webhookHost,
    port: config.webhookPort,
    certificates,
    log,
  });

  const publish = async (caPem: string): Promise<void> => {
    if (options.offCluster) {
      const desired = desiredWebhookConfigurations(loadWebhookConfigurations(), {
        baseUrl: `https://127.0.0.1:${String(server.port)}`,
        caPem,
        natsNamespace: config.natsNamespace,
      });
      for (const configuration of desired) {
        await applyObject(kc, configuration, { fieldManager: 'nats-manager' });
      }
    } else {
      await injectCaBundle(kc, caPem, {
        mutating: [MUTATING_CONFIGURATION],
        validating: [VALIDATING_CONFIGURATION],
      });
    }
    log.info('webhook configurations trust the current CA');
  };
  await publish(certificates.current().caPem);
  const unsubscribe = certificates.onChange((certificate) => {
    publish(certificate.caPem).catch((error: unknown) => {
      log.error('could not publish the rotated CA bundle', { error });
    });
  });
  log.info('admission webhooks serving', { port: server.port });

  return {
    port: server.port,
    certificates,
    close: async () => {
      unsubscribe();
      await server.close();
      await certificates.close();
    },
  };
}
