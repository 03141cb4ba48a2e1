// The validating webhook's live check of a scale-down: streams with more replicas than the new
// size refuse it by name; NATS that cannot be asked lets it through with a warning; nothing but
// a lower size asks at all. test/integration/nats-peer-removal.test.ts asks real servers.
import request from 'supertest';
import type { AdmissionRequest, AdmissionResponse } from '../../webhooks/review.ts';
import type { StreamLookup } from '../../webhooks/scale-down-check.ts';
import { createAdmissionApp } from '../../webhooks/server.ts';
import { TEST_ADMISSION_CONFIG as config, natsObject, natsRequest } from '../support/admission.ts';

const shrink = natsRequest({
  operation: 'UPDATE',
  object: natsObject({ cluster: { size: 3 } }),
  oldObject: natsObject({ cluster: { size: 5 } }),
});

async function post(streams: StreamLookup, req: AdmissionRequest): Promise<AdmissionResponse> {
  const res = await request(createAdmissionApp(config, { streams }))
    .post('/validate-nats')
    .send({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', request: req })
    .expect(200);
  return (res.body as { response: AdmissionResponse }).response;
}

describe('POST /validate-nats: the live scale-down check', () => {
  test('refuses 5 -> 3 while streams have more than 3 replicas, naming them', async () => {
    const asked: unknown[] = [];
    const response = await post((nats, budgetMs) => {
      asked.push({ nats, budgetMs });
      return Promise.resolve({
        ok: true,
        value: [
          { account: '$G', name: 'orders', replicas: 5, hosts: [] },
          { account: '$G', name: 'small', replicas: 3, hosts: [] },
          { account: 'A', name: 'audit', replicas: 4, hosts: [] },
        ],
      });
    }, shrink);
    expect(asked).toEqual([
      {
        nats: { name: 'eventing-nats', namespace: 'kyma-system', from: 5, to: 3 },
        budgetMs: 2_000,
      },
    ]);
    expect(response.allowed).toBe(false);
    expect(response.status?.code).toBe(422);
    expect(response.status?.message).toContain(
      'spec.cluster.size: Forbidden: cannot scale down from 5 to 3 servers: streams with more replicas than that: orders (R5), audit (R4); lower their replicas first',
    );
    expect(response.status?.message).not.toContain('small');
  });

  test('allows it when every stream fits', async () => {
    const response = await post(
      () =>
        Promise.resolve({
          ok: true as const,
          value: [{ account: '$G', name: 'o', replicas: 3, hosts: [] }],
        }),
      shrink,
    );
    expect(response).toEqual({ uid: shrink.uid, allowed: true });
  });

  test('allows it with a warning when NATS cannot be asked (an error or a throw)', async () => {
    for (const lookup of [
      () => Promise.resolve({ ok: false as const, error: 'no NATS handshake within 2000 ms' }),
      async () => {
        await Promise.resolve();
        throw new Error('Secret lookup aborted');
      },
    ]) {
      const response = await post(lookup, shrink);
      expect(response.allowed).toBe(true);
      expect(response.warnings).toEqual([
        expect.stringMatching(
          /^NATS could not be asked whether a stream has more than 3 replicas \((no NATS handshake within 2000 ms|Secret lookup aborted)\); the scale-down waits while any stream does$/,
        ),
      ]);
    }
  });

  test('asks nothing for a create, a growth or an unchanged size; an invalid update stays refused', async () => {
    let asked = 0;
    const lookup: StreamLookup = () => {
      asked++;
      return Promise.resolve({
        ok: true,
        value: [{ account: '$G', name: 'x', replicas: 5, hosts: [] }],
      });
    };
    await post(lookup, natsRequest({ object: natsObject({ cluster: { size: 3 } }) }));
    await post(
      lookup,
      natsRequest({
        operation: 'UPDATE',
        object: natsObject({ cluster: { size: 5 } }),
        oldObject: natsObject({ cluster: { size: 3 } }),
      }),
    );
    expect(asked).toBe(0);
    const even = await post(
      lookup,
      natsRequest({
        operation: 'UPDATE',
        object: natsObject({ cluster: { size: 2 } }),
        oldObject: natsObject({ cluster: { size: 5 } }),
      }),
    );
    expect(even.allowed).toBe(false);
    expect(even.status?.message).toContain('size only accepts odd numbers');
  });
});
