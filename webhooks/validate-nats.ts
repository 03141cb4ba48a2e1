// The validating webhook for NATS resources: the verdict comes from nats-verdict.ts (the rules
// in src/api/rules.ts and the rendered children's limits); this turns it into the apiserver's
// own 422 Invalid status, every field error at once.
import type { ServedNats } from '../src/api/rules.ts';
import { NATS_GVK, invalidStatus, judgeNats, nameOf } from './nats-verdict.ts';
import {
  allow,
  badRequest,
  deny,
  kindMismatch,
  type AdmissionRequest,
  type AdmissionResponse,
} from './review.ts';

export { invalidStatus } from './nats-verdict.ts';

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
  const { errors, warnings } = judgeNats(operation, request.object, request.oldObject, served);
  if (errors.length === 0) return allow(request.uid, warnings);
  return deny(request.uid, invalidStatus(nameOf(request), errors), warnings);
}
