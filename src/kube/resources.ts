// Where each kind lives in the API. A static table keeps discovery off the hot path; the
// children's entries come from the child table, so a new child kind needs nothing here.
import { CHILD_KINDS } from '../render/children.ts';

interface ResourceInfo {
  readonly plural: string;
  readonly namespaced: boolean;
}

const OTHER_RESOURCES: Record<string, ResourceInfo> = {
  'v1/Namespace': { plural: 'namespaces', namespaced: false },
  'v1/Pod': { plural: 'pods', namespaced: true },
  'v1/Node': { plural: 'nodes', namespaced: false },
  'v1/Event': { plural: 'events', namespaced: true },
  'v1/PersistentVolumeClaim': { plural: 'persistentvolumeclaims', namespaced: true },
  'v1/ServiceAccount': { plural: 'serviceaccounts', namespaced: true },
  'storage.k8s.io/v1/StorageClass': { plural: 'storageclasses', namespaced: false },
  'coordination.k8s.io/v1/Lease': { plural: 'leases', namespaced: true },
  'scheduling.k8s.io/v1/PriorityClass': { plural: 'priorityclasses', namespaced: false },
  'rbac.authorization.k8s.io/v1/ClusterRole': { plural: 'clusterroles', namespaced: false },
  'rbac.authorization.k8s.io/v1/ClusterRoleBinding': {
    plural: 'clusterrolebindings',
    namespaced: false,
  },
  'rbac.authorization.k8s.io/v1/Role': { plural: 'roles', namespaced: true },
  'rbac.authorization.k8s.io/v1/RoleBinding': { plural: 'rolebindings', namespaced: true },
  'apiextensions.k8s.io/v1/CustomResourceDefinition': {
    plural: 'customresourcedefinitions',
    namespaced: false,
  },
  'operator.kyma-project.io/v1alpha1/NATS': { plural: 'nats', namespaced: true },
  'admissionregistration.k8s.io/v1/MutatingWebhookConfiguration': {
    plural: 'mutatingwebhookconfigurations',
    namespaced: false,
  },
  'admissionregistration.k8s.io/v1/ValidatingWebhookConfiguration': {
    plural: 'validatingwebhookconfigurations',
    namespaced: false,
  },
};

const RESOURCES: Record<string, ResourceInfo> = {
  ...Object.fromEntries(
    CHILD_KINDS.map((child) => [
      `${child.apiVersion}/${child.kind}`,
      { plural: child.resource, namespaced: true },
    ]),
  ),
  ...OTHER_RESOURCES,
};

function infoOf(apiVersion: string, kind: string): ResourceInfo {
  const info = RESOURCES[`${apiVersion}/${kind}`];
  if (info === undefined) throw new Error(`no resource path known for ${apiVersion} ${kind}`);
  return info;
}

function groupPrefix(apiVersion: string): string {
  return apiVersion.includes('/') ? `/apis/${apiVersion}` : `/api/${apiVersion}`;
}

/** The path of one object, or of the collection in `namespace` when `name` is undefined. */
export function resourcePath(
  apiVersion: string,
  kind: string,
  namespace?: string,
  name?: string,
): string {
  const info = infoOf(apiVersion, kind);
  if (info.namespaced && (namespace === undefined || namespace === '')) {
    throw new Error(`${kind} is namespaced: a namespace is required`);
  }
  const scope = info.namespaced ? `/namespaces/${namespace ?? ''}` : '';
  return `${groupPrefix(apiVersion)}${scope}/${info.plural}${name === undefined ? '' : `/${name}`}`;
}

/** A collection to list or watch: in one namespace, or in all when `namespace` is undefined. */
export function collectionPath(apiVersion: string, kind: string, namespace?: string): string {
  const info = infoOf(apiVersion, kind);
  const scope = info.namespaced && namespace !== undefined ? `/namespaces/${namespace}` : '';
  return `${groupPrefix(apiVersion)}${scope}/${info.plural}`;
}
