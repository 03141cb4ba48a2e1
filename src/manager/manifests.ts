// The parts of deploy/ that depend on the child kinds: the validating webhook configuration and
// the manager's ClusterRole. Generated from the child table (src/render/children.ts) by
// `npm run generate`, and checked for drift by test/unit/deploy-manifests.test.ts, so a new
// child kind is protected and permitted without anyone editing YAML.
import { dump } from 'js-yaml';
import { MANAGED_BY_LABEL, MANAGED_BY_VALUE } from '../api/nats.ts';
import type { KubeObject } from '../base/object.ts';
import { CHILD_KINDS, type ChildKind } from '../render/children.ts';
import { parseConfig } from './config.ts';
import { childNameCondition } from './webhook-configurations.ts';

export const VALIDATING_WEBHOOK_FILE = 'deploy/webhooks/validating-webhook-configuration.yaml';
export const CLUSTER_ROLE_FILE = 'deploy/rbac/cluster-role.yaml';
export const ROLES_FILE = 'deploy/rbac/roles.yaml';

const MANAGER_NAMESPACE = 'kyma-system';
/** The default served NATS resource; the manager writes the configured one's names. */
const NATS_NAME = parseConfig([], {}).natsName;
const SERVICE = { name: 'nats-manager-webhook', namespace: MANAGER_NAMESPACE, port: 443 };
const NAMESPACE_LABEL = 'kubernetes.io/metadata.name';
const LABELS = { 'app.kubernetes.io/name': 'nats-manager' };

interface Rule {
  apiGroups: string[];
  apiVersions: string[];
  resources: string[];
  operations: string[];
  scope: 'Namespaced';
}

/** The child kinds grouped by API group, in table order. */
function byGroup(): { group: string; children: ChildKind[] }[] {
  const groups: { group: string; children: ChildKind[] }[] = [];
  for (const child of CHILD_KINDS) {
    const found = groups.find((g) => g.group === child.group);
    if (found === undefined) groups.push({ group: child.group, children: [child] });
    else found.children.push(child);
  }
  return groups;
}

function versionsOf(children: readonly ChildKind[]): string[] {
  // An optional kind's CRD may serve other versions too: Equivalent matching covers them all.
  if (children.some((c) => c.crd !== undefined)) return ['*'];
  return [...new Set(children.map((c) => c.apiVersion.slice(c.apiVersion.indexOf('/') + 1)))];
}

function childRules(operations: string[]): Rule[] {
  return byGroup().map(({ group, children }) => ({
    apiGroups: [group],
    apiVersions: versionsOf(children),
    resources: children.map((c) => c.resource),
    operations,
    scope: 'Namespaced',
  }));
}

/** CREATE of every child kind, and UPDATE of the subresources users may not write (scale). */
function guardRules(): Rule[] {
  return byGroup().flatMap(({ group, children }) => [
    {
      apiGroups: [group],
      apiVersions: versionsOf(children),
      resources: children.map((c) => c.resource),
      operations: ['CREATE'],
      scope: 'Namespaced' as const,
    },
    ...children.flatMap((c) =>
      (c.guardedSubresources ?? []).map((sub) => ({
        apiGroups: [group],
        apiVersions: versionsOf([c]),
        resources: [`${c.resource}/${sub}`],
        operations: ['UPDATE'],
        scope: 'Namespaced' as const,
      })),
    ),
  ]);
}

const COMMON = {
  admissionReviewVersions: ['v1'],
  sideEffects: 'None',
  matchPolicy: 'Equivalent',
  timeoutSeconds: 5,
  // Ignore everywhere. For NATS resources the CRD's schema and CEL rules enforce the same spec
  // rules when the manager is down, and the loop reports a second NATS resource as
  // Error/Forbidden; Fail would make NATS resources undeletable while the manager is
  // unavailable. For children the loop reverts any edit that gets through meanwhile; Fail would
  // also block the garbage collector and namespace deletion, and could deadlock a cluster being
  // torn down.
  failurePolicy: 'Ignore',
};

const OUTSIDE_KUBE_SYSTEM = {
  matchExpressions: [{ key: NAMESPACE_LABEL, operator: 'NotIn', values: ['kube-system'] }],
};

function clientConfig(path: string): { service: typeof SERVICE & { path: string } } {
  return { service: { ...SERVICE, path } };
}

export function validatingWebhookConfiguration(): KubeObject {
  return {
    apiVersion: 'admissionregistration.k8s.io/v1',
    kind: 'ValidatingWebhookConfiguration',
    metadata: { name: 'nats-manager-validating', labels: LABELS },
    webhooks: [
      {
        name: 'validate.nats.operator.kyma-project.io',
        ...COMMON,
        clientConfig: clientConfig('/validate-nats'),
        rules: [
          {
            apiGroups: ['operator.kyma-project.io'],
            apiVersions: ['v1alpha1'],
            resources: ['nats'],
            operations: ['CREATE', 'UPDATE', 'DELETE'],
            scope: 'Namespaced',
          },
        ],
        namespaceSelector: OUTSIDE_KUBE_SYSTEM,
      },
      {
        // Managed children anywhere. For an UPDATE the selector matches if the old or the new
        // object matches, so removing the label is still seen.
        name: 'protect.children.nats.operator.kyma-project.io',
        ...COMMON,
        clientConfig: clientConfig('/protect-children'),
        rules: childRules(['CREATE', 'UPDATE', 'DELETE']),
        objectSelector: { matchLabels: { [MANAGED_BY_LABEL]: MANAGED_BY_VALUE } },
        namespaceSelector: OUTSIDE_KUBE_SYSTEM,
      },
      {
        // Everything else in the NATS namespace: an object created under a child's name before
        // the manager does ("squatting"), whatever labels it carries (NotIn also matches objects
        // without the label), and the StatefulSet's scale subresource (a Scale has no labels).
        // Only objects bearing a child's name are sent (matchConditions): squatting needs one.
        // The manager rewrites the namespace and the names when NATS_CR_NAMESPACE or
        // NATS_CR_NAME is not the default.
        name: 'guard.children.nats.operator.kyma-project.io',
        ...COMMON,
        clientConfig: clientConfig('/protect-children'),
        rules: guardRules(),
        matchConditions: [childNameCondition(NATS_NAME)],
        objectSelector: {
          matchExpressions: [
            { key: MANAGED_BY_LABEL, operator: 'NotIn', values: [MANAGED_BY_VALUE] },
          ],
        },
        namespaceSelector: { matchLabels: { [NAMESPACE_LABEL]: MANAGER_NAMESPACE } },
      },
    ],
  };
}

const CHILD_VERBS = ['get', 'list', 'watch', 'create', 'update', 'patch', 'delete'];
const SERVICE_ACCOUNT = 'nats-manager';
/** Names the manager's own objects have by default (see config.ts); the Roles allow only them. */
export const LEASE_NAME = 'nats-manager.operator.kyma-project.io';
export const CERTIFICATE_SECRET = 'nats-manager-webhook-certs';
export const CHILDREN_ROLE = 'nats-manager-children';
export const MANAGER_ROLE = 'nats-manager';
const SHOOT_INFO_ROLE = 'nats-manager-shoot-info';

interface PolicyRule {
  apiGroups: string[];
  resources: string[];
  resourceNames?: string[];
  verbs: string[];
}

function rbac(
  kind: 'ClusterRole' | 'Role',
  name: string,
  namespace: string | undefined,
  rules: PolicyRule[],
): KubeObject[] {
  const where = namespace === undefined ? {} : { namespace };
  const bindingKind = kind === 'ClusterRole' ? 'ClusterRoleBinding' : 'RoleBinding';
  return [
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind,
      metadata: { name, ...where, labels: LABELS },
      rules,
    },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: bindingKind,
      metadata: { name, ...where, labels: LABELS },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind, name },
      // The namespace is the manager's: kustomize's namespace transformer fills it in.
      subjects: [{ kind: 'ServiceAccount', name: SERVICE_ACCOUNT }],
    },
  ];
}

/**
 * Cluster scope only for what is cluster-wide by nature: NATS resources (served in any namespace
 * so that a second one is reported), nodes (the zones of the NATS pods), StorageClasses
 * (whether the claims may grow), the CRDs of optional
 * child kinds by name, and the two webhook configurations by name.
 */
export function managerClusterRole(): KubeObject[] {
  const optionalCrds = CHILD_KINDS.flatMap((c) => (c.crd === undefined ? [] : [c.crd]));
  return rbac('ClusterRole', 'nats-manager', undefined, [
    {
      apiGroups: ['operator.kyma-project.io'],
      resources: ['nats'],
      verbs: ['get', 'list', 'watch', 'update', 'patch'],
    },
    {
      apiGroups: ['operator.kyma-project.io'],
      resources: ['nats/status'],
      verbs: ['get', 'update', 'patch'],
    },
    { apiGroups: ['operator.kyma-project.io'], resources: ['nats/finalizers'], verbs: ['update'] },
    // Availability zones come from the nodes the NATS pods run on.
    { apiGroups: [''], resources: ['nodes'], verbs: ['get', 'list', 'watch'] },
    // Whether the claims' StorageClass allows volume expansion (raising fileStorage.size); list
    // finds the cluster's default class. No watch: read once per such update.
    { apiGroups: ['storage.k8s.io'], resources: ['storageclasses'], verbs: ['get', 'list'] },
    // Whether the CRDs of optional child kinds (Istio's DestinationRule) exist: watched by name.
    {
      apiGroups: ['apiextensions.k8s.io'],
      resources: ['customresourcedefinitions'],
      resourceNames: optionalCrds,
      verbs: ['get', 'list', 'watch'],
    },
    // The CA bundle is written into our own webhook configurations, and only those.
    {
      apiGroups: ['admissionregistration.k8s.io'],
      resources: ['mutatingwebhookconfigurations', 'validatingwebhookconfigurations'],
      resourceNames: ['nats-manager-mutating', 'nats-manager-validating'],
      verbs: ['get', 'update', 'patch'],
    },
    // So that a deleted configuration comes back. RBAC cannot restrict create by
    // resourceNames (the name is not known when it is authorized), so this one rule is
    // unnamed; the manager only ever creates the two configurations above.
    {
      apiGroups: ['admissionregistration.k8s.io'],
      resources: ['mutatingwebhookconfigurations', 'validatingwebhookconfigurations'],
      verbs: ['create'],
    },
  ]);
}

/**
 * The Roles: the children in the NATS namespace (no Secret anywhere else), the Lease and the
 * certificate Secret in the manager's namespace, by name, and Gardener's shoot-info ConfigMap.
 * The NATS and manager namespaces are left to kustomize (both kyma-system by default).
 */
export function managerRoles(): KubeObject[] {
  return [
    ...rbac('Role', CHILDREN_ROLE, undefined, [
      // Writes are limited to the kinds the manager renders.
      ...byGroup().map(({ group, children }) => ({
        apiGroups: [group],
        resources: children.map((c) => c.resource),
        verbs: CHILD_VERBS,
      })),
      // The deletion flow removes the StatefulSet's volume claims; a raised file-storage size
      // grows them (patch of spec.resources.requests.storage).
      {
        apiGroups: [''],
        resources: ['persistentvolumeclaims'],
        verbs: ['get', 'list', 'patch', 'delete'],
      },
      // Which nodes (zones) the NATS pods run on.
      { apiGroups: [''], resources: ['pods'], verbs: ['get', 'list', 'watch'] },
      // Events about the NATS resource, in its namespace.
      { apiGroups: [''], resources: ['events'], verbs: ['create', 'patch'] },
    ]),
    ...rbac('Role', MANAGER_ROLE, undefined, [
      // Leader election; create cannot be limited by name (see the webhook configurations).
      {
        apiGroups: ['coordination.k8s.io'],
        resources: ['leases'],
        resourceNames: [LEASE_NAME],
        verbs: ['get', 'update', 'patch'],
      },
      { apiGroups: ['coordination.k8s.io'], resources: ['leases'], verbs: ['create'] },
      // The webhook serving certificate and its CA (--cert-mode=secret).
      {
        apiGroups: [''],
        resources: ['secrets'],
        resourceNames: [CERTIFICATE_SECRET],
        verbs: ['get', 'update', 'patch'],
      },
      { apiGroups: [''], resources: ['secrets'], verbs: ['create'] },
    ]),
    // The provider decides the file-storage default (Gardener shoots only; absent elsewhere).
    ...rbac('Role', SHOOT_INFO_ROLE, 'kube-system', [
      { apiGroups: [''], resources: ['configmaps'], resourceNames: ['shoot-info'], verbs: ['get'] },
    ]),
  ];
}

function header(what: string): string {
  return (
    `# ${what}\n` +
    '# Generated by src/manager/generate-manifests.ts from src/manager/manifests.ts and the child\n' +
    '# table in src/render/children.ts (`npm run generate`); do not edit.\n'
  );
}

function yaml(objects: readonly KubeObject[]): string {
  // A JSON round trip: js-yaml refuses objects of another realm (jest's vm modules).
  return objects
    .map((o) => dump(JSON.parse(JSON.stringify(o)), { lineWidth: -1, noRefs: true }))
    .join('---\n');
}

/** Each generated file of deploy/ and its content. */
export function renderManifests(): Record<string, string> {
  return {
    [VALIDATING_WEBHOOK_FILE]:
      header('What the API server sends the validating webhooks.') +
      yaml([validatingWebhookConfiguration()]),
    [CLUSTER_ROLE_FILE]:
      header('What the manager needs cluster-wide: no children, no Secrets, names where it can.') +
      yaml(managerClusterRole()),
    [ROLES_FILE]:
      header('What the manager needs in the NATS namespace, its own namespace and kube-system.') +
      yaml(managerRoles()),
  };
}
