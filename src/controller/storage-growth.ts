// Raising spec.jetStream.fileStorage.size, decided one step at a time as a pure function. A
// StatefulSet's volumeClaimTemplates cannot change, so the claims are grown by hand and the
// StatefulSet re-created around its running pods (nats-io/k8s#440):
//   1. each existing, bound claim asks for the new size (the storage provider then resizes the
//      volume; the API server refuses this unless the StorageClass allows volume expansion);
//   2. the StatefulSet is deleted with propagationPolicy Orphan, which keeps its pods running;
//   3. once it is gone it is created again with the new claim template, and adopts the pods (the
//      pod template is unchanged, so their revision is still current and nothing restarts);
//   4. max_file_store follows the size the volumes have: it is derived from the smallest
//      capacity a claim reports until every claim holds the new size, so JetStream is never
//      promised more room than the disk has (nats-server reloads a larger limit without a
//      restart).
// Each reconcile observes the claims and takes the next step; the status says which.
import { canonicalResourceQuantity, compareQuantities, parseQuantity } from '../api/quantity.ts';
import type { ObjectRef } from '../base/object.ts';

/** How soon a growth in progress is looked at again: nothing watches the claims. */
export const STORAGE_GROWTH_RECHECK_MS = 2_000;
/** The start of every progress message; a status that carries it means a growth is not done. */
export const STORAGE_GROWTH_PREFIX = 'Growing the volume claims';

/** One volume claim of the StatefulSet's template, as observed. */
export interface ObservedClaim {
  readonly ref: ObjectRef;
  readonly ordinal: number;
  /** spec.resources.requests.storage. */
  readonly requested?: string;
  /** status.capacity.storage: what the volume holds. */
  readonly capacity?: string;
  /** status.phase is Bound: only a bound claim can be expanded. */
  readonly bound: boolean;
  /** The FileSystemResizePending condition: the node still has to grow the file system. */
  readonly fileSystemResizePending: boolean;
  readonly deleting: boolean;
}

export interface StorageGrowthObservation {
  /** The claim size the spec asks for (the default where it sets none). */
  readonly desired: string;
  /** The live StatefulSet's claim template size; undefined without a StatefulSet. */
  readonly template: string | undefined;
  readonly statefulSetExists: boolean;
  /** The live StatefulSet's deletion was asked for (its orphaning is under way). */
  readonly statefulSetDeleting: boolean;
  /** spec.cluster.size: claims of higher ordinals belong to no server that runs. */
  readonly size: number;
  readonly claims: readonly ObservedClaim[];
  /** The last status said a growth was under way. */
  readonly wasGrowing: boolean;
  /** NATS pods running with no controller: a StatefulSet was deleted leaving them. */
  readonly orphanedPods: number;
}

/**
 * What happens to the StatefulSet: written as usual; held (no write: claims still to grow, or
 * its deletion under way); deleted leaving its pods; or created again after that deletion.
 */
export type StatefulSetStep = 'write' | 'hold' | 'recreate' | 'create';

export interface StorageGrowthStep {
  /** Claims whose request is raised to `size` now. */
  readonly patchClaims: readonly ObjectRef[];
  /** The size the claims grow to (canonical). */
  readonly size: string;
  readonly statefulSet: StatefulSetStep;
  /** The size max_file_store is derived from: `size` once every claim holds it. */
  readonly storeSize: string;
  /** For the status; undefined when no growth is under way. */
  readonly progress?: { readonly message: string; readonly blocked: boolean };
  readonly requeueAfterMs?: number;
}

function less(a: string, b: string): boolean {
  return compareQuantities(parseQuantity(a), parseQuantity(b)) < 0;
}

function names(claims: readonly ObservedClaim[]): string {
  return claims.map((c) => c.ref.name).join(', ');
}

function plural(count: number, word: string): string {
  return `${String(count)} ${word}${count === 1 ? '' : 's'}`;
}

/** The next step towards claims of `desired`. Pure; called every reconcile. */
export function decideStorageGrowth(observed: StorageGrowthObservation): StorageGrowthStep {
  const size = canonicalResourceQuantity(observed.desired);
  const claims = observed.claims.filter((c) => !c.deleting && c.ordinal < observed.size);
  let storeSize = size;
  for (const claim of claims) {
    if (claim.bound && claim.capacity !== undefined && less(claim.capacity, storeSize)) {
      storeSize = canonicalResourceQuantity(claim.capacity);
    }
  }
  const small = (value: string | undefined): boolean => value !== undefined && less(value, size);
  const toPatch = claims.filter((c) => c.bound && small(c.requested));
  const unbound = claims.filter((c) => !c.bound && small(c.requested));
  const resizing = claims.filter((c) => c.bound && (c.capacity === undefined || small(c.capacity)));
  const templateSmall = small(observed.template);
  // Gone during a growth: the last status says so, or (that status not yet in the cache of a
  // quick retry) bound claims ask for the new size and are still being resized to it.
  const growingClaim = (c: ObservedClaim): boolean =>
    c.bound && !small(c.requested) && (c.fileSystemResizePending || small(c.capacity ?? '0'));
  const recreating =
    !observed.statefulSetExists && (observed.wasGrowing || claims.some(growingClaim));
  const head = `${STORAGE_GROWTH_PREFIX} to ${size}`;
  const step = (
    statefulSet: StatefulSetStep,
    message: string,
    patchClaims: readonly ObjectRef[] = [],
  ): StorageGrowthStep => ({
    patchClaims,
    size,
    statefulSet,
    storeSize,
    progress: { message: `${head}: ${message}.`, blocked: false },
    requeueAfterMs: STORAGE_GROWTH_RECHECK_MS,
  });
  if (toPatch.length > 0) {
    return step(
      'hold',
      `asking for ${size} on ${plural(toPatch.length, 'claim')} (${names(toPatch)})`,
      toPatch.map((c) => c.ref),
    );
  }
  if (templateSmall) {
    return observed.statefulSetDeleting
      ? step('hold', 'waiting for the old StatefulSet to go; its pods keep running')
      : step(
          'recreate',
          `re-creating the StatefulSet with the ${size} claim template; its pods keep running`,
        );
  }
  if (recreating) {
    return step('create', `creating the StatefulSet again with the ${size} claim template`);
  }
  // Pods left running by a deleted StatefulSet, with no growth in sight (its status lost to a
  // failed write, or a user's orphaning delete): the StatefulSet created again adopts them,
  // and is announced as such, with no growth to report.
  if (!observed.statefulSetExists && observed.orphanedPods > 0) {
    return { patchClaims: [], size, statefulSet: 'create', storeSize };
  }
  const waiting = [
    ...unbound.map((c) => `${c.ref.name} to be bound`),
    ...resizing.map((c) =>
      c.fileSystemResizePending
        ? `the node to grow the file system of ${c.ref.name}`
        : `the storage provider to resize ${c.ref.name} (${c.capacity ?? 'no capacity'} of ${size})`,
    ),
  ];
  if (waiting.length > 0) {
    return step(
      'write',
      `waiting for ${waiting.join(', ')}; max_file_store follows once every claim has grown`,
    );
  }
  return { patchClaims: [], size, statefulSet: 'write', storeSize };
}

/** The step once the API server refused to raise some claims: blocked, and why. */
export function growthRefused(
  step: StorageGrowthStep,
  refused: readonly { readonly claim: string; readonly error: string }[],
): StorageGrowthStep {
  const why = refused.map((r) => `${r.claim}: ${r.error}`).join('; ');
  return {
    ...step,
    progress: {
      message:
        `${STORAGE_GROWTH_PREFIX} to ${step.size}: the API server refused the new size ` +
        `(${why}). The claims, the StatefulSet and max_file_store keep their size; the ` +
        "claims' StorageClass must allow volume expansion.",
      blocked: true,
    },
  };
}
