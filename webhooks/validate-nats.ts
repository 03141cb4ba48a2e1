// The validating webhook for NATS resources: the verdict comes from src/api/rules.ts; this
// turns it into the apiserver's own 422 Invalid status, every field error at once.
import { NATS_GROUP, NATS_KIND } from '../src/api/nats.ts';
import {
  fieldErrorBody,
  validateNatsChange,
  type NatsFieldError,
  type ServedNats,
} from '../src/api/rules.ts';
import { NATS_GVK } from './mutate-nats.ts';
import {
  allow,
  badRequest,
  deny,
  failureStatus,
  kindMismatch,
  type AdmissionRequest,
  type AdmissionResponse,
  type Status,
} from './review.ts';

function nameOf(request: AdmissionRequest): string {
  if (request.name !== '') return request.name;
  const object = request.operation === 'DELETE' ? request.oldObject : request.object;
  const metadata =
    typeof object === 'object' && object !== null
      ? (object as { metadata?: unknown }).metadata
      : undefined;
  const name =
    typeof metadata === 'object' && metadata !== null
      ? (metadata as { name?: unknown }).name
      : undefined;
  return typeof name === 'string' ? name : '';
}

/** The status the apiserver itself returns for an invalid object, as kubectl prints it. */
export function invalidStatus(name: string, errors: readonly NatsFieldError[]): Status {
  const messages = errors.map((error) => error.message);
  const list = messages.length === 1 ? (messages[0] ?? '') : `[${messages.join(', ')}]`;
  return failureStatus(
    422,
    'Invalid',
    `${NATS_KIND}.${NATS_GROUP} ${JSON.stringify(name)} is invalid: ${list}`,
    {
      name,
      group: NATS_GROUP,
      kind: NATS_KIND,
      causes: errors.map((error) => ({
        reason: error.type,
        message: fieldErrorBody(error),
        field: error.path,
      })),
    },
  );
}

/** Judges CREATE, UPDATE and DELETE of a NATS resource; CONNECT is not a change and passes. */
export function validateNatsRequest(
  request: AdmissionRequest,
  served: ServedNats,
): AdmissionResponse {
  const mismatch = kindMismatch(request, NATS_GVK);
  if (mismatch !== undefined) return badRequest(request.uid, mismatch);
  const { operation } = request;
  if (operation === 'CONNECT') return allow(request.uid);
  if (operation !== 'DELETE' && (typeof request.object !== 'object' || request.object === null)) {
    return badRequest(request.uid, `request.object must be a NATS object for ${operation}`);
  }
  const { errors, warnings } = validateNatsChange(
    operation,
    request.object,
    request.oldObject,
    served,
  );
  if (errors.length === 0) return allow(request.uid, warnings);
  return deny(request.uid, invalidStatus(nameOf(request), errors), warnings);
}
