// One judgement of a NATS change for both NATS webhooks: the CRD's schema, the rules its CEL
// expressions state, and what only the manager knows (the served resource, the provider, the
// children rendered from the resource). The mutating webhook is called before the API server
// validates the schema, so it denies with this complete list at once; the validating webhook
// judges the final object the same way.
import { NATS_GROUP, NATS_KIND, NATS_VERSION } from '../src/api/nats.ts';
import {
  fieldErrorBody,
  validateNatsChange,
  type NatsChangeVerdict,
  type NatsFieldError,
  type Operation,
  type ServedNats,
} from '../src/api/rules.ts';
import { LruCache } from '../src/base/lru.ts';
import { renderedChildErrors } from '../src/render/limits.ts';
import { failureStatus, type AdmissionRequest, type Status } from './review.ts';

export const NATS_GVK = { group: NATS_GROUP, version: NATS_VERSION, kind: NATS_KIND } as const;

// Both NATS webhooks judge every write: the mutating one the object as sent, the validating one
// the object after mutation, the same object when the write needed no defaults; and a re-apply
// of an unchanged resource is judged again. The verdict is a pure function of the key's parts.
// Objects too large for the cap are judged each time rather than held.
const VERDICTS = new LruCache<string, NatsChangeVerdict>(64, { maxKeyLength: 64 * 1024 });

/** Every error of a NATS CREATE, UPDATE or DELETE, and the warnings for a legal one. */
export function judgeNats(
  operation: Operation,
  object: unknown,
  oldObject: unknown,
  served: ServedNats,
): NatsChangeVerdict {
  const provider = served.provider?.();
  const key = JSON.stringify([
    operation,
    served.natsName,
    served.natsNamespace,
    provider ?? null,
    object ?? null,
    oldObject ?? null,
  ]);
  return VERDICTS.getOrCompute(key, () =>
    frozen(
      validateNatsChange(operation, object, oldObject, {
        ...served,
        provider: () => provider,
        childRules: renderedChildErrors,
      }),
    ),
  );
}

// Shared by every caller from now on. The rejected values inside the errors are not frozen:
// they are parts of the request's object, which is not ours to change.
function frozen({ errors, warnings }: NatsChangeVerdict): NatsChangeVerdict {
  return Object.freeze({
    errors: Object.freeze(errors.map((error) => Object.freeze(error))),
    warnings: Object.freeze(warnings),
  });
}

export function nameOf(request: AdmissionRequest): string {
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
