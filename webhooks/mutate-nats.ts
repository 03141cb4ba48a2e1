// The defaulting webhook for NATS resources. The apiserver already applies the CRD's schema
// defaults before admission; this also writes the one default only the manager knows (the
// file-storage size), so the stored resource shows every value the cluster runs with.
import { defaultNatsSpec } from '../src/api/defaults.ts';
import { NATS_GROUP, NATS_KIND, NATS_VERSION } from '../src/api/nats.ts';
import {
  allow,
  allowWithPatch,
  badRequest,
  kindMismatch,
  type AdmissionRequest,
  type AdmissionResponse,
  type JsonPatchOperation,
} from './review.ts';

export const NATS_GVK = { group: NATS_GROUP, version: NATS_VERSION, kind: NATS_KIND } as const;

type JsonObject = Record<string, unknown>;

function isObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function escapePointer(key: string): string {
  return key.replaceAll('~', '~0').replaceAll('/', '~1');
}

function diffInto(
  before: unknown,
  after: unknown,
  path: string,
  patch: JsonPatchOperation[],
): void {
  if (isObject(before) && isObject(after)) {
    for (const key of Object.keys(before)) {
      if (!Object.hasOwn(after, key))
        patch.push({ op: 'remove', path: `${path}/${escapePointer(key)}` });
    }
    for (const [key, value] of Object.entries(after)) {
      const childPath = `${path}/${escapePointer(key)}`;
      if (Object.hasOwn(before, key)) diffInto(before[key], value, childPath, patch);
      else patch.push({ op: 'add', path: childPath, value });
    }
    return;
  }
  // Scalars and lists: equal JSON text is an equal value (lists keep their order).
  if (JSON.stringify(before) !== JSON.stringify(after)) {
    patch.push({ op: 'replace', path, value: after });
  }
}

/** The JSON patch that turns `before` into `after` (both JSON); empty when they are equal. */
export function jsonPatch(before: unknown, after: unknown, path = ''): JsonPatchOperation[] {
  const patch: JsonPatchOperation[] = [];
  diffInto(before, after, path, patch);
  return patch;
}

/**
 * The spec the stored resource should have. On UPDATE a file-storage size the old resource had
 * is not put back when the new one drops it: validation must see, and refuse, the removal
 * rather than a silent change to 1Gi.
 */
function defaultedSpec(request: AdmissionRequest, spec: unknown): unknown {
  const defaulted = defaultNatsSpec(spec);
  const fileStorageOf = (value: unknown): unknown =>
    isObject(value) && isObject(value.jetStream) ? value.jetStream.fileStorage : undefined;
  const oldFileStorage = fileStorageOf(
    isObject(request.oldObject) ? request.oldObject.spec : undefined,
  );
  const newFileStorage = fileStorageOf(spec);
  const removed =
    request.operation === 'UPDATE' &&
    isObject(oldFileStorage) &&
    oldFileStorage.size != null &&
    !(isObject(newFileStorage) && newFileStorage.size != null);
  if (!removed) return defaulted;
  const fileStorage: Partial<typeof defaulted.jetStream.fileStorage> = {
    ...defaulted.jetStream.fileStorage,
  };
  delete fileStorage.size;
  return { ...defaulted, jetStream: { ...defaulted.jetStream, fileStorage } };
}

/** Defaults a NATS resource on CREATE and UPDATE; other operations pass unchanged. */
export function mutateNats(request: AdmissionRequest): AdmissionResponse {
  const mismatch = kindMismatch(request, NATS_GVK);
  if (mismatch !== undefined) return badRequest(request.uid, mismatch);
  if (request.operation !== 'CREATE' && request.operation !== 'UPDATE') return allow(request.uid);
  const { object } = request;
  if (!isObject(object)) {
    return badRequest(request.uid, `request.object must be a NATS object for ${request.operation}`);
  }
  const spec = object.spec;
  // A spec that is not an object cannot be defaulted; the schema refuses it after admission.
  if (spec !== undefined && spec !== null && !isObject(spec)) return allow(request.uid);
  const defaulted = defaultedSpec(request, spec);
  const patch = Object.hasOwn(object, 'spec')
    ? jsonPatch(spec, defaulted, '/spec')
    : [{ op: 'add' as const, path: '/spec', value: defaulted }];
  return allowWithPatch(request.uid, patch);
}
