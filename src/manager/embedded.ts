// What a real cluster gets from deploy/, the embedded plane gets here: the NATS CRD, the
// namespaces, the RBAC of deploy/rbac, the pods' PriorityClass and the webhook configurations. The manager then runs as
// its own service account (a client certificate with the same user name and groups), not as the
// plane's admin, so the protect-children webhook and RBAC treat it exactly as in a cluster.
import { readFileSync } from 'node:fs';
import { KubeConfig } from '@kubernetes/client-node';
import { load, loadAll } from 'js-yaml';
import { issueCertificate } from '../../certs/x509.ts';
import { buildNatsCrd } from '../api/crd.ts';
import { applyObject, createObject, isApiStatus, type KubeObject } from '../kube/api.ts';
import type { Cluster } from '../kube/cluster.ts';
import { ensureCrd } from '../kube/crd.ts';
import type { LocalPlane } from '../localplane/plane.ts';
import type { ManagerConfig } from './config.ts';
import { loadWebhookConfigurations } from './webhook-configurations.ts';

const FIELD_MANAGER = 'nats-manager';
const DEPLOY = new URL('../../deploy/', import.meta.url);
// The manifests name the manager's namespace and service account literally (no kustomize
// namespace transformer); the embedded plane substitutes the configured ones.
const MANIFEST_NAMESPACE = 'kyma-system';
const MANIFEST_SERVICE_ACCOUNT = 'nats-manager';
const IDENTITY_VALID_DAYS = 365;

interface ServiceAccountRef {
  readonly namespace: string;
  readonly name: string;
}

/** The service account behind `system:serviceaccount:<namespace>:<name>`. */
function serviceAccountOf(config: ManagerConfig): ServiceAccountRef {
  const prefix = `system:serviceaccount:${config.managerNamespace}:`;
  const name = config.managerUsername.slice(prefix.length);
  if (!config.managerUsername.startsWith(prefix) || name === '' || name.includes(':')) {
    throw new Error(
      `the manager's user name "${config.managerUsername}" is not a service account of namespace ${config.managerNamespace}`,
    );
  }
  return { namespace: config.managerNamespace, name };
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function asKubeObject(value: unknown, file: string): KubeObject {
  if (
    !isRecord(value) ||
    typeof value.apiVersion !== 'string' ||
    typeof value.kind !== 'string' ||
    !isRecord(value.metadata)
  ) {
    throw new Error(`${file}: a document is not a Kubernetes object`);
  }
  return value as KubeObject;
}

// Without it the StatefulSet controller is refused every NATS pod.
const PRIORITY_CLASS_FILE = 'manager/priority-class.yaml';

/**
 * The RBAC files the kustomization installs and the NATS pods' PriorityClass, so the embedded
 * plane gets exactly those.
 */
function embeddedManifestFiles(): string[] {
  const kustomization = load(readFileSync(new URL('kustomization.yaml', DEPLOY), 'utf8'));
  const resources = isRecord(kustomization) ? kustomization.resources : undefined;
  if (!Array.isArray(resources)) throw new Error('deploy/kustomization.yaml lists no resources');
  return resources.filter(
    (path): path is string =>
      typeof path === 'string' && (path.startsWith('rbac/') || path === PRIORITY_CLASS_FILE),
  );
}

function localize(object: KubeObject, account: ServiceAccountRef): KubeObject {
  const metadata = { ...object.metadata };
  if (metadata.namespace === MANIFEST_NAMESPACE) metadata.namespace = account.namespace;
  if (object.kind === 'ServiceAccount' && metadata.name === MANIFEST_SERVICE_ACCOUNT) {
    metadata.name = account.name;
  }
  const localized: KubeObject = { ...object, metadata };
  if (Array.isArray(object.subjects)) {
    localized.subjects = object.subjects.map((subject: unknown) =>
      isRecord(subject) &&
      subject.kind === 'ServiceAccount' &&
      subject.namespace === MANIFEST_NAMESPACE &&
      subject.name === MANIFEST_SERVICE_ACCOUNT
        ? { ...subject, namespace: account.namespace, name: account.name }
        : subject,
    );
  }
  return localized;
}

/** deploy/rbac and the PriorityClass as the configured manager needs them: its namespace, its service account. */
function managerManifests(account: ServiceAccountRef): KubeObject[] {
  return embeddedManifestFiles().flatMap((file) =>
    loadAll(readFileSync(new URL(file, DEPLOY), 'utf8'))
      .filter((document) => document !== null && document !== undefined)
      .map((document) => localize(asKubeObject(document, file), account)),
  );
}

/**
 * A kubeconfig for the service account's identity: a client certificate the plane trusts, with
 * the user name and groups a service account token carries (`system:authenticated` the API
 * server adds to anyone). Inline, so the key never reaches the disk.
 */
function serviceAccountKubeConfig(plane: LocalPlane, account: ServiceAccountRef): KubeConfig {
  const username = `system:serviceaccount:${account.namespace}:${account.name}`;
  const identity = issueCertificate(plane.ca, {
    commonName: username,
    organizations: ['system:serviceaccounts', `system:serviceaccounts:${account.namespace}`],
    usage: 'client',
    validDays: IDENTITY_VALID_DAYS,
  });
  const base64 = (pem: string): string => Buffer.from(pem).toString('base64');
  const name = 'nats-manager-local';
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [
      { name, server: plane.server, caData: base64(plane.ca.certPem), skipTLSVerify: false },
    ],
    users: [
      { name: username, certData: base64(identity.certPem), keyData: base64(identity.keyPem) },
    ],
    contexts: [{ name, cluster: name, user: username }],
    currentContext: name,
  });
  return kc;
}

/** Creates the object unless it exists; an existing one is left exactly as it is. */
async function createIfAbsent(kc: KubeConfig, object: KubeObject): Promise<void> {
  try {
    await createObject(kc, object, { fieldManager: FIELD_MANAGER });
  } catch (error) {
    if (!isApiStatus(error, 409)) throw error;
  }
}

/**
 * Empty webhook configurations for the manager to fill in. In a cluster deploy/webhooks creates
 * them; the ClusterRole lets the manager update these two by name but create none (RBAC cannot
 * limit a create to names). Empty, because fields a create writes stay owned by it: a service
 * clientConfig made here would survive the manager's apply of a url beside it.
 */
function webhookConfigurationShells(): KubeObject[] {
  return loadWebhookConfigurations().map(({ apiVersion, kind, metadata }) => ({
    apiVersion,
    kind,
    metadata: { name: metadata.name, labels: metadata.labels },
    webhooks: [],
  }));
}

/**
 * Installs on the embedded plane what deploy/ installs on a cluster (the NATS CRD, the
 * namespaces, deploy/rbac, the webhook configurations) with the plane's admin credentials, and
 * returns the KubeConfig the manager should run as: its own service account's user name and
 * groups. Idempotent.
 */
export async function prepareEmbeddedPlane(
  cluster: Cluster,
  config: ManagerConfig,
): Promise<KubeConfig> {
  const { plane } = cluster;
  if (plane === undefined) {
    throw new Error('prepareEmbeddedPlane needs the embedded plane; a cluster gets deploy/');
  }
  const account = serviceAccountOf(config);
  const rbac = managerManifests(account);
  await ensureCrd(cluster.kc, buildNatsCrd(), FIELD_MANAGER);
  // Created, not applied: an apply with nothing but a name owns no field, so the next one would
  // still write (managedFields), and a re-run would not be a no-op.
  for (const name of new Set([config.managerNamespace, config.natsNamespace])) {
    await createIfAbsent(cluster.kc, { apiVersion: 'v1', kind: 'Namespace', metadata: { name } });
  }
  for (const object of rbac) {
    await applyObject(cluster.kc, object, { fieldManager: FIELD_MANAGER });
  }
  for (const shell of webhookConfigurationShells()) await createIfAbsent(cluster.kc, shell);
  return serviceAccountKubeConfig(plane, account);
}
