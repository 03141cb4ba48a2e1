import fc from 'fast-check';
import request from 'supertest';
import { defaultNatsSpec } from '../../src/api/defaults.ts';
import { jsonPatch, mutateNats } from '../../webhooks/mutate-nats.ts';
import type {
  AdmissionRequest,
  AdmissionResponse,
  JsonPatchOperation,
} from '../../webhooks/review.ts';
import { createAdmissionApp } from '../../webhooks/server.ts';
import { TEST_ADMISSION_CONFIG as config, natsObject, natsRequest } from '../support/admission.ts';

const app = createAdmissionApp(config);

const review = (req: AdmissionRequest) => ({
  apiVersion: 'admission.k8s.io/v1',
  kind: 'AdmissionReview',
  request: req,
});

// A plain RFC 6902 applier, independent of the code that builds the patch.
function applyPatch(document: unknown, patch: readonly JsonPatchOperation[]): unknown {
  const holder: Record<string, unknown> = { root: JSON.parse(JSON.stringify(document)) };
  for (const operation of patch) {
    const tokens = operation.path
      .split('/')
      .slice(1)
      .map((token) => token.replaceAll('~1', '/').replaceAll('~0', '~'));
    let parent: Record<string, unknown> = holder;
    let key = 'root';
    for (const token of tokens) {
      const next = parent[key];
      if (typeof next !== 'object' || next === null) throw new Error(`no ${operation.path}`);
      parent = next as Record<string, unknown>;
      key = token;
    }
    if (operation.op !== 'add' && !Object.hasOwn(parent, key)) {
      throw new Error(`${operation.op} of missing ${operation.path}`);
    }
    if (operation.op === 'remove') {
      // eslint-disable-next-line @typescript-eslint/no-dynamic-delete
      delete parent[key];
    } else {
      // defineProperty: a `__proto__` key is an ordinary key in JSON.
      Object.defineProperty(parent, key, {
        value: JSON.parse(JSON.stringify(operation.value)),
        enumerable: true,
        writable: true,
        configurable: true,
      });
    }
  }
  return holder.root;
}

function patchOf(response: AdmissionResponse): JsonPatchOperation[] {
  if (response.patch === undefined) return [];
  expect(response.patchType).toBe('JSONPatch');
  return JSON.parse(Buffer.from(response.patch, 'base64').toString('utf8')) as JsonPatchOperation[];
}

describe('POST /mutate-nats', () => {
  it('answers with a JSON patch that turns the object into the defaulted one', async () => {
    const object = natsObject({ cluster: { size: 5 }, labels: { team: 'a' } });
    const res = await request(app)
      .post('/mutate-nats')
      .send(review(natsRequest({ object })))
      .expect(200)
      .expect('Content-Type', /application\/json/);
    const body = res.body as { apiVersion: string; kind: string; response: AdmissionResponse };
    expect(body.apiVersion).toBe('admission.k8s.io/v1');
    expect(body.kind).toBe('AdmissionReview');
    expect(body.response).toMatchObject({ uid: natsRequest().uid, allowed: true });
    expect(applyPatch(object, patchOf(body.response))).toEqual({
      ...object,
      spec: defaultNatsSpec(object.spec),
    });
  });

  it('adds the whole spec when there is none', async () => {
    const object = natsObject();
    const res = await request(app)
      .post('/mutate-nats')
      .send(review(natsRequest({ object })))
      .expect(200);
    const { response } = res.body as { response: AdmissionResponse };
    expect(patchOf(response)).toEqual([{ op: 'add', path: '/spec', value: defaultNatsSpec({}) }]);
  });

  it('sends no patch when nothing changes', async () => {
    const object = natsObject(defaultNatsSpec({}));
    const res = await request(app)
      .post('/mutate-nats')
      .send(review(natsRequest({ object })))
      .expect(200);
    expect((res.body as { response: unknown }).response).toEqual({
      uid: natsRequest().uid,
      allowed: true,
    });
  });

  // The webhook has no side effects (sideEffects: None), so a dry run gets the same answer.
  it('answers a dry run exactly as the real request', async () => {
    const object = natsObject({});
    const real = await request(app)
      .post('/mutate-nats')
      .send(review(natsRequest({ object })));
    const dry = await request(app)
      .post('/mutate-nats')
      .send(review(natsRequest({ object, dryRun: true })));
    expect(dry.body).toEqual(real.body);
  });
});

describe('mutateNats', () => {
  it('escapes keys in the patch paths', () => {
    const object = natsObject({ ...defaultNatsSpec({}), labels: { 'a/b~c': null } });
    const patch = patchOf(mutateNats(natsRequest({ object })));
    expect(patch).toEqual([{ op: 'remove', path: '/spec/labels/a~1b~0c' }]);
  });

  it('does not put back a file-storage size that an update removes, so validation refuses it', () => {
    const old = natsObject(defaultNatsSpec({ jetStream: { fileStorage: { size: '5Gi' } } }));
    const spec = defaultNatsSpec({});
    delete (spec.jetStream.fileStorage as { size?: unknown }).size;
    const response = mutateNats(
      natsRequest({ operation: 'UPDATE', object: natsObject(spec), oldObject: old }),
    );
    expect(response).toEqual({ uid: natsRequest().uid, allowed: true });
  });

  // As the Go manager: the file-storage size is resolved when rendering, never persisted, so a
  // resource created without one can get one later.
  it('never writes a file-storage size, on create or update', () => {
    const spec = defaultNatsSpec({});
    for (const operation of ['CREATE', 'UPDATE'] as const) {
      const response = mutateNats(
        natsRequest({
          operation,
          object: natsObject(spec),
          oldObject: operation === 'UPDATE' ? natsObject(spec) : null,
        }),
      );
      expect(patchOf(response)).toEqual([]);
    }
  });

  it('passes deletions and a spec that is not an object unchanged', () => {
    const uid = natsRequest().uid;
    expect(mutateNats(natsRequest({ operation: 'DELETE', object: null }))).toEqual({
      uid,
      allowed: true,
    });
    expect(mutateNats(natsRequest({ object: natsObject('big') }))).toEqual({ uid, allowed: true });
  });

  it('refuses a review for another kind or without an object', () => {
    const wrongKind = mutateNats(
      natsRequest({ kind: { group: 'apps', version: 'v1', kind: 'StatefulSet' } }),
    );
    expect(wrongKind.allowed).toBe(false);
    expect(wrongKind.status).toMatchObject({
      code: 400,
      message:
        'this webhook reviews operator.kyma-project.io/v1alpha1 NATS, not apps/v1 StatefulSet',
    });
    expect(mutateNats(natsRequest({ object: null })).status?.code).toBe(400);
  });

  // defaultNatsSpec assigns a `__proto__` key as the prototype instead of keeping it.
  const keyArb = fc.string().filter((key) => key !== '__proto__');
  const specArb = fc.oneof(
    fc.record(
      {
        cluster: fc.oneof(fc.constant(null), fc.record({ size: fc.nat(9) }, { requiredKeys: [] })),
        jetStream: fc.record(
          {
            memStorage: fc.record(
              {
                enabled: fc.oneof(fc.boolean(), fc.constant(null)),
                size: fc.constantFrom('1Gi', 0),
              },
              { requiredKeys: [] },
            ),
            fileStorage: fc.oneof(
              fc.constant(null),
              fc.record(
                { storageClassName: fc.string(), size: fc.constantFrom('2Gi', 7) },
                { requiredKeys: [] },
              ),
            ),
          },
          { requiredKeys: [] },
        ),
        logging: fc.record({ debug: fc.boolean(), trace: fc.boolean() }, { requiredKeys: [] }),
        resources: fc.dictionary(
          fc.constantFrom('limits', 'requests'),
          fc.dictionary(keyArb, fc.string()),
        ),
        labels: fc.dictionary(keyArb, fc.oneof(fc.string(), fc.constant(null))),
        annotations: fc.dictionary(keyArb, fc.string()),
      },
      { requiredKeys: [] },
    ),
    fc.constant(undefined),
    fc.constant(null),
  );

  it('patches any spec into exactly the defaulted spec, and a defaulted one not at all', () => {
    fc.assert(
      fc.property(
        specArb,
        fc.constantFrom('CREATE' as const, 'UPDATE' as const),
        (spec, operation) => {
          const object = natsObject(spec);
          const oldObject = operation === 'UPDATE' ? natsObject({}) : null;
          const patched = applyPatch(
            object,
            patchOf(mutateNats(natsRequest({ operation, object, oldObject }))),
          ) as Record<string, unknown>;
          expect(patched).toEqual({ ...object, spec: defaultNatsSpec(spec) });
          expect(
            mutateNats(natsRequest({ operation, object: patched, oldObject })).patch,
          ).toBeUndefined();
        },
      ),
      { numRuns: 2000 },
    );
  });

  it('builds patches that turn one JSON value into another', () => {
    fc.assert(
      fc.property(fc.jsonValue(), fc.jsonValue(), (before, after) => {
        // Through JSON, as on the wire: -0 arrives as 0.
        const expected: unknown = JSON.parse(JSON.stringify({ x: after }));
        expect(applyPatch({ x: before }, jsonPatch(before, after, '/x'))).toEqual(expected);
      }),
      { numRuns: 1000 },
    );
  });
});

// The API server calls the mutating webhook before it validates the schema and the CEL rules,
// and answers with the first layer that refuses: the mutating webhook's denial is the only
// place where every error can come at once.
describe('mutateNats judging the change', () => {
  const everyLayer = natsObject(
    {
      cluster: { size: 4 }, // a CEL rule of the CRD
      jetStream: { fileStorage: { size: '1e2147483647' } }, // the schema's pattern
      labels: { 'bad key': 'x' }, // only the webhook knows label keys
    },
    'other-nats', // only the webhook knows the single-instance rule
  );

  it('denies with the errors of every layer in one answer', () => {
    const response = mutateNats(natsRequest({ name: 'other-nats', object: everyLayer }), config);
    expect(response.allowed).toBe(false);
    expect(response.status?.code).toBe(422);
    expect(response.status?.details?.causes?.map((cause) => cause.field)).toEqual([
      'metadata.name',
      'spec.cluster.size',
      'spec.jetStream.fileStorage.size',
      'spec.labels',
    ]);
    expect(response.status?.message).toContain('size only accepts odd numbers');
    expect(response.status?.message).toContain('must be a Kubernetes quantity');
    expect(response.status?.message).toContain('serves only one NATS resource');
  });

  it('gives the same errors as the validating webhook', async () => {
    const body = review(natsRequest({ name: 'other-nats', object: everyLayer }));
    const [mutate, validate] = await Promise.all([
      request(app).post('/mutate-nats').send(body),
      request(app).post('/validate-nats').send(body),
    ]);
    const statusOf = (res: { body: unknown }): unknown =>
      (res.body as { response: AdmissionResponse }).response.status;
    expect(statusOf(mutate)).toEqual(statusOf(validate));
  });

  it('allows a valid change and still patches nothing it need not', () => {
    const response = mutateNats(natsRequest({ object: natsObject(defaultNatsSpec({})) }), config);
    expect(response).toEqual({ uid: natsRequest().uid, allowed: true });
  });
});
