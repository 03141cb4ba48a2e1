import request from 'supertest';
import type { AdmissionRequest, AdmissionResponse } from '../../webhooks/review.ts';
import { createAdmissionApp } from '../../webhooks/server.ts';
import { validateNatsRequest } from '../../webhooks/validate-nats.ts';
import {
  NATS_REQUEST_UID,
  TEST_ADMISSION_CONFIG as config,
  natsObject,
  natsRequest,
} from '../support/admission.ts';

const app = createAdmissionApp(config);
const UID = NATS_REQUEST_UID;

async function post(req: AdmissionRequest): Promise<AdmissionResponse> {
  const res = await request(app)
    .post('/validate-nats')
    .send({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', request: req })
    .expect(200);
  const body = res.body as { apiVersion: string; kind: string; response: AdmissionResponse };
  expect(body).toMatchObject({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview' });
  expect(body.response.uid).toBe(req.uid);
  return body.response;
}

describe('POST /validate-nats', () => {
  it('allows a valid NATS resource', async () => {
    expect(await post(natsRequest())).toEqual({ uid: UID, allowed: true });
  });

  it('allows a risky one with warnings', async () => {
    const response = await post(natsRequest({ object: natsObject({ cluster: { size: 1 } }) }));
    expect(response.allowed).toBe(true);
    expect(response.warnings).toEqual([expect.stringMatching(/^spec.cluster.size is 1: /)]);
  });

  it('refuses an invalid one with a 422 Invalid status listing every field error', async () => {
    const response = await post(
      natsRequest({
        object: natsObject({ cluster: { size: 2 }, jetStream: { memStorage: { size: 0 } } }),
      }),
    );
    expect(response).toEqual({
      uid: UID,
      allowed: false,
      status: {
        apiVersion: 'v1',
        kind: 'Status',
        status: 'Failure',
        code: 422,
        reason: 'Invalid',
        message:
          'NATS.operator.kyma-project.io "eventing-nats" is invalid: [' +
          'spec.cluster.size: Invalid value: 2: size only accepts odd numbers, ' +
          'spec.jetStream.memStorage.size: Invalid value: 0: memStorage can only be enabled if ' +
          'size is not 0]',
        details: {
          name: 'eventing-nats',
          group: 'operator.kyma-project.io',
          kind: 'NATS',
          causes: [
            {
              reason: 'FieldValueInvalid',
              field: 'spec.cluster.size',
              message: 'Invalid value: 2: size only accepts odd numbers',
            },
            {
              reason: 'FieldValueInvalid',
              field: 'spec.jetStream.memStorage.size',
              message: 'Invalid value: 0: memStorage can only be enabled if size is not 0',
            },
          ],
        },
      },
    });
  });

  it('prints a single error without brackets, as the apiserver does', async () => {
    const response = await post(natsRequest({ object: natsObject({ cluster: { size: 4 } }) }));
    expect(response.status?.message).toBe(
      'NATS.operator.kyma-project.io "eventing-nats" is invalid: ' +
        'spec.cluster.size: Invalid value: 4: size only accepts odd numbers',
    );
  });

  it('refuses a second NATS resource', async () => {
    const response = await post(natsRequest({ name: 'second', object: natsObject({}, 'second') }));
    expect(response.status).toMatchObject({
      code: 422,
      details: {
        name: 'second',
        causes: [{ reason: 'FieldValueForbidden', field: 'metadata.name' }],
      },
    });
  });

  it('refuses scaling a cluster down to one server', async () => {
    const response = await post(
      natsRequest({
        operation: 'UPDATE',
        object: natsObject({ cluster: { size: 1 } }),
        oldObject: natsObject({ cluster: { size: 3 } }),
      }),
    );
    expect(response.status?.details?.causes).toEqual([
      expect.objectContaining({ field: 'spec.cluster.size' }),
    ]);
  });

  it('allows deletion', async () => {
    const response = await post(
      natsRequest({
        operation: 'DELETE',
        object: null,
        oldObject: natsObject({ cluster: { size: 2 } }),
      }),
    );
    expect(response).toEqual({ uid: UID, allowed: true });
  });

  it('answers a dry run exactly as the real request', async () => {
    const object = natsObject({ cluster: { size: 2 } });
    expect(await post(natsRequest({ object, dryRun: true }))).toEqual(
      await post(natsRequest({ object })),
    );
  });
});

describe('validateNatsRequest', () => {
  it('refuses a review it cannot judge with 400 BadRequest', () => {
    expect(validateNatsRequest(natsRequest({ object: null }), config).status).toMatchObject({
      code: 400,
      reason: 'BadRequest',
      message: 'request.object must be a NATS object for CREATE',
    });
    const configMap = natsRequest({ kind: { group: '', version: 'v1', kind: 'ConfigMap' } });
    expect(validateNatsRequest(configMap, config).status?.message).toBe(
      'this webhook reviews operator.kyma-project.io/v1alpha1 NATS, not v1 ConfigMap',
    );
  });

  it('takes the name from the object when the request has none', () => {
    const response = validateNatsRequest(
      natsRequest({ name: '', object: natsObject({ cluster: { size: 2 } }) }),
      config,
    );
    expect(response.status?.details?.name).toBe('eventing-nats');
  });
});
