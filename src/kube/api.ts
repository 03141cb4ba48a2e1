// Functions over a KubeConfig for scripts, the local plane and tests: each call goes through the
// same transport (and deadline) as the manager's KubeClient, one per KubeConfig. Production code
// receives a KubeClient instead.
import type { ClusterAccess } from './kubeconfig.ts';
import type { KubeObject } from '../base/object.ts';
import { createKubeClient, type ApplyOptions, type KubeClient } from './client.ts';
import { resourcePath } from './resources.ts';
import type { HttpRequest } from './transport.ts';

export type { KubeObject } from '../base/object.ts';
export { kubeTime } from '../base/object.ts';
export type { ApplyOptions } from './client.ts';
export { collectionPath, resourcePath } from './resources.ts';
export { isApiStatus, KubeApiError, RequestTimeoutError } from './transport.ts';

export type RequestOptions = HttpRequest;

const clients = new WeakMap<ClusterAccess, KubeClient>();

/** The client of `kc`, made once. */
export function clientFor(kc: ClusterAccess): KubeClient {
  let client = clients.get(kc);
  if (client === undefined) {
    client = createKubeClient(kc);
    clients.set(kc, client);
  }
  return client;
}

export function requestJson(kc: ClusterAccess, options: RequestOptions): Promise<unknown> {
  return clientFor(kc).request(options);
}

/** GET of one object by path; undefined when it does not exist. */
export async function getObject<T = KubeObject>(
  kc: ClusterAccess,
  path: string,
): Promise<T | undefined> {
  try {
    return (await requestJson(kc, { method: 'GET', path })) as T;
  } catch (error) {
    if ((error as { status?: unknown }).status === 404) return undefined;
    throw error;
  }
}

/** Server-side apply of one object, sent exactly as given. */
export function applyObject(
  kc: ClusterAccess,
  object: KubeObject,
  options: ApplyOptions,
): Promise<KubeObject> {
  return clientFor(kc).apply(object, options);
}

/** Creates one object (server-side dry run when asked), sent exactly as given. */
export function createObject(
  kc: ClusterAccess,
  object: KubeObject,
  options: { dryRun?: boolean; fieldManager?: string } = {},
): Promise<KubeObject> {
  return clientFor(kc).create(object, options);
}

/** The path of `object` in the API. */
export function objectPath(object: KubeObject): string {
  return resourcePath(
    object.apiVersion,
    object.kind,
    object.metadata.namespace,
    object.metadata.name,
  );
}
