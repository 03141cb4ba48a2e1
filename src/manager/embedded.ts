// What a real cluster gets from deploy/, the embedded plane gets here: the NATS CRD, the
// namespaces, the RBAC of deploy/rbac, the pods' PriorityClass and the webhook configurations. The manager then runs as
// its own service account (a client certificate with the same user name and groups), not as the
// plane's admin, so the protect-children webhook and RBAC treat it exactly as in a cluster.
import { readFileSync } from 'node:fs';
import type { KubeConfig } from '@kubernetes/client-node';
import { load, loadAll } from 'js-yaml';
import { buildNatsCrd } from '../api/crd.ts';
import type { KubeObject } from '../base/object.ts';
import { clientFor } from '../kube/api.ts';
import type { KubeClient } from '../kube/client.ts';
import { isApiStatus } from '../kube/transport.ts';
import type { Cluster } from './cluster.ts';
import { ensureCrd } from '../kube/crd.ts';
import type { LocalPlane } from '../localplane/plane.ts';
import type { ManagerConfig } from './config.ts';
import { CERTIFICATE_SECRET, CHILDREN_ROLE, LEASE_NAME } from './manifests.ts';
import { loadWebhookConfigurations } from './webhook-configurations.ts';

const FIELD_MANAGER = 'nats-manager';
const DEPLOY = new URL('../../deploy/', import.meta.url);
// The manifests leave the namespaces to kustomize (deploy/transformers/namespace); the embedded
// plane puts them where the configured manager needs them.
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
 * The RBAC files deploy/rbac's kustomization installs and the NATS pods' PriorityClass, so the
 * embedded plane gets exactly those.
 */
function embeddedManifestFiles(): string[] {
  const kustomization = load(readFileSync(new URL('rbac/kustomization.yaml', DEPLOY), 'utf8'));
  const resources = isRecord(kustomization) ? kustomization.resources : undefined;
  if (!Array.isArray(resources))
    throw new Error('deploy/rbac/kustomization.yaml lists no resources');
  return [
    ...resources
      .filter((path): path is string => typeof path === 'string')
      .map((path) => `rbac/${path}`),
    PRIORITY_CLASS_FILE,
  ];
}

interface Namespaces {
  readonly manager: string;
  readonly nats: string;
  /** The Roles name the default Lease and Secret; the configured names replace them. */
  readonly names: Readonly<Record<string, string>>;
}

function renameResources(rules: unknown, names: Readonly<Record<string, string>>): unknown {
  if (!Array.isArray(rules)) return rules;
  return rules.map((rule: unknown) =>
    isRecord(rule) && Array.isArray(rule.resourceNames)
      ? {
          ...rule,
          resourceNames: rule.resourceNames.map((name: unknown) =>
            typeof name === 'string' ? (names[name] ?? name) : name,
          ),
        }
      : rule,
  );
}

/** Where kustomize would put it: the children's Role in the NATS namespace, the rest in the manager's. */
function localize(
  object: KubeObject,
  account: ServiceAccountRef,
  namespaces: Namespaces,
): KubeObject {
  const metadata = { ...object.metadata };
  const namespaced =
    object.kind !== 'ClusterRole' &&
    object.kind !== 'ClusterRoleBinding' &&
    object.kind !== 'PriorityClass';
  if (namespaced && metadata.namespace === undefined) {
    metadata.namespace = metadata.name === CHILDREN_ROLE ? namespaces.nats : namespaces.manager;
  }
  if (object.kind === 'ServiceAccount' && metadata.name === MANIFEST_SERVICE_ACCOUNT) {
    metadata.name = account.name;
  }
  const localized: KubeObject = { ...object, metadata };
  if (object.kind === 'Role') localized.rules = renameResources(object.rules, namespaces.names);
  if (Array.isArray(object.subjects)) {
    localized.subjects = object.subjects.map((subject: unknown) =>
      isRecord(subject) &&
      subject.kind === 'ServiceAccount' &&
      subject.name === MANIFEST_SERVICE_ACCOUNT
        ? { ...subject, namespace: account.namespace, name: account.name }
        : subject,
    );
  }
  return localized;
}

/** deploy/rbac and the PriorityClass as the configured manager needs them: its namespaces, its service account. */
function managerManifests(account: ServiceAccountRef, namespaces: Namespaces): KubeObject[] {
  return embeddedManifestFiles().flatMap((file) =>
    loadAll(readFileSync(new URL(file, DEPLOY), 'utf8'))
      .filter((document) => document !== null && document !== undefined)
      .map((document) => localize(asKubeObject(document, file), account, namespaces)),
  );
}

/**
 * A kubeconfig for the service account's identity: a client certificate the plane trusts, with
 * the user name and groups a service account token carries (`system:authenticated` the API
 * server adds to anyone). Inline, so the key never reaches the disk.
 */
async function serviceAccountKubeConfig(
  plane: LocalPlane,
  account: ServiceAccountRef,
): Promise<KubeConfig> {
  const username = `system:serviceaccount:${account.namespace}:${account.name}`;
  // Imported here, not at the top: node-forge is for the embedded plane and new certificates only.
  const { issueCertificate } = await import('../../certs/x509.ts');
  const identity = issueCertificate(plane.ca, {
    commonName: username,
    organizations: ['system:serviceaccounts', `system:serviceaccounts:${account.namespace}`],
    usage: 'client',
    validDays: IDENTITY_VALID_DAYS,
  });
  const base64 = (pem: string): string => Buffer.from(pem).toString('base64');
  const name = 'nats-manager-local';
  // Imported here, not at the top: only the embedded plane needs it (src/kube/kubeconfig.ts).
  const { KubeConfig } = await import('@kubernetes/client-node');
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
async function createIfAbsent(client: KubeClient, object: KubeObject): Promise<void> {
  try {
    await client.create(object, { fieldManager: FIELD_MANAGER });
  } catch (error) {
    if (!isApiStatus(error, 409)) throw error;
  }
}

/**
 * Empty webhook configurations for the manager to fill in. In a cluster deploy/webhooks creates
 * them; the ClusterRole lets the manager update these two by name, and create one only to put
 * back a deleted one. Empty, because fields a create writes stay owned by it: a service
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
  const rbac = managerManifests(account, {
    manager: config.managerNamespace,
    nats: config.natsNamespace,
    names: {
      [LEASE_NAME]: config.leaderElectionId,
      [CERTIFICATE_SECRET]: config.certificateSecretName,
    },
  });
  // The plane's admin: what deploy/ installs on a cluster, an administrator installs.
  const admin = clientFor(cluster.kc);
  await ensureCrd(admin, buildNatsCrd(), FIELD_MANAGER);
  // Created, not applied: an apply with nothing but a name owns no field, so the next one would
  // still write (managedFields), and a re-run would not be a no-op.
  for (const name of new Set([config.managerNamespace, config.natsNamespace])) {
    await createIfAbsent(admin, { apiVersion: 'v1', kind: 'Namespace', metadata: { name } });
  }
  for (const object of rbac) {
    await admin.apply(object, { fieldManager: FIELD_MANAGER });
  }
  for (const shell of webhookConfigurationShells()) await createIfAbsent(admin, shell);
  return await serviceAccountKubeConfig(plane, account);
}
