// The live part of judging a NATS update that raises spec.jetStream.fileStorage.size: the
// volume claims can grow only where their StorageClass has allowVolumeExpansion: true (the API
// server refuses the claims' new size otherwise), so the update is refused with the class's name
// when it has not. The class is the claims' own (they carry the cluster default they were made
// with), or for a cluster without claims yet the spec's, or the cluster's default.
//
// When the class cannot be read the update is refused too, unlike the scale-down check: a raised
// size can never be lowered again (a claim cannot shrink, and the rules refuse it), so a size the
// claims may never reach must not be accepted on a guess.
import { defaultNatsSpec } from '../src/api/defaults.ts';
import type { DefaultedNatsSpec } from '../src/api/nats.ts';
import { MESSAGES } from '../src/api/nats-schema.ts';
import { formatFieldError } from '../src/api/rules.ts';
import { compareQuantities, parseQuantity } from '../src/api/quantity.ts';
import { effectiveFileStorageSize } from '../src/api/storage.ts';
import type { Asked } from '../src/nats/peers.ts';
import { selectorLabels } from '../src/render/labels.ts';
import { DEFAULT_STORAGE_CLASS } from '../src/render/statefulset.ts';
import { invalidStatus, nameOf } from './nats-verdict.ts';
import { deny, type AdmissionRequest, type AdmissionResponse } from './review.ts';

/** The Go manager's words for any change of fileStorage come first: tools match them. */
const GROWTH_REFUSED = `${MESSAGES.fileStorageImmutable}: its size cannot be raised`;

const FILE_SIZE = 'spec.jetStream.fileStorage.size';

export interface Growth {
  readonly name: string;
  readonly namespace: string;
  /** The effective sizes (the default where none is set), as the spec spells them. */
  readonly from: string;
  readonly to: string;
  /** The spec's storageClassName; "default" means the cluster's default class. */
  readonly storageClassName: string;
  /** The labels of the cluster's pods and claims. */
  readonly selector: Readonly<Record<string, string>>;
}

/** The StorageClass the claims use, as the lookup found it. */
export interface ClaimStorageClass {
  /** Undefined: the claims have no class (none set, and no cluster default). */
  readonly name: string | undefined;
  /** Where the name came from. */
  readonly from: 'the volume claims' | 'the spec' | 'the cluster default';
  /** Its allowVolumeExpansion; undefined when the class does not exist. */
  readonly allowVolumeExpansion: boolean | undefined;
}

/** The StorageClass(es) of the NATS resource's claims, asked within `budgetMs`. */
export type StorageClassLookup = (
  growth: Growth,
  budgetMs: number,
) => Promise<Asked<readonly ClaimStorageClass[]>>;

interface SizedSpec {
  readonly size: string;
  readonly storageClassName: string;
  readonly spec: DefaultedNatsSpec;
}

function fileStorageOf(object: unknown, provider: string | undefined): SizedSpec | undefined {
  if (typeof object !== 'object' || object === null) return undefined;
  try {
    const spec = defaultNatsSpec((object as { spec?: unknown }).spec);
    const { fileStorage } = spec.jetStream;
    const size = effectiveFileStorageSize(fileStorage.size, provider);
    parseQuantity(size);
    return { size: String(size), storageClassName: fileStorage.storageClassName, spec };
  } catch {
    return undefined;
  }
}

/**
 * The growth of an UPDATE that raises the effective file-storage size; undefined for anything
 * else (a size the rules refuse is reported by them).
 */
export function growthOf(request: AdmissionRequest, provider?: string): Growth | undefined {
  if (request.operation !== 'UPDATE') return undefined;
  const before = fileStorageOf(request.oldObject, provider);
  const after = fileStorageOf(request.object, provider);
  if (before === undefined || after === undefined) return undefined;
  if (compareQuantities(parseQuantity(after.size), parseQuantity(before.size)) <= 0) {
    return undefined;
  }
  const name = nameOf(request);
  return {
    name,
    namespace: request.namespace,
    from: before.size,
    to: after.size,
    storageClassName: after.storageClassName,
    selector: selectorLabels({ name, namespace: request.namespace, uid: '', spec: after.spec }),
  };
}

/** Whether the spec leaves the class to the cluster's default. */
export function usesDefaultClass(growth: Growth): boolean {
  return growth.storageClassName === DEFAULT_STORAGE_CLASS;
}

function refusalDetail(growth: Growth, classes: readonly ClaimStorageClass[]): string | undefined {
  const head = `${GROWTH_REFUSED} from ${growth.from} to ${growth.to}`;
  for (const sc of classes) {
    if (sc.name === undefined) {
      return sc.from === 'the volume claims'
        ? `${head}: the volume claims have no StorageClass, and a claim without one cannot be expanded`
        : `${head}: the spec leaves the StorageClass to the cluster's default, and the cluster has ` +
            'none, so the volume claims could not be expanded';
    }
    if (sc.allowVolumeExpansion === undefined) {
      return `${head}: StorageClass ${JSON.stringify(sc.name)} (of ${sc.from}) does not exist`;
    }
    if (!sc.allowVolumeExpansion) {
      return (
        `${head}: StorageClass ${JSON.stringify(sc.name)} (of ${sc.from}) does not allow ` +
        'volume expansion (allowVolumeExpansion is not true), so the volume claims cannot grow'
      );
    }
  }
  return undefined;
}

/** The answer with the StorageClass check applied to an update the other rules allowed. Pure. */
export function withGrowthCheck(
  response: AdmissionResponse,
  growth: Growth,
  asked: Asked<readonly ClaimStorageClass[]>,
): AdmissionResponse {
  if (!response.allowed) return response;
  const detail = asked.ok
    ? refusalDetail(growth, asked.value)
    : `${GROWTH_REFUSED} from ${growth.from} to ${growth.to}: the StorageClass of the ` +
      `volume claims could not be read (${asked.error}); a raised size cannot be lowered ` +
      'again, so it is accepted only once the class is known to allow volume expansion: try again';
  if (detail === undefined) return response;
  const parts = { type: 'FieldValueForbidden' as const, path: FILE_SIZE, detail };
  return deny(
    response.uid,
    invalidStatus(growth.name, [{ ...parts, message: formatFieldError(parts) }]),
    response.warnings ?? [],
  );
}
