import fc from 'fast-check';
import { mutateNats } from '../../webhooks/mutate-nats.ts';
import { protectChildren } from '../../webhooks/protect-children.ts';
import {
  allowWithPatch,
  answerReview,
  decodeAdmissionReview,
  type AdmissionRequest,
  type AdmissionResponse,
  type ReviewAnswer,
} from '../../webhooks/review.ts';
import { validateNatsRequest } from '../../webhooks/validate-nats.ts';

const config = {
  natsName: 'eventing-nats',
  natsNamespace: 'kyma-system',
  managerUsername: 'system:serviceaccount:kyma-system:nats-manager',
  breakGlassUsers: ['ops'],
  breakGlassGroups: [],
};

const validRequest = {
  uid: 'a1b2c3',
  kind: { group: 'operator.kyma-project.io', version: 'v1alpha1', kind: 'NATS' },
  resource: { group: 'operator.kyma-project.io', version: 'v1alpha1', resource: 'nats' },
  requestKind: { group: 'operator.kyma-project.io', version: 'v1alpha1', kind: 'NATS' },
  name: 'eventing-nats',
  namespace: 'kyma-system',
  operation: 'CREATE',
  userInfo: { username: 'alice', uid: 'u-1', groups: ['system:authenticated'], extra: {} },
  object: { metadata: { name: 'eventing-nats', namespace: 'kyma-system' }, spec: {} },
  oldObject: null,
  dryRun: false,
  options: { apiVersion: 'meta.k8s.io/v1', kind: 'CreateOptions' },
};
const validReview = {
  apiVersion: 'admission.k8s.io/v1',
  kind: 'AdmissionReview',
  request: validRequest,
};

describe('decodeAdmissionReview', () => {
  it('reads a review as the apiserver sends it', () => {
    expect(decodeAdmissionReview(validReview)).toEqual({
      ok: true,
      request: {
        uid: 'a1b2c3',
        kind: validRequest.kind,
        resource: validRequest.resource,
        subResource: '',
        name: 'eventing-nats',
        namespace: 'kyma-system',
        operation: 'CREATE',
        userInfo: { username: 'alice', uid: 'u-1', groups: ['system:authenticated'] },
        object: validRequest.object,
        oldObject: null,
        dryRun: false,
      },
    });
  });

  it.each([
    [null, 'an AdmissionReview must be a JSON object'],
    [[], 'an AdmissionReview must be a JSON object'],
    [{}, 'the AdmissionReview has no request'],
    [
      { ...validReview, request: { ...validRequest, uid: '' } },
      'request.uid must be a non-empty string',
    ],
    [
      { ...validReview, request: { ...validRequest, uid: 7 } },
      'request.uid must be a non-empty string',
    ],
  ])('says why %j has no uid', (body, message) => {
    expect(decodeAdmissionReview(body)).toEqual({ ok: false, message });
  });

  it.each([
    [
      { apiVersion: 'admission.k8s.io/v1beta1' },
      'expected admission.k8s.io/v1 AdmissionReview, got "admission.k8s.io/v1beta1" "AdmissionReview"',
    ],
    [
      { request: { ...validRequest, operation: 'PATCH' } },
      'request.operation must be one of CREATE, UPDATE, DELETE, CONNECT, got "PATCH"',
    ],
    [
      { request: { ...validRequest, operation: undefined } },
      'request.operation must be one of CREATE, UPDATE, DELETE, CONNECT, got nothing',
    ],
    [{ request: { ...validRequest, kind: 'NATS' } }, 'request.kind must be an object'],
    [
      { request: { ...validRequest, resource: { group: 'x', version: 'v1' } } },
      'request.resource.resource must be a string',
    ],
    [
      { request: { ...validRequest, userInfo: { groups: [1] } } },
      'request.userInfo.groups must be a list of strings',
    ],
    [{ request: { ...validRequest, userInfo: undefined } }, 'request.userInfo must be an object'],
    [{ request: { ...validRequest, dryRun: 'yes' } }, 'request.dryRun must be a boolean'],
    [{ request: { ...validRequest, name: 3 } }, 'request.name must be a string'],
  ])('keeps the uid of a malformed review %j, with the reason', (change, message) => {
    expect(decodeAdmissionReview({ ...validReview, ...change })).toEqual({
      ok: false,
      uid: 'a1b2c3',
      message,
    });
  });
});

describe('answerReview', () => {
  it('wraps the verdict in an AdmissionReview', () => {
    expect(answerReview(validReview, (r) => ({ uid: r.uid, allowed: true }))).toEqual({
      httpStatus: 200,
      outcome: 'allowed',
      body: {
        apiVersion: 'admission.k8s.io/v1',
        kind: 'AdmissionReview',
        response: { uid: 'a1b2c3', allowed: true },
      },
    });
  });

  it('denies a malformed review whose uid it knows, and answers 400 when it knows none', () => {
    const denial = answerReview({ ...validReview, kind: 'Nope' }, () => {
      throw new Error('not reached');
    });
    expect(denial).toMatchObject({
      httpStatus: 200,
      outcome: 'error',
      body: {
        response: {
          uid: 'a1b2c3',
          allowed: false,
          status: {
            code: 400,
            reason: 'BadRequest',
            message: expect.stringMatching(/^malformed AdmissionReview: expected/) as unknown,
          },
        },
      },
    });
    expect(answerReview('x', () => ({ uid: '', allowed: true }))).toEqual({
      httpStatus: 400,
      outcome: 'error',
      body: { message: 'an AdmissionReview must be a JSON object' },
    });
  });

  it('turns a handler that throws into an internal-error denial, keeping the error to itself', () => {
    const seen: unknown[] = [];
    const answer = answerReview(
      validReview,
      () => {
        throw new Error('secret detail');
      },
      (error) => seen.push(error),
    );
    expect(JSON.stringify(answer)).not.toContain('secret detail');
    expect(answer.body).toMatchObject({
      response: { uid: 'a1b2c3', allowed: false, status: { code: 500, reason: 'InternalError' } },
    });
    expect(seen).toEqual([new Error('secret detail')]);
  });

  it('sends no patch for an empty one', () => {
    expect(allowWithPatch('u', [])).toEqual({ uid: 'u', allowed: true });
  });
});

// ---------------------------------------------------------------------------------------------
// Generated reviews: valid ones bent out of shape in every field

const handlers: Record<string, (request: AdmissionRequest) => AdmissionResponse> = {
  'mutate-nats': mutateNats,
  'validate-nats': (request) => validateNatsRequest(request, config),
  'protect-children': (request) => protectChildren(request, config),
};

const fieldValueArb = fc.oneof(
  fc.anything(),
  fc.constantFrom('CREATE', 'UPDATE', 'DELETE', 'CONNECT', 'PATCH', '', 'scale', 'status'),
  fc.record({
    group: fc.constantFrom('', 'apps', 'operator.kyma-project.io'),
    version: fc.constantFrom('v1', 'v1alpha1'),
    kind: fc.constantFrom('NATS', 'Scale', 'ConfigMap'),
  }),
  fc.record({
    group: fc.constantFrom('', 'apps', 'policy'),
    version: fc.constant('v1'),
    resource: fc.constantFrom('statefulsets', 'configmaps', 'nats'),
  }),
);
const objectArb = fc.oneof(
  fc.anything(),
  fc.record(
    {
      metadata: fc.oneof(
        fc.anything(),
        fc.record(
          {
            name: fc.constantFrom('eventing-nats', 'eventing-nats-config', 'x'),
            namespace: fc.constantFrom('kyma-system', 'default'),
            labels: fc.oneof(
              fc.anything(),
              fc.constant({ 'app.kubernetes.io/managed-by': 'nats-manager' }),
            ),
            ownerReferences: fc.anything(),
          },
          { requiredKeys: [] },
        ),
      ),
      spec: fc.oneof(fc.anything(), fc.record({ cluster: fc.record({ size: fc.integer() }) })),
    },
    { requiredKeys: [] },
  ),
);
const requestKeys = Object.keys(validRequest) as (keyof typeof validRequest)[];
const mangledReviewArb = fc
  .record({
    changes: fc.array(fc.tuple(fc.constantFrom(...requestKeys, 'subResource'), fieldValueArb), {
      maxLength: 2,
    }),
    removed: fc.subarray(requestKeys, { maxLength: 1 }),
    object: objectArb,
    oldObject: objectArb,
    uid: fc.oneof({ weight: 4, arbitrary: fc.constant('a1b2c3') }, fc.string(), fc.anything()),
  })
  .map(({ changes, removed, object, oldObject, uid }) => {
    const request: Record<string, unknown> = { ...validRequest, object, oldObject, uid };
    for (const [key, value] of changes) request[key] = value;
    for (const key of removed) Reflect.deleteProperty(request, key);
    return { ...validReview, request };
  });
const bodyArb = fc.oneof(
  { weight: 4, arbitrary: mangledReviewArb },
  { weight: 1, arbitrary: fc.anything() },
  { weight: 1, arbitrary: fc.jsonValue() },
);

function expectWellFormed(body: unknown, answer: ReviewAnswer): void {
  const isRecord = (value: unknown): value is Record<string, unknown> =>
    typeof value === 'object' && value !== null && !Array.isArray(value);
  const uid = isRecord(body) && isRecord(body.request) ? body.request.uid : undefined;
  if (typeof uid !== 'string' || uid === '') {
    expect(answer.httpStatus).toBe(400);
    expect(typeof (answer.body as { message: unknown }).message).toBe('string');
    return;
  }
  expect(answer.httpStatus).toBe(200);
  const review = answer.body as { apiVersion: string; kind: string; response: AdmissionResponse };
  expect(review.apiVersion).toBe('admission.k8s.io/v1');
  expect(review.kind).toBe('AdmissionReview');
  const { response } = review;
  expect(response.uid).toBe(uid);
  expect(typeof response.allowed).toBe('boolean');
  if (!response.allowed) {
    expect(response.status?.code).toBeGreaterThanOrEqual(400);
    expect(typeof response.status?.message).toBe('string');
  }
  if (response.patch !== undefined) {
    expect(response.allowed).toBe(true);
    expect(Array.isArray(JSON.parse(Buffer.from(response.patch, 'base64').toString()))).toBe(true);
  }
  // A round trip through JSON keeps it: nothing the wire would lose or choke on.
  expect(JSON.parse(JSON.stringify(review))).toEqual(review);
}

describe.each(Object.keys(handlers))('the %s handler on generated reviews', (name) => {
  const handle = handlers[name] ?? mutateNats;

  it('never throws and always answers a well-formed review for the uid', () => {
    let judged = 0;
    fc.assert(
      fc.property(bodyArb, (body) => {
        if (decodeAdmissionReview(body).ok) judged++;
        const errors: unknown[] = [];
        const answer = answerReview(body, handle, (error) => errors.push(error));
        expectWellFormed(body, answer);
        // No handler falls back on the internal-error path for any of these.
        expect(errors).toEqual([]);
      }),
      { numRuns: 3000 },
    );
    // Enough of them get past decoding to exercise the handler itself.
    expect(judged).toBeGreaterThan(750);
  });
});
