// Thin JSON access to the Kubernetes API for the objects this project renders.
//
// The typed clients of @kubernetes/client-node serialize bodies through their generated models,
// which drop any key the model does not know (x-kubernetes-validations in a CRD schema, fields
// newer than the client). Server-side apply must send exactly what was rendered, so objects go
// out as plain JSON over the client's own connection settings.
import { request, type RequestOptions as HttpsRequestOptions } from 'node:https';
import type { KubeConfig } from '@kubernetes/client-node';

export interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: { name?: string; namespace?: string; [key: string]: unknown };
  [key: string]: unknown;
}

export class KubeApiError extends Error {
  readonly status: number;
  readonly reason: string | undefined;
  readonly body: unknown;

  constructor(method: string, path: string, status: number, body: unknown) {
    const status_ = body as { message?: unknown; reason?: unknown } | undefined;
    const message = typeof status_?.message === 'string' ? status_.message : JSON.stringify(body);
    super(`${method} ${path}: ${String(status)} ${message}`);
    this.name = 'KubeApiError';
    this.status = status;
    this.reason = typeof status_?.reason === 'string' ? status_.reason : undefined;
    this.body = body;
  }
}

/** Whether the API answered `status` (404 not found, 409 conflict or already exists, ...). */
export function isApiStatus(error: unknown, status: number): boolean {
  return error instanceof KubeApiError && error.status === status;
}

/** metav1.Time as the API writes it: RFC 3339 with second precision. */
export function kubeTime(date: Date): string {
  return date.toISOString().replace(/\.\d+Z$/, 'Z');
}

export interface RequestOptions {
  readonly method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  readonly path: string;
  readonly query?: Record<string, string | undefined>;
  readonly body?: unknown;
  readonly contentType?: string;
}

export async function requestJson(kc: KubeConfig, options: RequestOptions): Promise<unknown> {
  const cluster = kc.getCurrentCluster();
  if (cluster === null) throw new Error('the kubeconfig has no current cluster');
  const url = new URL(options.path, cluster.server);
  for (const [key, value] of Object.entries(options.query ?? {})) {
    if (value !== undefined) url.searchParams.set(key, value);
  }
  const httpsOptions: HttpsRequestOptions = { method: options.method };
  await kc.applyToHTTPSOptions(httpsOptions);
  const payload = options.body === undefined ? undefined : JSON.stringify(options.body);
  const headers = {
    ...(httpsOptions.headers as Record<string, string> | undefined),
    Accept: 'application/json',
    ...(payload === undefined ? {} : { 'Content-Type': options.contentType ?? 'application/json' }),
  };
  return new Promise((resolve, reject) => {
    const req = request(url, { ...httpsOptions, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let body: unknown = text;
        try {
          body = text === '' ? undefined : JSON.parse(text);
        } catch {
          // Not JSON: keep the text for the error message.
        }
        const status = res.statusCode ?? 0;
        if (status >= 200 && status < 300) resolve(body);
        else reject(new KubeApiError(options.method, url.pathname, status, body));
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(payload);
  });
}

/** GET of one object; undefined when it does not exist. */
export async function getObject<T = KubeObject>(
  kc: KubeConfig,
  path: string,
): Promise<T | undefined> {
  try {
    return (await requestJson(kc, { method: 'GET', path })) as T;
  } catch (error) {
    if (isApiStatus(error, 404)) return undefined;
    throw error;
  }
}

interface ResourceInfo {
  readonly plural: string;
  readonly namespaced: boolean;
}

// The kinds this project writes. A static table keeps discovery off the hot path.
const RESOURCES: Record<string, ResourceInfo> = {
  'v1/ConfigMap': { plural: 'configmaps', namespaced: true },
  'v1/Secret': { plural: 'secrets', namespaced: true },
  'v1/Service': { plural: 'services', namespaced: true },
  'v1/Namespace': { plural: 'namespaces', namespaced: false },
  'v1/Pod': { plural: 'pods', namespaced: true },
  'v1/ServiceAccount': { plural: 'serviceaccounts', namespaced: true },
  'apps/v1/StatefulSet': { plural: 'statefulsets', namespaced: true },
  'coordination.k8s.io/v1/Lease': { plural: 'leases', namespaced: true },
  'policy/v1/PodDisruptionBudget': { plural: 'poddisruptionbudgets', namespaced: true },
  'scheduling.k8s.io/v1/PriorityClass': { plural: 'priorityclasses', namespaced: false },
  'rbac.authorization.k8s.io/v1/ClusterRole': { plural: 'clusterroles', namespaced: false },
  'rbac.authorization.k8s.io/v1/ClusterRoleBinding': {
    plural: 'clusterrolebindings',
    namespaced: false,
  },
  'rbac.authorization.k8s.io/v1/Role': { plural: 'roles', namespaced: true },
  'rbac.authorization.k8s.io/v1/RoleBinding': { plural: 'rolebindings', namespaced: true },
  'networking.istio.io/v1/DestinationRule': { plural: 'destinationrules', namespaced: true },
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

export function resourcePath(
  apiVersion: string,
  kind: string,
  namespace?: string,
  name?: string,
): string {
  const info = RESOURCES[`${apiVersion}/${kind}`];
  if (info === undefined) throw new Error(`no resource path known for ${apiVersion} ${kind}`);
  const prefix = apiVersion.includes('/') ? `/apis/${apiVersion}` : `/api/${apiVersion}`;
  const scope = info.namespaced ? `/namespaces/${namespace ?? ''}` : '';
  if (info.namespaced && (namespace === undefined || namespace === '')) {
    throw new Error(`${kind} is namespaced: a namespace is required`);
  }
  return `${prefix}${scope}/${info.plural}${name === undefined ? '' : `/${name}`}`;
}

export interface ApplyOptions {
  readonly fieldManager: string;
  readonly force?: boolean;
  readonly dryRun?: boolean;
}

/** Server-side apply of one object, sent exactly as given. */
export async function applyObject(
  kc: KubeConfig,
  object: KubeObject,
  options: ApplyOptions,
): Promise<KubeObject> {
  const name = object.metadata.name;
  if (name === undefined) throw new Error(`cannot apply a ${object.kind} without metadata.name`);
  return (await requestJson(kc, {
    method: 'PATCH',
    path: resourcePath(object.apiVersion, object.kind, object.metadata.namespace, name),
    query: {
      fieldManager: options.fieldManager,
      force: options.force === false ? undefined : 'true',
      dryRun: options.dryRun === true ? 'All' : undefined,
    },
    body: object,
    contentType: 'application/apply-patch+yaml',
  })) as KubeObject;
}

/** Creates one object (server-side dry run when asked), sent exactly as given. */
export async function createObject(
  kc: KubeConfig,
  object: KubeObject,
  options: { dryRun?: boolean; fieldManager?: string } = {},
): Promise<KubeObject> {
  return (await requestJson(kc, {
    method: 'POST',
    path: resourcePath(object.apiVersion, object.kind, object.metadata.namespace),
    query: {
      dryRun: options.dryRun === true ? 'All' : undefined,
      fieldManager: options.fieldManager,
    },
    body: object,
  })) as KubeObject;
}
