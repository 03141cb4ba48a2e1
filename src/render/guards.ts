// The memory and disk guards of a nats-server: the Go heap limit from the container's memory
// limit, and the JetStream file-store limit below the claim's nominal size.
//
// Memory: max_memory_store caps memory streams, not the process; without GOMEMLIMIT the Go
// garbage collector does not know the cgroup limit and the pod is OOM-killed before it tries
// harder (nats-server#5739). The NATS chart advises about 80% of the limit, which leaves the
// rest for what the Go runtime does not count (kernel socket buffers, page cache charged to the
// cgroup).
//
// Disk: a formatted volume is smaller than its claim (nats-io/k8s#717). Measured with mkfs.ext4
// defaults (e2fsprogs 1.47): of a 1Gi volume a non-root user can fill 90.1%, of a 20Gi one
// 92.6% (journal, inode tables and the 5% reserved for root); the store directory also holds
// the raft logs, which max_file_store does not count. When the disk fills first, JetStream
// disables itself. The headroom is 10% of the claim, but at least 256Mi (journal, raft logs),
// and never more than 25% of it, so that a store keeps the 70% stream caps that Kyma's
// eventing sets (kyma#16423).

/** GOMEMLIMIT is this many percent of the memory limit. */
export const GOMEMLIMIT_PERCENT = 80n;
/** Headroom below the claim: this many percent of it ... */
export const FILE_STORE_HEADROOM_PERCENT = 10n;
/** ... but at least this many bytes (256Mi) ... */
export const FILE_STORE_HEADROOM_MIN_BYTES = 256n * 1024n * 1024n;
/** ... and at most this many percent of the claim. */
export const FILE_STORE_HEADROOM_MAX_PERCENT = 25n;

function percentOf(bytes: bigint, percent: bigint): bigint {
  return (bytes * percent) / 100n;
}

/**
 * GOMEMLIMIT in bytes for a memory limit of `limitBytes` (undefined: no limit, or one too small
 * to give a positive figure, and then no GOMEMLIMIT: the Go default "off" is better than a
 * wrong figure).
 */
export function goMemLimitBytes(limitBytes: bigint | undefined): bigint | undefined {
  if (limitBytes === undefined) return undefined;
  const bytes = percentOf(limitBytes, GOMEMLIMIT_PERCENT);
  return bytes > 0n ? bytes : undefined;
}

/** The headroom left free on a claim of `claimBytes`. */
export function fileStoreHeadroomBytes(claimBytes: bigint): bigint {
  // Rounded up, so that the store is rounded down.
  const tenth = claimBytes - percentOf(claimBytes, 100n - FILE_STORE_HEADROOM_PERCENT);
  const atMost = percentOf(claimBytes, FILE_STORE_HEADROOM_MAX_PERCENT);
  const atLeast = FILE_STORE_HEADROOM_MIN_BYTES < atMost ? FILE_STORE_HEADROOM_MIN_BYTES : atMost;
  return tenth > atLeast ? tenth : atLeast;
}

/** max_file_store for a claim of `claimBytes`: the claim less its headroom. */
export function maxFileStoreBytes(claimBytes: bigint): bigint {
  return claimBytes - fileStoreHeadroomBytes(claimBytes);
}
