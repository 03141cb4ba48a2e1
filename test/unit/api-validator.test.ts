// Run twice: against the validator as the sources compile it at run time, and as the image's
// bundle carries it (ajv's standalone code, generated when bundled).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { build } from 'esbuild';
import * as compiledAtRunTime from '../../src/api/validator.ts';
import { precompiledValidator } from '../../src/localplane/manager-image.ts';

type Validator = typeof compiledAtRunTime;

async function asBundled(): Promise<Validator> {
  const dir = mkdtempSync(join(tmpdir(), 'nats-validator-'));
  try {
    const outfile = join(dir, 'validator.mjs');
    await build({
      entryPoints: [new URL('../../src/api/validator.ts', import.meta.url).pathname],
      outfile,
      bundle: true,
      platform: 'node',
      format: 'esm',
      plugins: [precompiledValidator],
      logLevel: 'warning',
    });
    return (await import(pathToFileURL(outfile).href)) as Validator;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const bundled = await asBundled();

const validCondition = {
  type: 'StatefulSet',
  status: 'True',
  reason: 'Available',
  message: '',
  lastTransitionTime: '2026-01-02T03:04:05Z',
};

const QUANTITY_MESSAGE =
  'must be a Kubernetes quantity such as 1Gi, 500m or 1000 (no sign, at most 19 digits, ' +
  '9 decimals and a 2-digit exponent)';

describe.each([
  ['compiled at run time', compiledAtRunTime],
  ['as bundled', bundled],
])('the NATS validator %s', (_how, { validateNats, validateNatsSpec }) => {
  describe('validateNatsSpec', () => {
    it.each([{}, undefined])('accepts an absent or empty spec (%p)', (spec) => {
      expect(validateNatsSpec(spec)).toEqual([]);
    });

    it('accepts a full spec, with quantities as strings or integers', () => {
      expect(
        validateNatsSpec({
          cluster: { size: 5 },
          jetStream: {
            memStorage: { enabled: true, size: '512Mi' },
            fileStorage: { storageClassName: 'fast', size: 10737418240 },
          },
          logging: { debug: true, trace: false },
          resources: { limits: { cpu: 1, memory: '2Gi' }, requests: { cpu: '0.5', memory: '1e9' } },
          labels: { 'app.kubernetes.io/part-of': 'kyma' },
          annotations: { note: '' },
        }),
      ).toEqual([]);
    });

    it('reports wrong types at their Kubernetes paths, all at once', () => {
      expect(
        validateNatsSpec({
          cluster: { size: '3' },
          jetStream: { memStorage: { enabled: 'yes' }, fileStorage: 'big' },
          logging: [],
        }),
      ).toEqual(
        expect.arrayContaining([
          { path: 'spec.cluster.size', message: 'must be of type integer' },
          { path: 'spec.jetStream.memStorage.enabled', message: 'must be of type boolean' },
          { path: 'spec.jetStream.fileStorage', message: 'must be of type object' },
          { path: 'spec.logging', message: 'must be of type object' },
        ]),
      );
    });

    it('reports a spec that is not an object at `spec`', () => {
      expect(validateNatsSpec('x')).toEqual([{ path: 'spec', message: 'must be of type object' }]);
    });

    it('rejects sizes below 1 (oddness is a CEL rule, not checked here)', () => {
      expect(validateNatsSpec({ cluster: { size: 0 } })).toEqual([
        { path: 'spec.cluster.size', message: 'should be greater than or equal to 1' },
      ]);
      expect(validateNatsSpec({ cluster: { size: 2.5 } })).toEqual([
        { path: 'spec.cluster.size', message: 'must be of type integer' },
      ]);
    });

    it.each(['1GB', 'Gi', '1 Gi', '1.2.3', '', '1Ki2'])('rejects the quantity %p', (size) => {
      expect(validateNatsSpec({ jetStream: { memStorage: { size } } })).toEqual([
        {
          path: 'spec.jetStream.memStorage.size',
          message: QUANTITY_MESSAGE,
        },
      ]);
    });

    it('rejects quantities that are neither integer nor string', () => {
      expect(validateNatsSpec({ jetStream: { fileStorage: { size: true } } })).toEqual([
        { path: 'spec.jetStream.fileStorage.size', message: 'must be an integer or a string' },
      ]);
      expect(validateNatsSpec({ jetStream: { fileStorage: { size: 1.5 } } })).toEqual([
        { path: 'spec.jetStream.fileStorage.size', message: 'must be an integer or a string' },
      ]);
    });

    it('writes map keys in brackets, as Kubernetes does', () => {
      expect(
        validateNatsSpec({
          labels: { 'app.kubernetes.io/name': 1 },
          resources: { limits: { memory: 'lots' } },
        }),
      ).toEqual(
        expect.arrayContaining([
          { path: 'spec.labels[app.kubernetes.io/name]', message: 'must be of type string' },
          {
            path: 'spec.resources.limits[memory]',
            message: QUANTITY_MESSAGE,
          },
        ]),
      );
    });

    // Kubernetes prunes fields the schema does not declare (warning, or an error only under
    // fieldValidation=Strict) before admission, so rejecting them here would be stricter than
    // the apiserver; the validator ignores them.
    it('ignores unknown fields', () => {
      expect(validateNatsSpec({ cluster: { size: 3, replicas: 'x' }, extra: { a: 1 } })).toEqual(
        [],
      );
    });
  });

  describe('validateNats', () => {
    it('accepts a resource with a full status', () => {
      expect(
        validateNats({
          apiVersion: 'operator.kyma-project.io/v1alpha1',
          kind: 'NATS',
          metadata: { name: 'eventing-nats', namespace: 'kyma-system' },
          spec: {},
          status: {
            state: 'Ready',
            url: 'nats://eventing-nats.kyma-system.svc.cluster.local:4222',
            availabilityZonesUsed: 3,
            observedGeneration: 2,
            conditions: [
              validCondition,
              { ...validCondition, type: 'Available', observedGeneration: 2 },
            ],
          },
        }),
      ).toEqual([]);
    });

    it('lists the supported states', () => {
      expect(validateNats({ status: { state: 'Happy' } })).toEqual([
        {
          path: 'status.state',
          message:
            'Unsupported value: "Happy": supported values: "Ready", "Processing", "Error", "Deleting", "Warning"',
        },
      ]);
    });

    it('writes list indices in brackets and names missing fields', () => {
      const withoutReason: Partial<typeof validCondition> = { ...validCondition };
      delete withoutReason.reason;
      expect(
        validateNats({
          status: {
            conditions: [
              validCondition,
              { ...withoutReason, status: 'Maybe', lastTransitionTime: 'yesterday' },
            ],
          },
        }),
      ).toEqual(
        expect.arrayContaining([
          { path: 'status.conditions[1].reason', message: 'Required value' },
          {
            path: 'status.conditions[1].status',
            message: 'Unsupported value: "Maybe": supported values: "True", "False", "Unknown"',
          },
          { path: 'status.conditions[1].lastTransitionTime', message: 'must be a valid date-time' },
        ]),
      );
    });

    it('rejects two conditions of the same type, as the apiserver does for list-maps', () => {
      expect(validateNats({ status: { conditions: [validCondition, validCondition] } })).toEqual([
        { path: 'status.conditions', message: 'must not contain two entries with the same key' },
      ]);
    });
  });
});
