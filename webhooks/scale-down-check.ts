// The live part of judging a NATS update that lowers spec.cluster.size: streams with more
// replicas than the new size could not keep them, so the update is refused with their names.
// NATS is asked by the manager (src/nats/peers.ts) within a short budget, well inside the
// webhook's timeout; when it cannot be asked, the update is allowed with a warning that says so
// (the scale-down itself then waits until no such stream exists).
import { defaultNatsSpec } from '../src/api/defaults.ts';
import { formatFieldError } from '../src/api/rules.ts';
import type { Asked, StreamReplicas } from '../src/nats/peers.ts';
import { invalidStatus, nameOf } from './nats-verdict.ts';
import { deny, type AdmissionRequest, type AdmissionResponse } from './review.ts';

/** What the live check may take of the webhook's 5 s. */
export const LIVE_CHECK_BUDGET_MS = 2_000;

/** The streams of the NATS resource's cluster, asked within `budgetMs`. */
export type StreamLookup = (
  nats: { readonly name: string; readonly namespace: string },
  budgetMs: number,
) => Promise<Asked<readonly StreamReplicas[]>>;

export interface Shrink {
  readonly name: string;
  readonly namespace: string;
  readonly from: number;
  readonly to: number;
}

function sizeOf(object: unknown): number | undefined {
  if (typeof object !== 'object' || object === null) return undefined;
  try {
    return defaultNatsSpec((object as { spec?: unknown }).spec).cluster.size;
  } catch {
    return undefined;
  }
}

/** The size change of an UPDATE that lowers spec.cluster.size; undefined for anything else. */
export function shrinkOf(request: AdmissionRequest): Shrink | undefined {
  if (request.operation !== 'UPDATE') return undefined;
  const from = sizeOf(request.oldObject);
  const to = sizeOf(request.object);
  if (from === undefined || to === undefined || to >= from) return undefined;
  return { name: nameOf(request), namespace: request.namespace, from, to };
}

/** The answer with the live check applied to an update the other rules allowed. Pure. */
export function withLiveCheck(
  response: AdmissionResponse,
  shrink: Shrink,
  asked: Asked<readonly StreamReplicas[]>,
): AdmissionResponse {
  if (!response.allowed) return response;
  const warnings = response.warnings ?? [];
  if (!asked.ok) {
    return {
      ...response,
      warnings: [
        ...warnings,
        `NATS could not be asked whether a stream has more than ${String(shrink.to)} replicas ` +
          `(${asked.error}); the scale-down waits while any stream does`,
      ],
    };
  }
  const tooMany = asked.value.filter((s) => s.replicas > shrink.to);
  if (tooMany.length === 0) return response;
  const names = tooMany.map((s) => `${s.name} (R${String(s.replicas)})`).join(', ');
  const parts = {
    type: 'FieldValueForbidden' as const,
    path: 'spec.cluster.size',
    detail:
      `cannot scale down from ${String(shrink.from)} to ${String(shrink.to)} servers: streams ` +
      `with more replicas than that: ${names}; lower their replicas first`,
  };
  return deny(
    response.uid,
    invalidStatus(shrink.name, [{ ...parts, message: formatFieldError(parts) }]),
    warnings,
  );
}
