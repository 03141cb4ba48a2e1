import { validateNatsChange } from '../../src/api/rules.ts';
import { defaultNatsSpec } from '../../src/api/defaults.ts';
import { MAX_CLUSTER_SIZE } from '../../src/api/nats-schema.ts';
import { DEFAULT_IMAGES } from '../../src/render/context.ts';
import {
  MAX_ANNOTATIONS_BYTES,
  MAX_LABEL_VALUE,
  REVISION_HASH_LENGTH,
  maxServedNameLength,
  renderedChildErrors,
  servedNameProblem,
} from '../../src/render/limits.ts';
import { renderNats } from '../../src/render/render.ts';

const served = { natsName: 'eventing-nats', natsNamespace: 'kyma-system' };

function nats(name: string, spec: unknown = {}): Record<string, unknown> {
  return {
    apiVersion: 'operator.kyma-project.io/v1alpha1',
    kind: 'NATS',
    metadata: { name, namespace: 'kyma-system' },
    spec,
  };
}

const childErrors = (name: string, spec: unknown = {}): string[] =>
  renderedChildErrors({
    name,
    namespace: 'kyma-system',
    spec: defaultNatsSpec(spec),
    provider: undefined,
  }).map((error) => error.message);

describe('limits of the rendered children', () => {
  // controller-revision-hash = <statefulset>-<hash of at most 10> must be a label value (63).
  it('computes the longest served name from the render code', () => {
    expect(maxServedNameLength(true)).toBe(MAX_LABEL_VALUE - 1 - REVISION_HASH_LENGTH);
    expect(maxServedNameLength(true)).toBe(52);
    // Without "nats" in it, the children are named <name>-nats.
    expect(maxServedNameLength(false)).toBe(47);
    expect(servedNameProblem(`nats-${'a'.repeat(47)}`, 'kyma-system')).toBeUndefined();
    expect(servedNameProblem('a'.repeat(47), 'kyma-system')).toBeUndefined();
  });

  it('refuses a longer served name at admission with the exact limit', () => {
    const name = `nats-${'a'.repeat(48)}`;
    expect(childErrors(name)).toEqual([
      `metadata.name: Invalid value: "${name}": cannot be served: the pods' ` +
        `controller-revision-hash label "${name}-<hash of up to 10>" would have 64 characters, at most ` +
        '63 are allowed. A served NATS name is a DNS-1035 label of at most 52 characters when ' +
        'it contains "nats", else 47 (its children are named after it, with "-nats" appended)',
    ]);
    const verdict = validateNatsChange('CREATE', nats(name), undefined, {
      natsName: name,
      natsNamespace: 'kyma-system',
      childRules: renderedChildErrors,
    });
    expect(verdict.errors.map((e) => e.path)).toEqual(['metadata.name']);
  });

  it('refuses names the Service or the pods cannot carry', () => {
    expect(childErrors('my.nats')[0]).toContain(
      'the Service name "my.nats" would not be a DNS-1035 label',
    );
    expect(childErrors('0-nats')[0]).toContain('would not be a DNS-1035 label');
    expect(childErrors('eventing-nats')).toEqual([]);
  });

  it('never refuses an UPDATE for a name that did not change', () => {
    const name = `nats-${'a'.repeat(60)}`;
    const verdict = validateNatsChange('UPDATE', nats(name, { cluster: { size: 5 } }), nats(name), {
      ...served,
      childRules: renderedChildErrors,
    });
    expect(verdict.errors).toEqual([]);
  });

  it('refuses annotations that would make a child exceed 256KiB of annotations', () => {
    // The operator adds its own to the pods and the Service: 256KiB of the user's is too much.
    const big = { annotations: { 'example.com/blob': 'x'.repeat(MAX_ANNOTATIONS_BYTES - 16) } };
    expect(childErrors('eventing-nats', big)).toEqual([
      expect.stringMatching(
        /^spec\.annotations: Invalid value: "262144 bytes": would give the StatefulSet's pods 262197 bytes of annotations .* at most 262144 \(256KiB\) are allowed$/,
      ),
    ]);
    const fits = { annotations: { 'example.com/blob': 'x'.repeat(MAX_ANNOTATIONS_BYTES - 100) } };
    expect(childErrors('eventing-nats', fits)).toEqual([]);
  });

  // The schema's maximum of spec.cluster.size: every server is a route in nats.conf.
  it('keeps nats.conf of the largest cluster with the longest names within a ConfigMap', () => {
    const name = `nats-${'a'.repeat(47)}`;
    const namespace = 'n'.repeat(63);
    const [configMap] = renderNats(
      { name, namespace, uid: 'u', spec: defaultNatsSpec({ cluster: { size: MAX_CLUSTER_SIZE } }) },
      {
        istioPresent: false,
        systemAccountPassword: 'p',
        images: DEFAULT_IMAGES,
        clusterDomain: 'cluster.local',
      },
    );
    const bytes = Buffer.byteLength(JSON.stringify(configMap));
    // etcd's default request limit is 1.5MiB; keep a good margin below 1MiB.
    expect(bytes).toBeLessThan(512 * 1024);
  });
});
