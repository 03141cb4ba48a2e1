// The narrow client the rest of the code receives: the verbs a controller needs, on plain JSON
// objects, every one with a deadline and an AbortSignal (CallOptions). Built on the one
// transport; src/kube/fake.ts is the in-memory stand-in for unit tests.
import type { IncomingMessage } from 'node:http';
import type { ClusterAccess } from './kubeconfig.ts';
import type { KubeObject, ObjectRef } from '../base/object.ts';
import { collectionPath, resourcePath } from './resources.ts';
import {
  createTransport,
  isApiStatus,
  type CallOptions,
  type HttpRequest,
  type Transport,
  type TransportSettings,
} from './transport.ts';

export interface ObjectList<T = KubeObject> {
  apiVersion?: string;
  kind?: string;
  metadata?: { resourceVersion?: string; continue?: string };
  items?: T[];
}

export interface Selectors {
  readonly labelSelector?: string;
  readonly fieldSelector?: string;
}

export interface ListOptions extends CallOptions, Selectors {
  readonly limit?: number;
  readonly continue?: string;
  /**
   * Served from the API server's watch cache (resourceVersion=0): as fresh as its watch, a few
   * milliseconds behind. Without it the list is a consistent read, which after a write to
   * another resource waits for that resource's cache to catch up: about 45 ms on loopback.
   */
  readonly fromWatchCache?: boolean;
}

export interface WatchOptions extends Selectors {
  readonly resourceVersion: string;
  /** The server ends the watch after this long. */
  readonly timeoutSeconds: number;
  /** Ends the watch. */
  readonly signal: AbortSignal;
  /** Deadline for the response headers. */
  readonly timeoutMs?: number;
}

/** An open watch: its HTTP status and, for 200, one JSON event per line. */
export type WatchResponse = Pick<
  IncomingMessage,
  'statusCode' | 'on' | 'setEncoding' | typeof Symbol.asyncIterator
>;

export interface WriteOptions extends CallOptions {
  readonly fieldManager?: string;
  readonly dryRun?: boolean;
}

export interface ApplyOptions extends WriteOptions {
  readonly fieldManager: string;
  /** Take over fields other managers own; default true, as a controller must. */
  readonly force?: boolean;
}

export type PatchType = 'merge' | 'json';

export interface DeleteOptions extends CallOptions {
  /** Only the object with this uid: one re-created meanwhile under the name is left alone (409). */
  readonly uid?: string;
  /** What happens to its dependents; Orphan keeps a StatefulSet's pods running. */
  readonly propagationPolicy?: 'Orphan' | 'Background' | 'Foreground';
}

export interface PatchOptions extends WriteOptions {
  readonly type: PatchType;
  readonly subresource?: string;
}

export interface KubeClient {
  /** The object, or undefined when it does not exist. */
  get<T = KubeObject>(ref: ObjectRef, options?: CallOptions): Promise<T | undefined>;
  /** One page of a collection (collectionPath()). */
  list<T = KubeObject>(path: string, options?: ListOptions): Promise<ObjectList<T>>;
  watch(path: string, options: WatchOptions): Promise<WatchResponse>;
  create<T = KubeObject>(object: KubeObject, options?: WriteOptions): Promise<T>;
  /** Server-side apply, the object sent exactly as given. */
  apply<T = KubeObject>(object: KubeObject, options: ApplyOptions): Promise<T>;
  /** Replaces the object (PUT); its metadata.resourceVersion makes it a compare-and-swap. */
  update<T = KubeObject>(object: KubeObject, options?: WriteOptions): Promise<T>;
  patch<T = KubeObject>(ref: ObjectRef, body: unknown, options: PatchOptions): Promise<T>;
  /** Replaces the status subresource. */
  status<T = KubeObject>(object: KubeObject, options?: CallOptions): Promise<T>;
  /** Whether it was there to delete (false: already gone). */
  delete(ref: ObjectRef, options?: DeleteOptions): Promise<boolean>;
  /** Anything else the API serves (reviews, /version): a JSON exchange with the same deadline. */
  request(request: HttpRequest): Promise<unknown>;
}

function deleteBody(options: DeleteOptions | undefined): { body?: unknown } {
  const { uid, propagationPolicy } = options ?? {};
  if (uid === undefined && propagationPolicy === undefined) return {};
  return {
    body: {
      apiVersion: 'v1',
      kind: 'DeleteOptions',
      ...(uid === undefined ? {} : { preconditions: { uid } }),
      ...(propagationPolicy === undefined ? {} : { propagationPolicy }),
    },
  };
}

function pathOf(ref: ObjectRef, subresource?: string): string {
  const path = resourcePath(ref.apiVersion, ref.kind, ref.namespace, ref.name);
  return subresource === undefined ? path : `${path}/${subresource}`;
}

function objectRef(object: KubeObject, operation: string): ObjectRef {
  const name = object.metadata.name;
  if (name === undefined || name === '') {
    throw new Error(`cannot ${operation} a ${object.kind} without metadata.name`);
  }
  return {
    apiVersion: object.apiVersion,
    kind: object.kind,
    namespace: object.metadata.namespace,
    name,
  };
}

const PATCH_TYPES: Record<PatchType, string> = {
  merge: 'application/merge-patch+json',
  json: 'application/json-patch+json',
};

function writeQuery(options: WriteOptions | undefined): Record<string, string | undefined> {
  return {
    fieldManager: options?.fieldManager,
    dryRun: options?.dryRun === true ? 'All' : undefined,
  };
}

export function kubeClientOn(transport: Transport): KubeClient {
  const json = async <T>(request: HttpRequest): Promise<T> => (await transport.json(request)) as T;
  const call = (options: CallOptions | undefined): CallOptions => ({
    signal: options?.signal,
    timeoutMs: options?.timeoutMs,
  });
  return {
    get: async <T>(ref: ObjectRef, options?: CallOptions) => {
      try {
        return await json<T>({ method: 'GET', path: pathOf(ref), ...call(options) });
      } catch (error) {
        if (isApiStatus(error, 404)) return undefined;
        throw error;
      }
    },
    list: (path, options) =>
      json({
        method: 'GET',
        path,
        query: {
          labelSelector: options?.labelSelector,
          fieldSelector: options?.fieldSelector,
          limit: options?.limit === undefined ? undefined : String(options.limit),
          continue: options?.continue,
          resourceVersion: options?.fromWatchCache === true ? '0' : undefined,
        },
        ...call(options),
      }),
    watch: (path, options) =>
      transport.stream({
        path,
        query: {
          watch: 'true',
          resourceVersion: options.resourceVersion,
          allowWatchBookmarks: 'true',
          timeoutSeconds: String(options.timeoutSeconds),
          labelSelector: options.labelSelector,
          fieldSelector: options.fieldSelector,
        },
        signal: options.signal,
        timeoutMs: options.timeoutMs,
      }),
    create: (object, options) =>
      json({
        method: 'POST',
        path: collectionPath(object.apiVersion, object.kind, object.metadata.namespace),
        query: writeQuery(options),
        body: object,
        ...call(options),
      }),
    apply: (object, options) =>
      json({
        method: 'PATCH',
        path: pathOf(objectRef(object, 'apply')),
        query: { ...writeQuery(options), force: options.force === false ? undefined : 'true' },
        body: object,
        contentType: 'application/apply-patch+yaml',
        ...call(options),
      }),
    update: (object, options) =>
      json({
        method: 'PUT',
        path: pathOf(objectRef(object, 'update')),
        query: writeQuery(options),
        body: object,
        ...call(options),
      }),
    patch: (ref, body, options) =>
      json({
        method: 'PATCH',
        path: pathOf(ref, options.subresource),
        query: writeQuery(options),
        body,
        contentType: PATCH_TYPES[options.type],
        ...call(options),
      }),
    status: (object, options) =>
      json({
        method: 'PUT',
        path: pathOf(objectRef(object, 'write the status of'), 'status'),
        body: object,
        ...call(options),
      }),
    delete: async (ref, options) => {
      try {
        await json({
          method: 'DELETE',
          path: pathOf(ref),
          ...deleteBody(options),
          ...call(options),
        });
        return true;
      } catch (error) {
        if (isApiStatus(error, 404)) return false;
        throw error;
      }
    },
    request: (request) => transport.json(request),
  };
}

/** A client for the cluster `kc` points at. */
export function createKubeClient(kc: ClusterAccess, settings?: TransportSettings): KubeClient {
  return kubeClientOn(createTransport(kc, settings));
}
