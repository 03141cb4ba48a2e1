// The JetStream store sizes a NATS resource gets, as the Go manager resolves them: a size that
// is absent, or a zero quantity (its clients send unset sizes as "0"), means the default. The
// file-storage default depends on the cloud provider, read once from kube-system/shoot-info.
import { QuantityError, compareQuantities, isZero, parseQuantity } from './quantity.ts';

/** Where the provider is read from: ConfigMap kube-system/shoot-info, key `provider`. */
export const SHOOT_INFO = {
  namespace: 'kube-system',
  name: 'shoot-info',
  key: 'provider',
} as const;

/** File-storage size when the spec has none (or zero); not a schema default, never persisted. */
export const FILE_STORAGE_SIZE_DEFAULT = '1Gi';
/** Memory-storage size when the spec's is zero: the schema default. */
export const MEM_STORAGE_SIZE_DEFAULT = '1Gi';

/** Providers whose volumes have a minimum size, which is then also the default. */
const PROVIDER_MINIMUM_FILE_STORAGE: Readonly<Record<string, string>> = { alicloud: '20Gi' };

/** The file-storage default on `provider` (undefined: unknown or not read). */
export function fileStorageSizeDefault(provider?: string): string {
  return (
    (provider === undefined ? undefined : PROVIDER_MINIMUM_FILE_STORAGE[provider]) ??
    FILE_STORAGE_SIZE_DEFAULT
  );
}

/** The smallest file-storage size `provider` can provision, if it has one. */
export function fileStorageSizeMinimum(provider?: string): string | undefined {
  return provider === undefined ? undefined : PROVIDER_MINIMUM_FILE_STORAGE[provider];
}

/** Whether a size is unset as the Go manager sees it: absent, null or a zero quantity. */
export function isUnsetSize(size: unknown): boolean {
  if (size === undefined || size === null) return true;
  if (typeof size !== 'string' && typeof size !== 'number') return false;
  try {
    return isZero(parseQuantity(size));
  } catch (err) {
    if (err instanceof QuantityError) return false;
    throw err;
  }
}

/** The file-storage size the claims get: the spec's, or the provider's default when unset. */
export function effectiveFileStorageSize(
  size: string | number | undefined,
  provider?: string,
): string | number {
  return size === undefined || isUnsetSize(size) ? fileStorageSizeDefault(provider) : size;
}

/** The memory-storage size: the spec's, or the default when it is a zero quantity. */
export function effectiveMemStorageSize(size: string | number): string | number {
  return isUnsetSize(size) ? MEM_STORAGE_SIZE_DEFAULT : size;
}

/** Whether `size` is below the provider's minimum (false when there is none or it is unset). */
export function belowProviderMinimum(size: unknown, provider?: string): boolean {
  const minimum = fileStorageSizeMinimum(provider);
  if (minimum === undefined || isUnsetSize(size)) return false;
  if (typeof size !== 'string' && typeof size !== 'number') return false;
  try {
    return compareQuantities(parseQuantity(size), parseQuantity(minimum)) < 0;
  } catch (err) {
    if (err instanceof QuantityError) return false;
    throw err;
  }
}
