// An in-memory KubeClient for unit tests: objects kept by path, resourceVersions counted, every
// call recorded, and a hook that lets a test fail or hold any call. Server-side apply is a plain
// replace of what was sent (no field ownership); a watch stays open and silent until aborted, so
// informers sync on the stored objects and see no later change.
import { PassThrough } from 'node:stream';
import type { KubeObject, ObjectRef } from '../base/object.ts';
import type {
  DeleteOptions,
  KubeClient,
  ListOptions,
  ObjectList,
  WatchResponse,
} from './client.ts';
import { collectionPath, resourcePath } from './resources.ts';
import { KubeApiError, type CallOptions } from './transport.ts';

export interface FakeCall {
  readonly verb: 'get' | 'list' | 'create' | 'apply' | 'update' | 'patch' | 'status' | 'delete';
  readonly path: string;
  readonly body?: unknown;
  /** A list from the watch cache (ListOptions.fromWatchCache). */
  readonly fromWatchCache?: boolean;
}

export interface FakeKubeClient extends KubeClient {
  readonly calls: FakeCall[];
  /** Runs before every call; throw to fail it, or return a promise to hold it. */
  intercept?: (call: FakeCall, signal: AbortSignal | undefined) => Promise<void> | undefined;
  /** Stores an object as if someone else had written it. */
  put(object: KubeObject): KubeObject;
  stored(ref: ObjectRef): KubeObject | undefined;
}

function pathOf(ref: ObjectRef): string {
  return resourcePath(ref.apiVersion, ref.kind, ref.namespace, ref.name);
}

function refOfObject(object: KubeObject): ObjectRef {
  return {
    apiVersion: object.apiVersion,
    kind: object.kind,
    namespace: object.metadata.namespace,
    name: object.metadata.name ?? '',
  };
}

/** Rejects with the signal's reason once it fires. */
function aborted(signal: AbortSignal | undefined): Promise<never> {
  return new Promise((_resolve, reject) => {
    const fail = (): void => {
      reject(signal?.reason instanceof Error ? signal.reason : new Error('aborted'));
    };
    if (signal?.aborted === true) fail();
    else signal?.addEventListener('abort', fail, { once: true });
  });
}

export function createFakeKubeClient(): FakeKubeClient {
  const objects = new Map<string, KubeObject>();
  let version = 0;

  const store = (object: KubeObject): KubeObject => {
    version += 1;
    const stored = structuredClone(object);
    stored.metadata = {
      ...stored.metadata,
      resourceVersion: String(version),
      uid: objects.get(pathOf(refOfObject(object)))?.metadata.uid ?? `uid-${String(version)}`,
    };
    objects.set(pathOf(refOfObject(object)), stored);
    return structuredClone(stored);
  };

  const fake: FakeKubeClient = {
    calls: [],
    put: store,
    stored: (ref) => objects.get(pathOf(ref)),
    get: async <T>(ref: ObjectRef, options?: CallOptions) => {
      await enter({ verb: 'get', path: pathOf(ref) }, options);
      const object = objects.get(pathOf(ref));
      return object === undefined ? undefined : (structuredClone(object) as T);
    },
    list: async <T>(path: string, options?: ListOptions): Promise<ObjectList<T>> => {
      await enter(
        {
          verb: 'list',
          path,
          ...(options?.fromWatchCache === true ? { fromWatchCache: true } : {}),
        },
        options,
      );
      const items = [...objects.entries()]
        .filter(([key]) => key.startsWith(`${path}/`))
        .map(([, object]) => structuredClone(object) as T);
      return { metadata: { resourceVersion: String(version) }, items };
    },
    watch: (_path, options) => {
      const stream = Object.assign(new PassThrough(), { statusCode: 200 });
      const end = (): void => {
        stream.destroy();
      };
      if (options.signal.aborted) end();
      else options.signal.addEventListener('abort', end, { once: true });
      // A Readable with a status: all the informer reads of an IncomingMessage.
      return Promise.resolve(stream as unknown as WatchResponse);
    },
    create: async <T>(object: KubeObject, options?: CallOptions) => {
      const path = collectionPath(object.apiVersion, object.kind, object.metadata.namespace);
      await enter({ verb: 'create', path, body: object }, options);
      if (objects.has(pathOf(refOfObject(object)))) {
        throw new KubeApiError('POST', path, 409, { reason: 'AlreadyExists' });
      }
      return store(object) as T;
    },
    apply: async <T>(object: KubeObject, options?: CallOptions) => {
      await enter({ verb: 'apply', path: pathOf(refOfObject(object)), body: object }, options);
      return store(object) as T;
    },
    update: async <T>(object: KubeObject, options?: CallOptions) => {
      const path = pathOf(refOfObject(object));
      await enter({ verb: 'update', path, body: object }, options);
      const current = objects.get(path);
      if (current === undefined) throw new KubeApiError('PUT', path, 404, {});
      const expected = object.metadata.resourceVersion;
      if (expected !== undefined && expected !== current.metadata.resourceVersion) {
        throw new KubeApiError('PUT', path, 409, { reason: 'Conflict' });
      }
      return store(object) as T;
    },
    patch: async <T>(ref: ObjectRef, body: unknown, options?: CallOptions) => {
      const path = pathOf(ref);
      await enter({ verb: 'patch', path, body }, options);
      const current = objects.get(path);
      if (current === undefined) throw new KubeApiError('PATCH', path, 404, {});
      const patch = body as { metadata?: Record<string, unknown> };
      return store({
        ...current,
        ...patch,
        metadata: { ...current.metadata, ...patch.metadata },
      }) as T;
    },
    status: async <T>(object: KubeObject, options?: CallOptions) => {
      const path = pathOf(refOfObject(object));
      await enter({ verb: 'status', path, body: object }, options);
      const current = objects.get(path);
      if (current === undefined) throw new KubeApiError('PUT', path, 404, {});
      return store({ ...current, status: object.status }) as T;
    },
    delete: async (ref, options?: DeleteOptions) => {
      const path = pathOf(ref);
      await enter({ verb: 'delete', path, body: options }, options);
      const uid = objects.get(path)?.metadata.uid;
      if (options?.uid !== undefined && uid !== undefined && uid !== options.uid) {
        throw new KubeApiError('DELETE', path, 409, { reason: 'Conflict' });
      }
      return objects.delete(path);
    },
    request: () => Promise.reject(new Error('the fake client serves no raw requests')),
  };

  async function enter(call: FakeCall, options: CallOptions | undefined): Promise<void> {
    fake.calls.push(call);
    options?.signal?.throwIfAborted();
    const held = fake.intercept?.(call, options?.signal);
    if (held !== undefined) await Promise.race([held, aborted(options?.signal)]);
  }

  return fake;
}
