// Keeps hands off the objects the manager renders for a NATS resource. Edits are refused rather
// than reverted later, so nobody is surprised when the next reconcile undoes their change; the
// message says what to edit instead.
//
// Who may write a managed child:
// - the manager's own service account, for anything;
// - break-glass users and groups from the configuration, for anything, with a warning;
// - the garbage collector and the namespace controller, to DELETE. The garbage collector also
//   UPDATEs dependents: it removes ownerReferences when the owner is deleted with orphan
//   propagation (or the owner is gone) and removes the orphan/foregroundDeletion finalizers of
//   dependents it deletes in the foreground. Refusing that would leave objects stuck, so it may
//   UPDATE when nothing but ownerReferences and finalizers changes. `system:kube-controller-
//   manager` gets the same rights: that is who these controllers are when kube-controller-manager
//   runs without --use-service-account-credentials.
// Writes to subresources other than `scale` (status) are the controllers' and pass.
import { MANAGED_BY_LABEL, MANAGED_BY_VALUE, NATS_GROUP, NATS_KIND } from '../src/api/nats.ts';
import { CHILD_KINDS } from '../src/render/children.ts';
import {
  allow,
  deny,
  failureStatus,
  type AdmissionRequest,
  type AdmissionResponse,
} from './review.ts';

export interface ChildProtectionConfig {
  readonly natsName: string;
  readonly natsNamespace: string;
  readonly managerUsername: string;
  /**
   * Other names the manager itself writes as: run off-cluster, it is the kubeconfig's user, and
   * its own writes must not be refused.
   */
  readonly extraManagerUsernames?: readonly string[];
  readonly breakGlassUsers: readonly string[];
  readonly breakGlassGroups: readonly string[];
}

export const GARBAGE_COLLECTOR = 'system:serviceaccount:kube-system:generic-garbage-collector';
export const NAMESPACE_CONTROLLER = 'system:serviceaccount:kube-system:namespace-controller';
export const KUBE_CONTROLLER_MANAGER = 'system:kube-controller-manager';

const CLEANUP_USERS: ReadonlySet<string> = new Set([
  GARBAGE_COLLECTOR,
  NAMESPACE_CONTROLLER,
  KUBE_CONTROLLER_MANAGER,
]);
const OWNERSHIP_USERS: ReadonlySet<string> = new Set([GARBAGE_COLLECTOR, KUBE_CONTROLLER_MANAGER]);

export type ChildAdmission =
  | { readonly allowed: true; readonly reason: string; readonly warnings: readonly string[] }
  | { readonly allowed: false; readonly message: string };

type JsonObject = Record<string, unknown>;

function isObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function metadataOf(object: unknown): JsonObject {
  return isObject(object) && isObject(object.metadata) ? object.metadata : {};
}

function isLabelled(object: unknown): boolean {
  const labels = metadataOf(object).labels;
  return isObject(labels) && labels[MANAGED_BY_LABEL] === MANAGED_BY_VALUE;
}

/** The child name the manager uses for a resource it renders, from the child table. */
function reservedName(
  config: ChildProtectionConfig,
  group: string,
  resource: string,
): string | undefined {
  const child = CHILD_KINDS.find((c) => c.group === group && c.resource === resource);
  return child?.name(config.natsName);
}

/** Whether `subResource` of the resource is one users may not write on a child (scale). */
function guardedSubresource(group: string, resource: string, subResource: string): boolean {
  return CHILD_KINDS.some(
    (c) =>
      c.group === group &&
      c.resource === resource &&
      (c.guardedSubresources ?? []).includes(subResource),
  );
}

interface Owner {
  readonly namespace: string;
  readonly name: string;
}

/** The NATS resource a child belongs to: its NATS ownerReference, else the served one. */
function ownerOf(request: AdmissionRequest, config: ChildProtectionConfig): Owner {
  for (const object of [request.oldObject, request.object]) {
    const references = metadataOf(object).ownerReferences;
    if (!Array.isArray(references)) continue;
    for (const reference of references as unknown[]) {
      if (!isObject(reference) || reference.kind !== NATS_KIND) continue;
      const apiVersion = reference.apiVersion;
      if (typeof apiVersion !== 'string' || !apiVersion.startsWith(`${NATS_GROUP}/`)) continue;
      if (typeof reference.name === 'string' && request.namespace !== '') {
        return { namespace: request.namespace, name: reference.name };
      }
    }
  }
  return { namespace: config.natsNamespace, name: config.natsName };
}

function objectName(request: AdmissionRequest): string {
  if (request.name !== '') return request.name;
  const name = metadataOf(request.object).name;
  return typeof name === 'string' ? name : '';
}

function describeTarget(request: AdmissionRequest): string {
  return `${request.resource.resource} ${JSON.stringify(objectName(request))}`;
}

type Claim = 'labelled' | 'label-removed' | 'label-added' | 'scale' | 'reserved-name';

/** The claim on a subresource write: only the guarded ones (scale) of a child's name. */
function subresourceClaim(
  request: AdmissionRequest,
  config: ChildProtectionConfig,
): Claim | undefined {
  const { resource, subResource } = request;
  const guarded =
    guardedSubresource(resource.group, resource.resource, subResource) &&
    request.namespace === config.natsNamespace &&
    request.name === reservedName(config, resource.group, resource.resource);
  return guarded ? 'scale' : undefined;
}

/**
 * Why the manager owns what the request touches, or undefined when it does not. Every child
 * name in the served namespace is reserved, whatever labels the object carries.
 */
function claimOf(request: AdmissionRequest, config: ChildProtectionConfig): Claim | undefined {
  const { resource, subResource, operation } = request;
  if (subResource !== '') return subresourceClaim(request, config);
  const before = isLabelled(request.oldObject);
  const after = isLabelled(request.object);
  if (operation === 'UPDATE' && before && !after) return 'label-removed';
  // Creating a labelled object, or labelling one, claims it for the manager.
  if (operation !== 'DELETE' && !before && after) return 'label-added';
  if (before || after) return 'labelled';
  const reserved = reservedName(config, resource.group, resource.resource);
  const takesReservedName =
    operation === 'CREATE' &&
    request.namespace === config.natsNamespace &&
    reserved !== undefined &&
    objectName(request) === reserved;
  return takesReservedName ? 'reserved-name' : undefined;
}

// Metadata the apiserver maintains itself, or that only says who owns the object.
const OWNERSHIP_METADATA: ReadonlySet<string> = new Set([
  'ownerReferences',
  'finalizers',
  'managedFields',
  'resourceVersion',
  'generation',
]);

function withoutOwnership(object: unknown): unknown {
  if (!isObject(object)) return object;
  const metadata = Object.fromEntries(
    Object.entries(metadataOf(object)).filter(([key]) => !OWNERSHIP_METADATA.has(key)),
  );
  return { ...object, metadata };
}

function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, child: unknown) =>
    isObject(child)
      ? Object.fromEntries(
          Object.keys(child)
            .sort()
            .map((key) => [key, child[key]]),
        )
      : child,
  );
}

function changesOnlyOwnership(request: AdmissionRequest): boolean {
  return (
    canonicalJson(withoutOwnership(request.object)) ===
    canonicalJson(withoutOwnership(request.oldObject))
  );
}

function isBreakGlass(request: AdmissionRequest, config: ChildProtectionConfig): boolean {
  const { username, groups } = request.userInfo;
  return (
    config.breakGlassUsers.includes(username) ||
    groups.some((group) => config.breakGlassGroups.includes(group))
  );
}

function isCleanup(request: AdmissionRequest): boolean {
  const { username } = request.userInfo;
  if (request.operation === 'DELETE') return CLEANUP_USERS.has(username);
  return (
    request.operation === 'UPDATE' && OWNERSHIP_USERS.has(username) && changesOnlyOwnership(request)
  );
}

function denialMessage(
  request: AdmissionRequest,
  claim: Claim,
  { namespace, name }: Owner,
): string {
  const owner = `${namespace}/${name}`;
  const edit = `kubectl edit nats -n ${namespace} ${name}`;
  const target = describeTarget(request);
  switch (claim) {
    case 'scale':
      return `${target} is managed by NATS ${owner}: set spec.cluster.size of the NATS resource instead (${edit})`;
    case 'reserved-name':
      return `${target} is reserved for NATS ${owner}: the NATS Manager creates it; choose another name`;
    case 'label-removed':
      return `${target} is managed by NATS ${owner}: its ${MANAGED_BY_LABEL} label cannot be removed; edit the NATS resource instead (${edit})`;
    case 'label-added':
      return `${target}: only the NATS Manager may label objects ${MANAGED_BY_LABEL}=${MANAGED_BY_VALUE}`;
    case 'labelled':
      return `${target} is managed by NATS ${owner}: edit the NATS resource instead (${edit})`;
  }
}

/** Whether a write to a (possibly) managed child is allowed, and why. Pure. */
export function decideChildAdmission(
  request: AdmissionRequest,
  config: ChildProtectionConfig,
): ChildAdmission {
  if (request.operation === 'CONNECT')
    return { allowed: true, reason: 'not a write', warnings: [] };
  const claim = claimOf(request, config);
  if (claim === undefined) return { allowed: true, reason: 'not managed', warnings: [] };
  const { username } = request.userInfo;
  if (username === config.managerUsername || config.extraManagerUsernames?.includes(username)) {
    return { allowed: true, reason: 'the manager', warnings: [] };
  }
  const owner = ownerOf(request, config);
  if (isBreakGlass(request, config)) {
    const warning =
      `break-glass ${request.operation} of ${describeTarget(request)}, managed by NATS ` +
      `${owner.namespace}/${owner.name}: the NATS Manager may undo it on its next reconcile`;
    return { allowed: true, reason: 'break-glass', warnings: [warning] };
  }
  if (isCleanup(request)) return { allowed: true, reason: 'cleanup', warnings: [] };
  return { allowed: false, message: denialMessage(request, claim, owner) };
}

/** The protect-children webhook: a 403 Forbidden for writes to managed children. */
export function protectChildren(
  request: AdmissionRequest,
  config: ChildProtectionConfig,
): AdmissionResponse {
  const decision = decideChildAdmission(request, config);
  if (decision.allowed) return allow(request.uid, decision.warnings);
  return deny(
    request.uid,
    failureStatus(403, 'Forbidden', decision.message, {
      name: objectName(request),
      group: request.resource.group,
      kind: request.resource.resource,
    }),
  );
}
