// The validating webhook's live check of a raised file-storage size: allowed only where the
// claims' StorageClass allows volume expansion, refused naming the class otherwise, refused
// when the class cannot be read (a raised size cannot be lowered again); nothing but a raised
// effective size asks at all. test/e2e/admission.test.ts reads real StorageClasses.
import request from 'supertest';
import type { AdmissionRequest, AdmissionResponse } from '../../webhooks/review.ts';
import type { ClaimStorageClass, StorageClassLookup } from '../../webhooks/storage-growth-check.ts';
import { createAdmissionApp } from '../../webhooks/server.ts';
import { TEST_ADMISSION_CONFIG as config, natsObject, natsRequest } from '../support/admission.ts';

const sized = (size?: string, storageClassName?: string) =>
  natsObject({
    jetStream: {
      fileStorage: {
        ...(size === undefined ? {} : { size }),
        ...(storageClassName === undefined ? {} : { storageClassName }),
      },
    },
  });

const grow = natsRequest({
  operation: 'UPDATE',
  object: sized('5Gi'),
  oldObject: sized('2Gi'),
});

async function post(
  storageClasses: StorageClassLookup,
  req: AdmissionRequest,
): Promise<AdmissionResponse> {
  const res = await request(createAdmissionApp(config, { storageClasses }))
    .post('/validate-nats')
    .send({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', request: req })
    .expect(200);
  return (res.body as { response: AdmissionResponse }).response;
}

const classes =
  (...value: ClaimStorageClass[]): StorageClassLookup =>
  () =>
    Promise.resolve({ ok: true, value });

describe('POST /validate-nats: the StorageClass check of a raised file-storage size', () => {
  test('allows 2Gi -> 5Gi where the claims’ class allows volume expansion', async () => {
    const asked: unknown[] = [];
    const response = await post((growth, budgetMs) => {
      asked.push({ growth, budgetMs });
      return Promise.resolve({
        ok: true,
        value: [{ name: 'standard', from: 'the volume claims', allowVolumeExpansion: true }],
      });
    }, grow);
    expect(response.allowed).toBe(true);
    expect(asked).toEqual([
      {
        growth: {
          name: 'eventing-nats',
          namespace: 'kyma-system',
          from: '2Gi',
          to: '5Gi',
          storageClassName: 'default',
          selector: {
            'app.kubernetes.io/instance': 'eventing',
            'app.kubernetes.io/name': 'nats',
            'kyma-project.io/dashboard': 'eventing',
          },
        },
        budgetMs: 2_000,
      },
    ]);
  });

  test('refuses it where the class does not allow expansion, naming the class', async () => {
    const response = await post(
      classes({ name: 'standard', from: 'the volume claims', allowVolumeExpansion: false }),
      grow,
    );
    expect(response.allowed).toBe(false);
    expect(response.status?.code).toBe(422);
    expect(response.status?.message).toBe(
      'NATS.operator.kyma-project.io "eventing-nats" is invalid: spec.jetStream.fileStorage.size: ' +
        'Forbidden: fileStorage is immutable once it was set: its size cannot be raised from 2Gi to 5Gi: StorageClass "standard" (of the volume ' +
        'claims) does not allow volume expansion (allowVolumeExpansion is not true), so the ' +
        'volume claims cannot grow',
    );
  });

  test('refuses it for a class that does not exist, and for claims without a class', async () => {
    const missing = await post(
      classes({ name: 'fast', from: 'the spec', allowVolumeExpansion: undefined }),
      grow,
    );
    expect(missing.status?.message).toContain(
      'fileStorage is immutable once it was set: its size cannot be raised from 2Gi to 5Gi: StorageClass "fast" (of the spec) does not exist',
    );
    const none = await post(
      classes({ name: undefined, from: 'the cluster default', allowVolumeExpansion: undefined }),
      grow,
    );
    expect(none.status?.message).toContain(
      "the spec leaves the StorageClass to the cluster's default, and the cluster has none",
    );
  });

  test('refuses it for claims made without a class', async () => {
    const response = await post(
      classes({ name: undefined, from: 'the volume claims', allowVolumeExpansion: undefined }),
      grow,
    );
    expect(response.status?.message).toContain(
      'fileStorage is immutable once it was set: its size cannot be raised from 2Gi to 5Gi: the volume claims have no StorageClass',
    );
  });

  test('refuses it when one of several claim classes does not allow expansion', async () => {
    const response = await post(
      classes(
        { name: 'a', from: 'the volume claims', allowVolumeExpansion: true },
        { name: 'b', from: 'the volume claims', allowVolumeExpansion: false },
      ),
      grow,
    );
    expect(response.status?.message).toContain('StorageClass "b" (of the volume claims)');
  });

  test('refuses it when the class cannot be read, saying why', async () => {
    const failed = await post(
      () => Promise.resolve({ ok: false, error: 'storageclasses is forbidden' }),
      grow,
    );
    expect(failed.allowed).toBe(false);
    expect(failed.status?.message).toContain(
      'the StorageClass of the volume claims could not be read (storageclasses is forbidden); ' +
        'a raised size cannot be lowered again',
    );
    const thrown = await post(() => Promise.reject(new Error('deadline exceeded')), grow);
    expect(thrown.allowed).toBe(false);
    expect(thrown.status?.message).toContain('could not be read (deadline exceeded)');
  });

  test('judges the effective size: an unset size is the default 1Gi', async () => {
    const asked: string[] = [];
    const lookup: StorageClassLookup = (growth) => {
      asked.push(`${growth.from} -> ${growth.to}`);
      return Promise.resolve({ ok: true, value: [] });
    };
    const fromUnset = natsRequest({
      operation: 'UPDATE',
      object: sized('3Gi'),
      oldObject: sized(),
    });
    expect((await post(lookup, fromUnset)).allowed).toBe(true);
    // The same effective size, spelled another way, and a lower one: nothing to ask.
    const same = natsRequest({ operation: 'UPDATE', object: sized('1Gi'), oldObject: sized('0') });
    expect((await post(lookup, same)).allowed).toBe(true);
    expect(asked).toEqual(['1Gi -> 3Gi']);
  });

  test('asks nothing for a create, an unchanged size, or a shrink (the rules refuse that)', async () => {
    let asked = 0;
    const lookup: StorageClassLookup = () => {
      asked++;
      return Promise.resolve({ ok: true, value: [] });
    };
    const create = await post(lookup, natsRequest({ object: sized('5Gi') }));
    expect(create.allowed).toBe(true);
    const unchanged = await post(
      lookup,
      natsRequest({ operation: 'UPDATE', object: sized('2Gi'), oldObject: sized('2048Mi') }),
    );
    expect(unchanged.allowed).toBe(true);
    const shrink = await post(
      lookup,
      natsRequest({ operation: 'UPDATE', object: sized('1Gi'), oldObject: sized('2Gi') }),
    );
    expect(shrink.allowed).toBe(false);
    expect(shrink.status?.message).toContain(
      'spec.jetStream.fileStorage.size: Invalid value: "1Gi": fileStorage is immutable once it was set: its size can grow, but not be lowered, as a volume claim cannot shrink (it is 2Gi)',
    );
    expect(asked).toBe(0);
  });
});
