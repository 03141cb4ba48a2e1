import fc from 'fast-check';
import request from 'supertest';
import type { Fields, Logger } from '../../src/base/log.ts';
import type { AdmissionOutcome } from '../../webhooks/review.ts';
import {
  BODY_LIMIT_BYTES,
  createAdmissionApp,
  MAX_JSON_DEPTH,
  nestsDeeperThan,
  type WebhookName,
} from '../../webhooks/server.ts';
import { TEST_ADMISSION_CONFIG as config } from '../support/admission.ts';

const WEBHOOKS = ['/mutate-nats', '/validate-nats', '/protect-children'] as const;

const natsReview = (spec: unknown, uid = 'uid-1') => ({
  apiVersion: 'admission.k8s.io/v1',
  kind: 'AdmissionReview',
  request: {
    uid,
    kind: { group: 'operator.kyma-project.io', version: 'v1alpha1', kind: 'NATS' },
    resource: { group: 'operator.kyma-project.io', version: 'v1alpha1', resource: 'nats' },
    name: 'eventing-nats',
    namespace: 'kyma-system',
    operation: 'CREATE',
    userInfo: { username: 'alice', groups: [] },
    object: { metadata: { name: 'eventing-nats', namespace: 'kyma-system' }, spec },
  },
});

function recordingLogger(): Logger & { errors: { msg: string; fields?: Fields }[] } {
  const errors: { msg: string; fields?: Fields }[] = [];
  const logger = {
    errors,
    info: () => undefined,
    error: (msg: string, fields?: Fields) => {
      errors.push({ msg, ...(fields === undefined ? {} : { fields }) });
    },
    with: () => logger,
  };
  return logger;
}

describe('createAdmissionApp', () => {
  const app = createAdmissionApp(config);

  it('answers /healthz', async () => {
    await request(app).get('/healthz').expect(200, 'ok');
  });

  it.each(WEBHOOKS)('%s answers a review', async (path) => {
    const res = await request(app).post(path).send(natsReview({})).expect(200);
    expect(res.body).toMatchObject({ response: { uid: 'uid-1' } });
  });

  it.each(WEBHOOKS)('%s refuses other methods with 405', async (path) => {
    const res = await request(app).get(path).expect(405);
    expect(res.headers.allow).toBe('POST');
    expect(res.body).toEqual({ message: `${path} accepts POST only` });
  });

  it('answers unknown paths with a JSON 404', async () => {
    const res = await request(app).post('/mutate').send({}).expect(404);
    expect(res.body).toEqual({ message: 'no webhook at /mutate' });
  });

  it('refuses a body that is not JSON', async () => {
    const res = await request(app)
      .post('/validate-nats')
      .set('Content-Type', 'application/json')
      .send('{"apiVersion": ')
      .expect(400);
    expect(res.body).toEqual({ message: 'request body is not a JSON object' });
  });

  it.each(['text/plain', 'application/x-www-form-urlencoded', 'application/jsonx'])(
    'refuses Content-Type %s with 415',
    async (type) => {
      const res = await request(app)
        .post('/validate-nats')
        .set('Content-Type', type)
        .send(JSON.stringify(natsReview({})))
        .expect(415);
      expect(res.body).toEqual({ message: 'Content-Type must be application/json' });
    },
  );

  it('accepts application/json with a charset', async () => {
    await request(app)
      .post('/validate-nats')
      .set('Content-Type', 'application/json; charset=utf-8')
      .send(JSON.stringify(natsReview({})))
      .expect(200);
  });

  it('refuses compressed bodies', async () => {
    const res = await request(app)
      .post('/validate-nats')
      .set('Content-Type', 'application/json')
      .set('Content-Encoding', 'gzip')
      .send('x')
      .expect(415);
    expect(res.body).toEqual({ message: 'request body must not be compressed' });
  });

  it('refuses a body over the limit with 413, and accepts one just under it', async () => {
    const padding = (size: number) => 'x'.repeat(size);
    const envelope = JSON.stringify(natsReview({ annotations: { big: '' } })).length;
    const under = natsReview({ annotations: { big: padding(BODY_LIMIT_BYTES - envelope) } });
    expect(JSON.stringify(under).length).toBe(BODY_LIMIT_BYTES);
    await request(app).post('/validate-nats').send(under).expect(200);
    const over = natsReview({ annotations: { big: padding(BODY_LIMIT_BYTES - envelope + 1) } });
    const res = await request(app).post('/validate-nats').send(over).expect(413);
    expect(res.body).toEqual({ message: `request body exceeds ${String(BODY_LIMIT_BYTES)} bytes` });
  });

  it('refuses a body nested deeper than any object, before parsing it, and takes one nested to the limit', async () => {
    const nested = (depth: number): string =>
      `{"request":${'['.repeat(depth - 1)}${']'.repeat(depth - 1)}}`;
    const res = await request(app)
      .post('/validate-nats')
      .type('application/json')
      .send(`{"request":${'['.repeat(200_000)}${']'.repeat(200_000)}}`)
      .expect(400);
    expect(res.body).toEqual({
      message: `request body nests deeper than ${String(MAX_JSON_DEPTH)} levels`,
    });
    const atLimit = await request(app)
      .post('/validate-nats')
      .type('application/json')
      .send(nested(MAX_JSON_DEPTH))
      .expect(400);
    expect(atLimit.body).toEqual({ message: 'the AdmissionReview has no request' });
  });

  it('counts nesting outside strings only, escaped quotes included', () => {
    const text = (s: string): Uint8Array => Buffer.from(s);
    expect(nestsDeeperThan(text('[[[]]]'), 3)).toBe(false);
    expect(nestsDeeperThan(text('[[[[]]]]'), 3)).toBe(true);
    expect(nestsDeeperThan(text('[[{"a":[]}]]'), 3)).toBe(true);
    expect(nestsDeeperThan(text('["[[[[[", "\\", "\\"]'), 1)).toBe(false);
    expect(nestsDeeperThan(text('["\\"" ,[[[]]]]'), 3)).toBe(true);
    expect(nestsDeeperThan(text('[[],[],[],[]]'), 2)).toBe(false);
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 6 }), (value) => {
        const depth = (v: unknown): number =>
          typeof v === 'object' && v !== null ? 1 + Math.max(0, ...Object.values(v).map(depth)) : 0;
        const body = text(JSON.stringify(value));
        expect(nestsDeeperThan(body, depth(value))).toBe(false);
        if (depth(value) > 0) expect(nestsDeeperThan(body, depth(value) - 1)).toBe(true);
      }),
    );
  });

  it.each([
    [{}, 'the AdmissionReview has no request'],
    [{ request: { kind: {} } }, 'request.uid must be a non-empty string'],
    [[1, 2], 'an AdmissionReview must be a JSON object'],
  ])('answers %j, which has no uid, with 400', async (body, message) => {
    const res = await request(app).post('/validate-nats').send(body).expect(400);
    expect(res.body).toEqual({ message });
  });

  it('denies a review with a uid but an unknown operation', async () => {
    const review = natsReview({});
    const res = await request(app)
      .post('/validate-nats')
      .send({ ...review, request: { ...review.request, operation: 'PATCH' } })
      .expect(200);
    expect(res.body).toMatchObject({
      response: {
        uid: 'uid-1',
        allowed: false,
        status: {
          code: 400,
          message:
            'malformed AdmissionReview: request.operation must be one of CREATE, UPDATE, ' +
            'DELETE, CONNECT, got "PATCH"',
        },
      },
    });
  });

  it('denies a review of an unknown kind', async () => {
    const review = natsReview({});
    const kind = { group: 'batch', version: 'v1', kind: 'Job' };
    const res = await request(app)
      .post('/mutate-nats')
      .send({ ...review, request: { ...review.request, kind } })
      .expect(200);
    expect(res.body).toMatchObject({
      response: {
        allowed: false,
        status: {
          code: 400,
          message: 'this webhook reviews operator.kyma-project.io/v1alpha1 NATS, not batch/v1 Job',
        },
      },
    });
  });

  it('answers an internal error without its details, and logs it', async () => {
    const log = recordingLogger();
    const broken = createAdmissionApp(
      {
        ...config,
        get breakGlassUsers(): string[] {
          throw new Error('secret detail');
        },
      },
      { log },
    );
    const review = {
      apiVersion: 'admission.k8s.io/v1',
      kind: 'AdmissionReview',
      request: {
        ...natsReview({}).request,
        kind: { group: '', version: 'v1', kind: 'ConfigMap' },
        resource: { group: '', version: 'v1', resource: 'configmaps' },
        operation: 'DELETE',
        oldObject: { metadata: { labels: { 'app.kubernetes.io/managed-by': 'nats-manager' } } },
      },
    };
    const res = await request(broken).post('/protect-children').send(review).expect(200);
    expect(res.text).not.toContain('secret detail');
    expect(res.text).not.toMatch(/at .*\.ts/);
    expect(res.body).toMatchObject({
      response: {
        uid: 'uid-1',
        allowed: false,
        status: { code: 500, message: 'internal error while reviewing the request' },
      },
    });
    expect(log.errors).toEqual([
      {
        msg: 'admission handler failed',
        fields: { webhook: 'protect-children', error: new Error('secret detail') },
      },
    ]);
  });

  it('reports every admission to the metrics hook', async () => {
    const seen: [WebhookName, AdmissionOutcome, number][] = [];
    const measured = createAdmissionApp(config, {
      onAdmission: (webhook, result, seconds) => seen.push([webhook, result, seconds]),
    });
    await request(measured).post('/mutate-nats').send(natsReview({}));
    await request(measured)
      .post('/validate-nats')
      .send(natsReview({ cluster: { size: 2 } }));
    await request(measured).post('/validate-nats').send({});
    await request(measured).post('/protect-children').set('Content-Type', 'text/plain').send('x');
    expect(seen.map(([webhook, result]) => [webhook, result])).toEqual([
      ['mutate-nats', 'allowed'],
      ['validate-nats', 'denied'],
      ['validate-nats', 'error'],
      ['protect-children', 'error'],
    ]);
    for (const [, , seconds] of seen) expect(seconds).toBeGreaterThanOrEqual(0);
  });

  it('answers even when the metrics hook throws', async () => {
    const log = recordingLogger();
    const failing = createAdmissionApp(config, {
      log,
      onAdmission: () => {
        throw new Error('metrics down');
      },
    });
    await request(failing).post('/mutate-nats').send(natsReview({})).expect(200);
    await request(failing).get('/healthz').expect(200);
    expect(log.errors.map((e) => e.msg)).toEqual(['admission metrics callback failed']);
  });
});

describe('the admission app on generated input', () => {
  const app = createAdmissionApp(config);

  // Bytes rather than values: whatever arrives, the answer is JSON with a 2xx or 4xx status.
  it('answers any body with JSON, never a 5xx', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...WEBHOOKS),
        fc.oneof(
          fc.json(),
          fc.string(),
          fc.jsonValue().map((v) => JSON.stringify(v).slice(1)),
        ),
        async (path, raw) => {
          const res = await request(app)
            .post(path)
            .set('Content-Type', 'application/json')
            .send(raw);
          expect([200, 400]).toContain(res.status);
          expect(res.headers['content-type']).toMatch(/^application\/json/);
          if (res.status === 400) {
            expect(typeof (res.body as { message: unknown }).message).toBe('string');
          }
        },
      ),
      { numRuns: 300 },
    );
  });

  it('answers every generated NATS spec with an AdmissionReview for its uid', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...WEBHOOKS),
        fc.anything(),
        fc.uuid(),
        async (path, spec, uid) => {
          const res = await request(app).post(path).send(natsReview(spec, uid)).expect(200);
          expect(res.body).toMatchObject({
            apiVersion: 'admission.k8s.io/v1',
            kind: 'AdmissionReview',
            response: { uid, allowed: expect.any(Boolean) as unknown },
          });
        },
      ),
      { numRuns: 300 },
    );
  });
});
