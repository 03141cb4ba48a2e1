// What one NATS resource renders to, pinned in YAML golden files (test/golden/render/), plus the
// properties no golden file can show: removed labels vanish, selectors stay ours, rendering is
// deterministic and the Secret gives its password back.
//
// After an intended change, rewrite the golden files with UPDATE_GOLDEN=1 and review the diff.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import type { V1PodDisruptionBudget, V1Service, V1StatefulSet } from '@kubernetes/client-node';
import { dump } from 'js-yaml';
import { NATS_API_VERSION, NATS_KIND, type Nats, type NatsSpec } from '../../src/api/nats.ts';
import type { KubeObject } from '../../src/kube/api.ts';
import { DEFAULT_IMAGES, type RenderContext } from '../../src/render/context.ts';
import { generateSystemAccountPassword } from '../../src/render/password.ts';
import { natsRenderInput, renderNats } from '../../src/render/render.ts';
import { renderSecret, systemAccountPasswordFrom } from '../../src/render/secret.ts';

const GOLDEN_DIR = new URL('../golden/render/', import.meta.url);
const UPDATE = process.env.UPDATE_GOLDEN === '1';
const HEADER =
  '# Golden file of test/unit/render-golden.test.ts: rewrite with UPDATE_GOLDEN=1, then review.\n';

const UID = '6c1f3e0a-4b2d-4c8e-9a7f-0d5b8e2c1a90';
const PASSWORD = 'golden0password0not0random0AbCdEfGhIjKlMnOpQrStUvWxYz012345';

const CONTEXT: RenderContext = {
  istioPresent: false,
  systemAccountPassword: PASSWORD,
  images: DEFAULT_IMAGES,
  clusterDomain: 'cluster.local',
};

function nats(name: string, spec: NatsSpec | undefined, namespace = 'kyma-system'): Nats {
  return {
    apiVersion: NATS_API_VERSION,
    kind: NATS_KIND,
    metadata: { name, namespace, uid: UID },
    ...(spec === undefined ? {} : { spec }),
  };
}

interface GoldenCase {
  readonly file: string;
  readonly resource: Nats;
  readonly context?: Partial<RenderContext>;
}

const GOLDEN_CASES: readonly GoldenCase[] = [
  { file: 'defaults', resource: nats('eventing-nats', undefined) },
  { file: 'size-1', resource: nats('eventing-nats', { cluster: { size: 1 } }) },
  { file: 'size-5', resource: nats('eventing-nats', { cluster: { size: 5 } }) },
  {
    file: 'memory-storage-off',
    resource: nats('eventing-nats', { jetStream: { memStorage: { enabled: false } } }),
  },
  {
    file: 'memory-storage-2gi',
    resource: nats('eventing-nats', { jetStream: { memStorage: { enabled: true, size: '2Gi' } } }),
  },
  {
    file: 'debug-trace',
    resource: nats('eventing-nats', { logging: { debug: true, trace: true } }),
  },
  {
    file: 'storage-class',
    resource: nats('eventing-nats', {
      jetStream: { fileStorage: { storageClassName: 'fast-ssd', size: '5120Mi' } },
      resources: { limits: { cpu: 1, memory: '2Gi' }, requests: { cpu: '0.1', memory: '256Mi' } },
    }),
  },
  {
    // No memory limit: no GOMEMLIMIT.
    file: 'no-memory-limit',
    resource: nats('eventing-nats', { resources: { requests: { cpu: '40m', memory: '64Mi' } } }),
  },
  {
    file: 'labels-annotations',
    resource: nats('eventing-nats', {
      labels: {
        team: 'eventing',
        'app.kubernetes.io/managed-by': 'someone-else',
        'app.kubernetes.io/instance': 'not-this-one',
      },
      annotations: { 'example.com/owner': 'eventing', 'sidecar.istio.io/inject': 'false' },
    }),
  },
  { file: 'name-without-nats', resource: nats('eventing', undefined, 'eventing-system') },
  {
    file: 'istio',
    resource: nats('eventing-nats', undefined),
    context: { istioPresent: true, clusterDomain: 'cluster.example' },
  },
];

function render(resource: Nats, context: Partial<RenderContext> = {}): KubeObject[] {
  return renderNats(natsRenderInput(resource), { ...CONTEXT, ...context });
}

function toYaml(objects: readonly KubeObject[]): string {
  const documents = objects.map((object) =>
    dump(object, { sortKeys: false, lineWidth: -1, noRefs: true }),
  );
  return HEADER + documents.map((document) => `---\n${document}`).join('');
}

function byKind(objects: readonly KubeObject[], kind: string): KubeObject {
  const found = objects.find((object) => object.kind === kind);
  if (found === undefined) throw new Error(`no ${kind} rendered`);
  return found;
}

/** Every string map under a `labels`, `annotations`, `matchLabels` or Service `selector` key. */
function stringMaps(value: unknown, key = ''): Record<string, string>[] {
  if (Array.isArray(value)) return value.flatMap((item: unknown) => stringMaps(item));
  if (typeof value !== 'object' || value === null) return [];
  const own = ['labels', 'annotations', 'matchLabels', 'selector'].includes(key)
    ? [value as Record<string, string>]
    : [];
  return [
    ...own,
    ...Object.entries(value).flatMap(([childKey, child]) => stringMaps(child, childKey)),
  ];
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null) {
    for (const child of Object.values(value)) deepFreeze(child);
    Object.freeze(value);
  }
  return value;
}

describe('rendered children match the golden files (UPDATE_GOLDEN=1 rewrites them)', () => {
  if (UPDATE) mkdirSync(GOLDEN_DIR, { recursive: true });

  it.each(GOLDEN_CASES.map((c) => [c.file, c] as const))('%s', (_file, goldenCase) => {
    const actual = toYaml(render(goldenCase.resource, goldenCase.context));
    const path = new URL(`${goldenCase.file}.yaml`, GOLDEN_DIR);
    if (UPDATE) {
      writeFileSync(path, actual);
      return;
    }
    if (!existsSync(path)) {
      throw new Error(`${path.pathname} is missing: run with UPDATE_GOLDEN=1 to create it`);
    }
    expect(actual).toBe(readFileSync(path, 'utf8'));
  });
});

describe('renderNats', () => {
  it('renders ConfigMap, Secret, Service, StatefulSet, PDB in that order; a DestinationRule only with Istio', () => {
    const kinds = (istioPresent: boolean): string[] =>
      render(nats('eventing-nats', undefined), { istioPresent }).map((object) => object.kind);
    const withoutIstio = ['ConfigMap', 'Secret', 'Service', 'StatefulSet', 'PodDisruptionBudget'];
    expect(kinds(false)).toEqual(withoutIstio);
    expect(kinds(true)).toEqual([...withoutIstio, 'DestinationRule']);
  });

  it('gives every child the managed-by label and a controller ownerReference to the NATS', () => {
    for (const object of render(nats('eventing', undefined), { istioPresent: true })) {
      expect(object.metadata).toMatchObject({
        namespace: 'kyma-system',
        labels: {
          'app.kubernetes.io/managed-by': 'nats-manager',
          'app.kubernetes.io/name': 'nats',
          // The CR's name (the Go manager's release name), not the object name.
          'app.kubernetes.io/instance': 'eventing',
        },
        ownerReferences: [
          {
            apiVersion: 'operator.kyma-project.io/v1alpha1',
            kind: 'NATS',
            name: 'eventing',
            uid: UID,
            controller: true,
            blockOwnerDeletion: true,
          },
        ],
      });
    }
  });

  it('drops labels and annotations removed from the spec from every child', () => {
    const before = render(
      nats('eventing-nats', {
        labels: { kept: 'yes', removed: 'yes' },
        annotations: { 'kept/a': 'yes', 'removed/a': 'yes' },
      }),
      { istioPresent: true },
    );
    const after = render(
      nats('eventing-nats', { labels: { kept: 'yes' }, annotations: { 'kept/a': 'yes' } }),
      { istioPresent: true },
    );
    expect(stringMaps(before).some((map) => 'removed' in map)).toBe(true);
    const afterMaps = stringMaps(after);
    expect(afterMaps.some((map) => 'kept' in map)).toBe(true);
    expect(afterMaps.filter((map) => 'removed' in map || 'removed/a' in map)).toEqual([]);
  });

  it('never lets user labels into selectors or claim templates, and keeps its own labels on top', () => {
    const objects = render(
      nats('eventing-nats', {
        labels: {
          team: 'eventing',
          'app.kubernetes.io/name': 'hijacked',
          'app.kubernetes.io/instance': 'hijacked',
          'app.kubernetes.io/managed-by': 'hijacked',
        },
      }),
    );
    const selector = {
      'app.kubernetes.io/instance': 'eventing',
      'app.kubernetes.io/name': 'nats',
      'kyma-project.io/dashboard': 'eventing',
    };
    const statefulSet = byKind(objects, 'StatefulSet') as V1StatefulSet;
    const spec = statefulSet.spec;
    expect(spec?.selector.matchLabels).toEqual(selector);
    expect((byKind(objects, 'Service') as V1Service).spec?.selector).toEqual(selector);
    expect(
      (byKind(objects, 'PodDisruptionBudget') as V1PodDisruptionBudget).spec?.selector,
    ).toEqual({
      matchLabels: selector,
    });
    const affinityTerms =
      spec?.template.spec?.affinity?.podAntiAffinity
        ?.preferredDuringSchedulingIgnoredDuringExecution;
    expect(affinityTerms?.map((term) => term.podAffinityTerm.labelSelector?.matchLabels)).toEqual([
      selector,
      selector,
    ]);
    expect(spec?.volumeClaimTemplates?.[0]?.metadata?.labels).toEqual({
      ...selector,
      'app.kubernetes.io/managed-by': 'nats-manager',
    });
    for (const object of objects) {
      expect(object.metadata).toMatchObject({
        labels: { ...selector, 'app.kubernetes.io/managed-by': 'nats-manager', team: 'eventing' },
      });
    }
    expect(spec?.template.metadata?.labels).toMatchObject({ ...selector, team: 'eventing' });
  });

  it('is deterministic and leaves its input alone', () => {
    for (const goldenCase of GOLDEN_CASES) {
      const input = deepFreeze(natsRenderInput(goldenCase.resource));
      const context = deepFreeze({ ...CONTEXT, ...goldenCase.context });
      expect(renderNats(input, context)).toEqual(renderNats(input, context));
    }
  });

  it('does not depend on the order in which the spec lists labels and annotations', () => {
    const a = render(nats('n', { labels: { a: '1', b: '2' }, annotations: { x: '1', y: '2' } }));
    const b = render(nats('n', { labels: { b: '2', a: '1' }, annotations: { y: '2', x: '1' } }));
    expect(toYaml(a)).toBe(toYaml(b));
  });

  it('leaves storageClassName unset for "default" and sets any other class', () => {
    const claim = (storageClassName: string): unknown =>
      (
        byKind(
          render(nats('n', { jetStream: { fileStorage: { storageClassName } } })),
          'StatefulSet',
        ) as V1StatefulSet
      ).spec?.volumeClaimTemplates?.[0]?.spec;
    expect(claim('default')).not.toHaveProperty('storageClassName');
    expect(claim('standard')).toHaveProperty('storageClassName', 'standard');
  });
});

describe('natsRenderInput', () => {
  it('defaults the spec', () => {
    const input = natsRenderInput(nats('eventing-nats', { cluster: { size: 5 } }));
    expect(input).toMatchObject({
      name: 'eventing-nats',
      namespace: 'kyma-system',
      uid: UID,
      spec: {
        cluster: { size: 5 },
        jetStream: { fileStorage: { storageClassName: 'default' } },
      },
    });
    // The size is resolved when rendering, not stored in the input.
    expect(input.spec.jetStream.fileStorage).not.toHaveProperty('size');
  });

  it.each(['name', 'namespace', 'uid'] as const)('names a missing metadata.%s', (field) => {
    const metadata = { name: 'eventing-nats', namespace: 'kyma-system', uid: UID };
    const resource: Nats = {
      ...nats('eventing-nats', undefined),
      metadata: { ...metadata, [field]: undefined },
    };
    expect(() => natsRenderInput(resource)).toThrow(`metadata.${field} missing`);
  });
});

describe('systemAccountPasswordFrom', () => {
  const input = natsRenderInput(nats('eventing-nats', undefined));
  const secretWith = (password: string): unknown =>
    JSON.parse(
      JSON.stringify(renderSecret(input, { ...CONTEXT, systemAccountPassword: password })),
    );

  it('reads back the password of a rendered Secret', () => {
    expect(systemAccountPasswordFrom(secretWith(PASSWORD))).toBe(PASSWORD);
    const generated = generateSystemAccountPassword();
    expect(systemAccountPasswordFrom(secretWith(generated))).toBe(generated);
  });

  it('reads back passwords that needed escaping in resolver.conf', () => {
    for (const password of ['with "quotes"', 'back\\slash', 'tab\tand space', 'ünï €', '#x']) {
      expect(systemAccountPasswordFrom(secretWith(password))).toBe(password);
    }
  });

  it('reads the password of a Secret written by upstream', () => {
    const resolverConf = [
      'accounts: {',
      '  "$SYS": {',
      '    users: [',
      '      {user: "admin", password: "upstreamPassword123"}',
      '    ]',
      '  },',
      '}',
      'system_account: "$SYS"',
      '',
    ].join('\n');
    const secret = {
      data: { 'resolver.conf': Buffer.from(resolverConf).toString('base64') },
    };
    expect(systemAccountPasswordFrom(secret)).toBe('upstreamPassword123');
  });

  it('reads the password under a quoted key, not the quotes around it', () => {
    const resolverConf =
      'accounts: { "$SYS": { users: [ {"user": "admin", "password": "k3y"} ] } }';
    const secret = { data: { 'resolver.conf': Buffer.from(resolverConf).toString('base64') } };
    expect(systemAccountPasswordFrom(secret)).toBe('k3y');
  });

  it('gives undefined when there is nothing to keep', () => {
    const encoded = (text: string): string => Buffer.from(text).toString('base64');
    expect(systemAccountPasswordFrom(undefined)).toBeUndefined();
    expect(systemAccountPasswordFrom({})).toBeUndefined();
    expect(systemAccountPasswordFrom({ data: {} })).toBeUndefined();
    expect(systemAccountPasswordFrom({ data: { 'resolver.conf': 7 } })).toBeUndefined();
    expect(systemAccountPasswordFrom({ data: { 'resolver.conf': encoded('') } })).toBeUndefined();
    expect(
      systemAccountPasswordFrom({ data: { 'resolver.conf': encoded('# the password is kept\n') } }),
    ).toBeUndefined();
  });
});

// What a takeover of the Go manager's cluster depends on (its chart 0.17.3 for kyma-system/
// eventing-nats): the same selectors, pod labels and annotations, common labels, names.
describe('parity with the Go manager', () => {
  const GO_SELECTOR = {
    'app.kubernetes.io/name': 'nats',
    'app.kubernetes.io/instance': 'eventing',
    'kyma-project.io/dashboard': 'eventing',
  };
  const GO_COMMON = {
    'app.kubernetes.io/component': 'nats-manager',
    'app.kubernetes.io/created-by': 'nats-manager',
    'app.kubernetes.io/managed-by': 'nats-manager',
    'app.kubernetes.io/part-of': 'nats-manager',
    'control-plane': 'nats-manager',
    'helm.sh/chart': 'nats-0.17.3',
  };
  const objects = render(nats('eventing-nats', { labels: { team: 'a' } }), { istioPresent: true });
  const statefulSet = byKind(objects, 'StatefulSet') as V1StatefulSet;

  it('selects pods by the Go manager selector labels everywhere', () => {
    expect(statefulSet.spec?.selector.matchLabels).toEqual(GO_SELECTOR);
    expect((byKind(objects, 'Service') as V1Service).spec?.selector).toEqual(GO_SELECTOR);
    expect(
      (byKind(objects, 'PodDisruptionBudget') as V1PodDisruptionBudget).spec?.selector,
    ).toEqual({ matchLabels: GO_SELECTOR });
  });

  it('labels every object with the common labels, the selector labels and spec.labels', () => {
    for (const object of objects) {
      expect(object.metadata.labels).toEqual({ ...GO_COMMON, ...GO_SELECTOR, team: 'a' });
    }
  });

  it('gives the pods the nats_cluster label and the Go manager pod annotations', () => {
    expect(statefulSet.spec?.template.metadata).toEqual({
      labels: { ...GO_COMMON, ...GO_SELECTOR, team: 'a', nats_cluster: 'eventing-nats' },
      annotations: { 'prometheus.io/scrape': 'false', 'sidecar.istio.io/inject': 'false' },
    });
  });

  it('annotates the Service for Prometheus as the Go manager does', () => {
    expect(byKind(objects, 'Service').metadata.annotations).toEqual({
      'prometheus.io/scrape': 'true',
      'prometheus.io/port': '7777',
    });
  });

  it('uses the Go manager object and claim names', () => {
    expect(objects.map((o) => `${o.kind}/${o.metadata.name}`)).toEqual([
      'ConfigMap/eventing-nats-config',
      'Secret/eventing-nats-secret',
      'Service/eventing-nats',
      'StatefulSet/eventing-nats',
      'PodDisruptionBudget/eventing-nats',
      'DestinationRule/eventing-nats',
    ]);
    expect(statefulSet.spec?.volumeClaimTemplates?.map((t) => t.metadata?.name)).toEqual([
      'eventing-nats-js-pvc',
    ]);
  });

  it('uses the resource name as instance for any other resource', () => {
    const other = render(nats('my-nats', undefined));
    expect((byKind(other, 'Service') as V1Service).spec?.selector).toEqual({
      ...GO_SELECTOR,
      'app.kubernetes.io/instance': 'my-nats',
    });
  });
});
