// The defaulting webhook for NATS resources. The apiserver already applies the CRD's schema
// defaults before admission; this applies the same ones (for a request that reaches it
// undefaulted). The file-storage size is never written: a resource created without one keeps
// none, so that it can still be set later, as with the Go manager.
//
// It also judges the change. The API server calls mutating webhooks before it validates the
// schema and the CEL rules, and stops at the first layer that refuses; judging here, every
// error of every layer (schema, CEL rules, what only the manager knows) comes in one answer.
import { defaultNatsSpec } from '../src/api/defaults.ts';
import type { ServedNats } from '../src/api/rules.ts';
import { LruCache } from '../src/base/lru.ts';
import { NATS_GVK, invalidStatus, judgeNats, nameOf } from './nats-verdict.ts';
import {
  allow,
  allowWithPatch,
  badRequest,
  deny,
  kindMismatch,
  type AdmissionRequest,
  type AdmissionResponse,
  type JsonPatchOperation,
} from './review.ts';

export { NATS_GVK } from './nats-verdict.ts';

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
 * Defaults a NATS resource on CREATE and UPDATE, or denies it with every error at once when
 * `served` is given; other operations pass unchanged.
 */
export function mutateNats(request: AdmissionRequest, served?: ServedNats): AdmissionResponse {
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
  if (served !== undefined) {
    // Warnings are the validating webhook's to give, once.
    const { errors } = judgeNats(request.operation, object, request.oldObject, served);
    if (errors.length > 0) return deny(request.uid, invalidStatus(nameOf(request), errors));
  }
  return allowWithPatch(request.uid, defaultingPatch(object, spec));
}

// The patch is a pure function of the spec, and a spec comes back (see judgeNats' memo); a spec
// too large for the cap is diffed each time rather than held.
const PATCHES = new LruCache<string, readonly JsonPatchOperation[]>(64, {
  maxKeyLength: 16 * 1024,
});

function defaultingPatch(object: JsonObject, spec: unknown): readonly JsonPatchOperation[] {
  if (!Object.hasOwn(object, 'spec')) {
    return [{ op: 'add', path: '/spec', value: defaultNatsSpec(spec) }];
  }
  // undefined for a spec that is present but undefined, which only a caller in code can send.
  const key = JSON.stringify(spec) as string | undefined;
  const diff = (): readonly JsonPatchOperation[] =>
    Object.freeze(jsonPatch(spec, defaultNatsSpec(spec), '/spec'));
  return key === undefined ? diff() : PATCHES.getOrCompute(key, diff);
}
