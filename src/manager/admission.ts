// Wires the admission side of the manager: the serving certificate (from a Secret the manager
// keeps, or from mounted files), the HTTPS webhook server, and the CA bundle in the webhook
// configurations, re-published after every rotation.
import { setTimeout as sleep } from 'node:timers/promises';
import { hasCaBundle, injectCaBundle } from '../../certs/ca-bundle.ts';
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
import type { StreamLookup } from '../../webhooks/scale-down-check.ts';
import {
  usesDefaultClass,
  type ClaimStorageClass,
  type StorageClassLookup,
} from '../../webhooks/storage-growth-check.ts';
import { findDrift } from '../controller/drift.ts';
import { collectionPath } from '../kube/resources.ts';
import type { KubeClient } from '../kube/client.ts';
import { observeCluster } from '../nats/peers.ts';
import { clientUrl, objectNames } from '../render/names.ts';
import { systemAccountPasswordFrom } from '../render/secret.ts';
import type { ManagerConfig } from './config.ts';
import type { Logger } from '../base/log.ts';
import {
  desiredWebhookConfigurations,
  loadWebhookConfigurations,
  type WebhookConfiguration,
} from './webhook-configurations.ts';
import { compareStrings } from '../base/order.ts';

export interface Admission {
  readonly port: number;
  readonly certificates: CertificateSource;
  close(): Promise<void>;
}

export interface AdmissionOptions {
  readonly client: KubeClient;
  /** extraManagerUsernames: who the manager writes as besides its service account (off-cluster). */
  readonly config: ManagerConfig & Pick<AdmissionConfig, 'extraManagerUsernames' | 'provider'>;
  readonly log: Logger;
  /**
   * Off-cluster (the embedded plane) the API server reaches the webhooks by url on loopback, and
   * the manager installs the configurations itself. In a cluster they come from deploy/ and the
   * manager writes their CA bundle, or creates them again from deploy/ when they were deleted.
   */
  readonly offCluster: boolean;
  readonly onAdmission?: AdmissionAppDeps['onAdmission'];
  /**
   * Told after every attempt to put the configurations in place which of them (`Kind/name`) are
   * missing or stale because the manager could not write them; empty once all are in place.
   */
  readonly onConfigurationsMissing?: (missing: readonly string[]) => void;
}

/**
 * The streams of a NATS resource's cluster, asked through its system account (the password from
 * its Secret) within the budget, for the scale-down check of the validating webhook.
 */
function liveStreams(client: KubeClient, clusterDomain: string): StreamLookup {
  return async (nats, budgetMs) => {
    const started = performance.now();
    const names = objectNames(nats.name);
    const secret = await client.get(
      { apiVersion: 'v1', kind: 'Secret', namespace: nats.namespace, name: names.secret },
      { signal: AbortSignal.timeout(budgetMs) },
    );
    const password = systemAccountPasswordFrom(secret);
    if (password === undefined)
      return { ok: false, error: `no password in Secret ${names.secret}` };
    const left = Math.max(1, Math.round(budgetMs - (performance.now() - started)));
    const url = clientUrl(names, nats.namespace, clusterDomain);
    const asked = await observeCluster({ url, password, timeoutMs: left }, 64);
    return asked.ok ? { ok: true, value: asked.value.streams } : asked;
  };
}

const DEFAULT_CLASS_ANNOTATIONS = [
  'storageclass.kubernetes.io/is-default-class',
  'storageclass.beta.kubernetes.io/is-default-class',
];

interface StorageClassView {
  metadata: { name?: string; annotations?: Record<string, string> };
  allowVolumeExpansion?: boolean;
}

interface ClaimView {
  metadata: { deletionTimestamp?: string };
  spec?: { storageClassName?: string };
}

/**
 * The StorageClass(es) the NATS resource's claims use, for the growth check of the validating
 * webhook: the claims' own (set when they were made, the default class included), or where
 * there are none yet the spec's class or the cluster's default, the way a new claim gets one.
 */
function liveStorageClasses(client: KubeClient): StorageClassLookup {
  return async (growth, budgetMs) => {
    const signal = AbortSignal.timeout(budgetMs);
    const selector = Object.entries(growth.selector)
      .map(([key, value]) => `${key}=${value}`)
      .join(',');
    const claims = await client.list<ClaimView>(
      collectionPath('v1', 'PersistentVolumeClaim', growth.namespace),
      { labelSelector: selector, signal },
    );
    const claimClasses = new Set(
      (claims.items ?? [])
        .filter((claim) => claim.metadata.deletionTimestamp === undefined)
        .map((claim) => claim.spec?.storageClassName ?? ''),
    );
    const named: { name: string | undefined; from: ClaimStorageClass['from'] }[] =
      claimClasses.size > 0
        ? [...claimClasses].map((name) => ({
            name: name === '' ? undefined : name,
            from: 'the volume claims' as const,
          }))
        : usesDefaultClass(growth)
          ? [{ name: await defaultClass(client, signal), from: 'the cluster default' as const }]
          : [{ name: growth.storageClassName, from: 'the spec' as const }];
    const classes: ClaimStorageClass[] = [];
    for (const { name, from } of named) {
      const sc =
        name === undefined
          ? undefined
          : await client.get<StorageClassView>(
              { apiVersion: 'storage.k8s.io/v1', kind: 'StorageClass', name },
              { signal },
            );
      classes.push({
        name,
        from,
        allowVolumeExpansion: sc === undefined ? undefined : sc.allowVolumeExpansion === true,
      });
    }
    return { ok: true, value: classes };
  };
}

type ListedStorageClass = StorageClassView & { metadata: { creationTimestamp?: string } };

/** The cluster's default StorageClass, as the API server picks it. */
async function defaultClass(client: KubeClient, signal: AbortSignal): Promise<string | undefined> {
  const list = await client.list<ListedStorageClass>(
    collectionPath('storage.k8s.io/v1', 'StorageClass'),
    { signal },
  );
  return defaultStorageClassName(list.items ?? []);
}

/**
 * The default among `classes` as the API server's DefaultStorageClass plugin picks it: of those
 * marked default, the newest, and of equally new ones the first by name.
 */
export function defaultStorageClassName(
  classes: readonly ListedStorageClass[],
): string | undefined {
  const marked = classes.filter((sc) =>
    DEFAULT_CLASS_ANNOTATIONS.some((a) => sc.metadata.annotations?.[a] === 'true'),
  );
  // RFC 3339 timestamps in UTC, as the API server writes them, order as plain strings.
  const created = (sc: ListedStorageClass): string => sc.metadata.creationTimestamp ?? '';
  const name = (sc: ListedStorageClass): string => sc.metadata.name ?? '';
  marked.sort((a, b) => compareStrings(created(b), created(a)) || compareStrings(name(a), name(b)));
  return marked[0]?.metadata.name;
}

// The webhook configurations' own field manager, apart from the children's.
const FIELD_MANAGER = 'nats-manager';

/**
 * Puts one configuration in place. In a cluster the one from deploy/ is kept and only its CA
 * bundle written; one that was deleted is created again from the same manifest, so that a
 * deleted configuration does not leave the manager unable to start.
 */
export async function writeConfiguration(
  client: KubeClient,
  configuration: WebhookConfiguration,
  options: { readonly offCluster: boolean; readonly caPem: string; readonly injectCa: boolean },
): Promise<void> {
  const { kind } = configuration;
  const name = String(configuration.metadata.name);
  const current = await client.get({ apiVersion: configuration.apiVersion, kind, name });
  if (options.offCluster) {
    // Checked on every certificate check: an apply that would change nothing is not sent, so an
    // idle manager writes nothing.
    if (current !== undefined && findDrift(configuration, current, FIELD_MANAGER) === undefined) {
      return;
    }
    await client.apply(configuration, { fieldManager: FIELD_MANAGER });
    return;
  }
  if (current === undefined) {
    await client.create(configuration);
    return;
  }
  // Another writes the bundle (cert-manager's CA injector): the configuration is left as it is.
  if (!options.injectCa) return;
  // The bundle is in place on nearly every certificate check: no second read to find that out.
  if (hasCaBundle(current, options.caPem)) return;
  const mutating = kind === 'MutatingWebhookConfiguration';
  await injectCaBundle(client, options.caPem, {
    mutating: mutating ? [name] : [],
    validating: mutating ? [] : [name],
  });
}

async function startCertificates(
  options: AdmissionOptions,
): Promise<CertificateSource & { close(): Promise<void> }> {
  const { config, client, log } = options;
  if (config.certificateMode === 'files') {
    return startFileCertificateSource({ dir: config.certificateDir, log });
  }
  return startSecretCertificateSource({
    client,
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
  const { config, client, log } = options;
  const certificates = await startCertificates(options);
  // Never throws: a configuration the manager may not write (deleted, and no right to create it)
  // leaves the webhooks off, but reconciling goes on; it is reported and tried again.
  let published = '';
  let logged = '';
  const publish = async (caBundle: string, port: number): Promise<void> => {
    published = caBundle;
    const desired = desiredWebhookConfigurations(loadWebhookConfigurations(), {
      ...(options.offCluster ? { baseUrl: `https://127.0.0.1:${String(port)}` } : {}),
      caPem: caBundle,
      natsNamespace: config.natsNamespace,
      natsName: config.natsName,
    });
    const missing: string[] = [];
    for (const configuration of desired) {
      const id = `${configuration.kind}/${String(configuration.metadata.name)}`;
      try {
        await writeConfiguration(client, configuration, {
          offCluster: options.offCluster,
          caPem: caBundle,
          injectCa: config.injectCaBundle,
        });
      } catch (error) {
        missing.push(id);
        log.error('cannot put the webhook configuration in place', { configuration: id, error });
      }
    }
    options.onConfigurationsMissing?.(missing);
    // Once per bundle put in place, not on every recheck.
    if (missing.length > 0) logged = '';
    else if (logged !== caBundle) log.info('webhook configurations trust the current CA');
    if (missing.length === 0) logged = caBundle;
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
    streams: liveStreams(options.client, config.clusterDomain),
    storageClasses: liveStorageClasses(options.client),
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
  // A configuration deleted later (or one that could not be created) is put back on the
  // certificate check interval with the bundle last published: during a rotation that holds both
  // CAs, and the certificate served alone would not cover the one about to be presented.
  let checking = false;
  const recheck = setInterval(() => {
    if (checking) return;
    checking = true;
    void publish(published, port).finally(() => {
      checking = false;
    });
  }, config.certificateCheckSeconds * 1000);
  recheck.unref();

  return {
    port: server.port,
    certificates: served,
    close: async () => {
      clearInterval(recheck);
      served.stop();
      await server.close();
      await certificates.close();
    },
  };
}
