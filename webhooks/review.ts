// admission.k8s.io/v1 AdmissionReview: the types, a total decoder (any JSON in, a typed request or
// a precise reason out) and the response builders. Every answer to a review whose uid is known is
// an AdmissionReview, so the apiserver always gets a verdict it can show to the user.

import type { UserInfo } from '../src/base/object.ts';

export const ADMISSION_API_VERSION = 'admission.k8s.io/v1';
export const ADMISSION_REVIEW_KIND = 'AdmissionReview';

export const ADMISSION_OPERATIONS = ['CREATE', 'UPDATE', 'DELETE', 'CONNECT'] as const;
export type AdmissionOperation = (typeof ADMISSION_OPERATIONS)[number];

export interface GroupVersionKind {
  readonly group: string;
  readonly version: string;
  readonly kind: string;
}

export interface GroupVersionResource {
  readonly group: string;
  readonly version: string;
  readonly resource: string;
}

export type { UserInfo } from '../src/base/object.ts';

export interface AdmissionRequest {
  readonly uid: string;
  /** Kind of `object` (for a subresource, the subresource's kind, e.g. autoscaling/v1 Scale). */
  readonly kind: GroupVersionKind;
  readonly resource: GroupVersionResource;
  /** `scale`, `status`, ...; empty for the main resource. */
  readonly subResource: string;
  /** Empty for a CREATE with generateName. */
  readonly name: string;
  /** Empty for cluster-scoped resources. */
  readonly namespace: string;
  readonly operation: AdmissionOperation;
  readonly userInfo: UserInfo;
  /** The new object (CREATE, UPDATE); null for DELETE. Untrusted JSON. */
  readonly object: unknown;
  /** The stored object (UPDATE, DELETE); null for CREATE. Untrusted JSON. */
  readonly oldObject: unknown;
  readonly dryRun: boolean;
}

export interface StatusCause {
  /** A CauseType such as FieldValueInvalid. */
  readonly reason: string;
  readonly message: string;
  readonly field?: string;
}

/** metav1.Status, as a denial carries it (the apiserver shows `message` to the user). */
export interface Status {
  readonly apiVersion: 'v1';
  readonly kind: 'Status';
  readonly status: 'Failure';
  readonly message: string;
  /** A StatusReason: Invalid, Forbidden, BadRequest, InternalError. */
  readonly reason: string;
  readonly code: number;
  readonly details?: {
    readonly name?: string;
    readonly group?: string;
    readonly kind?: string;
    readonly causes?: readonly StatusCause[];
  };
}

export interface JsonPatchOperation {
  readonly op: 'add' | 'remove' | 'replace';
  /** A JSON pointer (RFC 6901). */
  readonly path: string;
  readonly value?: unknown;
}

export interface AdmissionResponse {
  readonly uid: string;
  readonly allowed: boolean;
  readonly status?: Status;
  /** Base64 of the JSON patch. */
  readonly patch?: string;
  readonly patchType?: 'JSONPatch';
  readonly warnings?: readonly string[];
}

export interface AdmissionReviewResponse {
  readonly apiVersion: typeof ADMISSION_API_VERSION;
  readonly kind: typeof ADMISSION_REVIEW_KIND;
  readonly response: AdmissionResponse;
}

export type DecodedReview =
  | { readonly ok: true; readonly request: AdmissionRequest }
  /** `uid` is set when the review names one, so the answer can still be a denial. */
  | { readonly ok: false; readonly uid?: string; readonly message: string };

// ---------------------------------------------------------------------------------------------
// Decoding

type JsonObject = Record<string, unknown>;

function isObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

class DecodeError extends Error {}

function describe(value: unknown): string {
  return value === undefined ? 'nothing' : JSON.stringify(value);
}

function optionalString(record: JsonObject, key: string, path: string): string {
  const value = record[key];
  if (value === undefined || value === null) return '';
  if (typeof value !== 'string') throw new DecodeError(`${path}.${key} must be a string`);
  return value;
}

function requiredString(record: JsonObject, key: string, path: string): string {
  const value = record[key];
  if (typeof value !== 'string') throw new DecodeError(`${path}.${key} must be a string`);
  return value;
}

function object(record: JsonObject, key: string, path: string): JsonObject {
  const value = record[key];
  if (!isObject(value)) throw new DecodeError(`${path}.${key} must be an object`);
  return value;
}

function groupVersionKind(record: JsonObject, key: string): GroupVersionKind {
  const path = `request.${key}`;
  const gvk = object(record, key, 'request');
  return {
    group: optionalString(gvk, 'group', path),
    version: requiredString(gvk, 'version', path),
    kind: requiredString(gvk, 'kind', path),
  };
}

function groupVersionResource(record: JsonObject, key: string): GroupVersionResource {
  const path = `request.${key}`;
  const gvr = object(record, key, 'request');
  return {
    group: optionalString(gvr, 'group', path),
    version: requiredString(gvr, 'version', path),
    resource: requiredString(gvr, 'resource', path),
  };
}

function operation(record: JsonObject): AdmissionOperation {
  const value = record.operation;
  const known: readonly unknown[] = ADMISSION_OPERATIONS;
  if (!known.includes(value)) {
    throw new DecodeError(
      `request.operation must be one of ${ADMISSION_OPERATIONS.join(', ')}, got ${describe(value)}`,
    );
  }
  return value as AdmissionOperation;
}

function userInfo(record: JsonObject): UserInfo {
  const info = object(record, 'userInfo', 'request');
  const groups = info.groups ?? [];
  if (!Array.isArray(groups) || !groups.every((group) => typeof group === 'string')) {
    throw new DecodeError('request.userInfo.groups must be a list of strings');
  }
  const uid = optionalString(info, 'uid', 'request.userInfo');
  return {
    username: optionalString(info, 'username', 'request.userInfo'),
    ...(uid === '' ? {} : { uid }),
    groups,
  };
}

function dryRun(record: JsonObject): boolean {
  const value = record.dryRun ?? false;
  if (typeof value !== 'boolean') throw new DecodeError('request.dryRun must be a boolean');
  return value;
}

function uidOf(body: unknown): string | undefined {
  const uid = isObject(body) && isObject(body.request) ? body.request.uid : undefined;
  return typeof uid === 'string' && uid !== '' ? uid : undefined;
}

function decodeRequest(body: unknown, uid: string): AdmissionRequest {
  if (!isObject(body)) throw new DecodeError('an AdmissionReview must be a JSON object');
  if (body.apiVersion !== ADMISSION_API_VERSION || body.kind !== ADMISSION_REVIEW_KIND) {
    throw new DecodeError(
      `expected ${ADMISSION_API_VERSION} ${ADMISSION_REVIEW_KIND}, got ` +
        `${describe(body.apiVersion)} ${describe(body.kind)}`,
    );
  }
  const request = object(body, 'request', 'review');
  return {
    uid,
    kind: groupVersionKind(request, 'kind'),
    resource: groupVersionResource(request, 'resource'),
    subResource: optionalString(request, 'subResource', 'request'),
    name: optionalString(request, 'name', 'request'),
    namespace: optionalString(request, 'namespace', 'request'),
    operation: operation(request),
    userInfo: userInfo(request),
    object: request.object ?? null,
    oldObject: request.oldObject ?? null,
    dryRun: dryRun(request),
  };
}

/** Reads an AdmissionReview from parsed JSON. Never throws. */
export function decodeAdmissionReview(body: unknown): DecodedReview {
  const uid = uidOf(body);
  if (uid === undefined) {
    const message = !isObject(body)
      ? 'an AdmissionReview must be a JSON object'
      : !isObject(body.request)
        ? 'the AdmissionReview has no request'
        : 'request.uid must be a non-empty string';
    return { ok: false, message };
  }
  try {
    return { ok: true, request: decodeRequest(body, uid) };
  } catch (err) {
    if (!(err instanceof DecodeError)) throw err;
    return { ok: false, uid, message: err.message };
  }
}

// ---------------------------------------------------------------------------------------------
// Responses

function withWarnings(warnings: readonly string[]): { warnings?: readonly string[] } {
  return warnings.length > 0 ? { warnings } : {};
}

export function allow(uid: string, warnings: readonly string[] = []): AdmissionResponse {
  return { uid, allowed: true, ...withWarnings(warnings) };
}

export function deny(
  uid: string,
  status: Status,
  warnings: readonly string[] = [],
): AdmissionResponse {
  return { uid, allowed: false, status, ...withWarnings(warnings) };
}

/** Allows with the patch applied; an empty patch allows without one. */
export function allowWithPatch(
  uid: string,
  patch: readonly JsonPatchOperation[],
  warnings: readonly string[] = [],
): AdmissionResponse {
  if (patch.length === 0) return allow(uid, warnings);
  return {
    uid,
    allowed: true,
    patchType: 'JSONPatch',
    patch: Buffer.from(JSON.stringify(patch)).toString('base64'),
    ...withWarnings(warnings),
  };
}

export function failureStatus(
  code: number,
  reason: string,
  message: string,
  details?: Status['details'],
): Status {
  return {
    apiVersion: 'v1',
    kind: 'Status',
    status: 'Failure',
    message,
    reason,
    code,
    ...(details === undefined ? {} : { details }),
  };
}

/** A denial for a review this webhook cannot judge (wrong kind, missing object). */
export function badRequest(uid: string, message: string): AdmissionResponse {
  return deny(uid, failureStatus(400, 'BadRequest', message));
}

export function toReview(response: AdmissionResponse): AdmissionReviewResponse {
  return { apiVersion: ADMISSION_API_VERSION, kind: ADMISSION_REVIEW_KIND, response };
}

export type AdmissionOutcome = 'allowed' | 'denied' | 'error';

/** What to send back for one HTTP request: an AdmissionReview, or a 400 when no uid is known. */
export interface ReviewAnswer {
  readonly httpStatus: 200 | 400;
  readonly body: AdmissionReviewResponse | { readonly message: string };
  /** For metrics: `error` when the review could not be judged. */
  readonly outcome: AdmissionOutcome;
}

/**
 * Decodes a review, lets `handle` judge it and wraps the verdict. Never throws: a handler that
 * throws yields a denial with an internal error, never the exception's text or stack.
 */
export function answerReview(
  body: unknown,
  handle: (request: AdmissionRequest) => AdmissionResponse,
  onHandlerError: (error: unknown) => void = () => undefined,
): ReviewAnswer {
  const decoded = decodeAdmissionReview(body);
  if (!decoded.ok) {
    if (decoded.uid === undefined) {
      return { httpStatus: 400, body: { message: decoded.message }, outcome: 'error' };
    }
    const denial = badRequest(decoded.uid, `malformed AdmissionReview: ${decoded.message}`);
    return { httpStatus: 200, body: toReview(denial), outcome: 'error' };
  }
  const { uid } = decoded.request;
  let response: AdmissionResponse;
  try {
    response = handle(decoded.request);
  } catch (error) {
    onHandlerError(error);
    const status = failureStatus(
      500,
      'InternalError',
      'internal error while reviewing the request',
    );
    return { httpStatus: 200, body: toReview(deny(uid, status)), outcome: 'error' };
  }
  const outcome = !response.allowed
    ? response.status?.reason === 'BadRequest'
      ? 'error'
      : 'denied'
    : 'allowed';
  return { httpStatus: 200, body: toReview({ ...response, uid }), outcome };
}

function formatGroupVersionKind({ group, version, kind }: GroupVersionKind): string {
  return `${group === '' ? '' : `${group}/`}${version} ${kind}`;
}

/** Why the request is not for `expected`, or undefined when it is. */
export function kindMismatch(
  request: AdmissionRequest,
  expected: GroupVersionKind,
): string | undefined {
  const { kind } = request;
  if (
    kind.group === expected.group &&
    kind.version === expected.version &&
    kind.kind === expected.kind
  ) {
    return undefined;
  }
  return `this webhook reviews ${formatGroupVersionKind(expected)}, not ${formatGroupVersionKind(kind)}`;
}
