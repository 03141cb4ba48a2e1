// Raising fileStorage.size, one step at a time (src/controller/storage-growth.ts): bound claims
// ask for the new size first, then the StatefulSet is deleted leaving its pods and created
// again with the new claim template, then the volumes are waited for; max_file_store follows
// the smallest capacity the claims report. Driven on the node in test/node/storage-growth.test.ts.
import {
  decideStorageGrowth,
  growthRefused,
  STORAGE_GROWTH_RECHECK_MS,
  type ObservedClaim,
  type StorageGrowthObservation,
} from '../../src/controller/storage-growth.ts';

function claim(ordinal: number, fields: Partial<ObservedClaim> = {}): ObservedClaim {
  return {
    ref: {
      apiVersion: 'v1',
      kind: 'PersistentVolumeClaim',
      namespace: 'kyma-system',
      name: `eventing-nats-js-pvc-eventing-nats-${String(ordinal)}`,
    },
    ordinal,
    requested: '1Gi',
    capacity: '1Gi',
    bound: true,
    fileSystemResizePending: false,
    deleting: false,
    ...fields,
  };
}

function observe(fields: Partial<StorageGrowthObservation> = {}): StorageGrowthObservation {
  return {
    desired: '4Gi',
    template: '1Gi',
    statefulSetExists: true,
    statefulSetDeleting: false,
    size: 3,
    claims: [claim(0), claim(1), claim(2)],
    wasGrowing: false,
    orphanedPods: 0,
    ...fields,
  };
}

const grown = (ordinal: number, capacity = '4Gi'): ObservedClaim =>
  claim(ordinal, { requested: '4Gi', capacity });

describe('decideStorageGrowth', () => {
  test('at size there is nothing to do and max_file_store follows the spec', () => {
    const step = decideStorageGrowth(
      observe({ template: '4Gi', claims: [grown(0), grown(1), grown(2)] }),
    );
    expect(step).toEqual({ patchClaims: [], size: '4Gi', statefulSet: 'write', storeSize: '4Gi' });
  });

  test('a volume larger than its claim (a local volume) does not raise the store', () => {
    const step = decideStorageGrowth(
      observe({ desired: '1Gi', claims: [claim(0, { capacity: '5Gi' })] }),
    );
    expect(step.storeSize).toBe('1Gi');
    expect(step.progress).toBeUndefined();
  });

  test('1. raises the request of every bound claim first, holding the StatefulSet', () => {
    const step = decideStorageGrowth(observe());
    expect(step.patchClaims.map((c) => c.name)).toEqual([
      'eventing-nats-js-pvc-eventing-nats-0',
      'eventing-nats-js-pvc-eventing-nats-1',
      'eventing-nats-js-pvc-eventing-nats-2',
    ]);
    expect(step.statefulSet).toBe('hold');
    expect(step.storeSize).toBe('1Gi');
    expect(step.requeueAfterMs).toBe(STORAGE_GROWTH_RECHECK_MS);
    expect(step.progress).toEqual({
      message:
        'Growing the volume claims to 4Gi: asking for 4Gi on 3 claims ' +
        '(eventing-nats-js-pvc-eventing-nats-0, eventing-nats-js-pvc-eventing-nats-1, ' +
        'eventing-nats-js-pvc-eventing-nats-2).',
      blocked: false,
    });
  });

  test('leaves claims of ordinals beyond the size, and claims being deleted, alone', () => {
    const step = decideStorageGrowth(
      observe({ claims: [grown(0), grown(1), claim(2, { deleting: true }), claim(3)] }),
    );
    expect(step.patchClaims).toEqual([]);
    expect(step.statefulSet).toBe('recreate');
  });

  test('2. re-creates the StatefulSet once every claim asks for the size', () => {
    const step = decideStorageGrowth(
      observe({ claims: [grown(0, '1Gi'), grown(1, '1Gi'), grown(2, '1Gi')] }),
    );
    expect(step.statefulSet).toBe('recreate');
    expect(step.storeSize).toBe('1Gi');
    expect(step.progress?.message).toBe(
      'Growing the volume claims to 4Gi: re-creating the StatefulSet with the 4Gi claim ' +
        'template; its pods keep running.',
    );
    const deleting = decideStorageGrowth(
      observe({ statefulSetDeleting: true, claims: [grown(0, '1Gi')] }),
    );
    expect(deleting.statefulSet).toBe('hold');
    expect(deleting.progress?.message).toContain('waiting for the old StatefulSet to go');
  });

  test('3. creates it again once the old one is gone', () => {
    const step = decideStorageGrowth(
      observe({
        template: undefined,
        statefulSetExists: false,
        wasGrowing: true,
        claims: [grown(0, '1Gi'), grown(1, '1Gi'), grown(2, '1Gi')],
      }),
    );
    expect(step.statefulSet).toBe('create');
    expect(step.progress?.message).toBe(
      'Growing the volume claims to 4Gi: creating the StatefulSet again with the 4Gi claim template.',
    );
  });

  test('3. creates it again from the claims when a quick retry reads a status from before', () => {
    // The cache may not hold the status that said a growth runs: claims that ask for the new
    // size and are still being resized say it too. Claims at their size say no growth runs.
    const step = decideStorageGrowth(
      observe({
        template: undefined,
        statefulSetExists: false,
        wasGrowing: false,
        claims: [grown(0, '1Gi'), grown(1, '1Gi'), grown(2, '1Gi')],
      }),
    );
    expect(step.statefulSet).toBe('create');
    const notGrowing = decideStorageGrowth(
      observe({ template: undefined, statefulSetExists: false, wasGrowing: false, desired: '1Gi' }),
    );
    expect(notGrowing.statefulSet).not.toBe('create');
  });

  test('3. creates it again, adopting the pods it left, when nothing else says a growth ran', () => {
    // The status lost its mark to a failed write and the volumes have grown: the pods left
    // running without a controller still say the StatefulSet was deleted leaving them.
    const gone = { template: undefined, statefulSetExists: false, wasGrowing: false };
    const step = decideStorageGrowth(
      observe({ ...gone, orphanedPods: 3, claims: [grown(0), grown(1), grown(2)] }),
    );
    expect(step).toEqual({ patchClaims: [], size: '4Gi', statefulSet: 'create', storeSize: '4Gi' });
    // Deleted with its pods (they are still owned while they go): a plain re-creation.
    const deleted = decideStorageGrowth(
      observe({ ...gone, orphanedPods: 0, claims: [grown(0), grown(1), grown(2)] }),
    );
    expect(deleted.statefulSet).toBe('write');
  });

  test('4. waits for the volumes, max_file_store at the smallest capacity so far', () => {
    const step = decideStorageGrowth(
      observe({
        template: '4Gi',
        claims: [
          grown(0),
          grown(1, '2Gi'),
          { ...grown(2, '1Gi'), fileSystemResizePending: true },
          claim(2, { bound: false, capacity: undefined, ordinal: 2 }),
        ].slice(0, 3),
      }),
    );
    expect(step.statefulSet).toBe('write');
    expect(step.storeSize).toBe('1Gi');
    expect(step.progress?.message).toBe(
      'Growing the volume claims to 4Gi: waiting for the storage provider to resize ' +
        'eventing-nats-js-pvc-eventing-nats-1 (2Gi of 4Gi), the node to grow the file system ' +
        'of eventing-nats-js-pvc-eventing-nats-2; max_file_store follows once every claim has grown.',
    );
    const unbound = decideStorageGrowth(
      observe({
        template: '4Gi',
        claims: [grown(0), grown(1), claim(2, { bound: false, capacity: undefined })],
      }),
    );
    expect(unbound.patchClaims).toEqual([]);
    expect(unbound.progress?.message).toContain(
      'waiting for eventing-nats-js-pvc-eventing-nats-2 to be bound',
    );
    expect(unbound.storeSize).toBe('4Gi');
  });

  test('compares values, not spellings', () => {
    const step = decideStorageGrowth(
      observe({
        desired: '4096Mi',
        template: '4Gi',
        claims: [claim(0, { requested: '4Gi', capacity: '4294967296' })],
      }),
    );
    expect(step).toEqual({ patchClaims: [], size: '4Gi', statefulSet: 'write', storeSize: '4Gi' });
  });

  test('a refused claim blocks the growth and says why', () => {
    const refused = growthRefused(decideStorageGrowth(observe()), [
      {
        claim: 'eventing-nats-js-pvc-eventing-nats-0',
        error: 'only dynamically provisioned pvc can be resized',
      },
    ]);
    expect(refused.progress).toEqual({
      message:
        'Growing the volume claims to 4Gi: the API server refused the new size ' +
        '(eventing-nats-js-pvc-eventing-nats-0: only dynamically provisioned pvc can be resized). ' +
        "The claims, the StatefulSet and max_file_store keep their size; the claims' " +
        'StorageClass must allow volume expansion.',
      blocked: true,
    });
    expect(refused.statefulSet).toBe('hold');
  });
});
