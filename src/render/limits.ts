// What Kubernetes would refuse about the children of a NATS resource, found at admission by
// rendering them: a name the API server or the StatefulSet controller cannot use (the limits come
// from the rendered names, so they follow the render code), and annotations too large for a
// child. Refusing the NATS resource is the only place the author sees it; after admission each
// child would fail on every reconcile, and a name cannot be changed.
import { invalid, type NatsFieldError } from '../api/rules.ts';
import type { DefaultedNatsSpec } from '../api/nats.ts';
import { LruCache } from '../base/lru.ts';
import type { KubeObject } from '../base/object.ts';
import { DEFAULT_IMAGES, type RenderContext, type RenderInput } from './context.ts';
import { objectNames } from './names.ts';
import { renderNats } from './render.ts';

/** Longest label value, DNS label and pod hostname. */
export const MAX_LABEL_VALUE = 63;
/** Longest DNS subdomain: most object names, and a full DNS name. */
export const MAX_SUBDOMAIN = 253;
/** apimachinery's TotalAnnotationSizeLimitB: keys plus values, in bytes, per object. */
export const MAX_ANNOTATIONS_BYTES = 256 * 1024;
/**
 * The StatefulSet controller labels every pod `controller-revision-hash: <statefulset>-<hash>`;
 * the hash is a 32-bit FNV hash written in at most 10 characters.
 */
export const REVISION_HASH_LENGTH = 10;

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS_1035_LABEL = /^[a-z]([-a-z0-9]*[a-z0-9])?$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;

const PROBE_CONTEXT: Omit<RenderContext, 'clusterDomain'> = {
  istioPresent: true,
  systemAccountPassword: 'probe',
  images: DEFAULT_IMAGES,
};

interface NameCheck {
  readonly what: string;
  readonly value: string;
  readonly rule: 'subdomain' | 'label' | 'dns-1035-label' | 'label-value';
  /** How to show the value, when it is a stand-in. */
  readonly shown?: string;
}

function problemOf({ what, value, rule, shown = value }: NameCheck): string | undefined {
  const max = rule === 'subdomain' ? MAX_SUBDOMAIN : MAX_LABEL_VALUE;
  if (value.length > max) {
    return `${what} "${shown}" would have ${String(value.length)} characters, at most ${String(max)} are allowed`;
  }
  const syntax = {
    subdomain: [DNS_SUBDOMAIN, 'a lowercase DNS subdomain'],
    label: [DNS_LABEL, 'a lowercase DNS label'],
    'dns-1035-label': [DNS_1035_LABEL, 'a DNS-1035 label (a lowercase letter first)'],
    'label-value': [LABEL_VALUE, 'a label value'],
  } as const;
  const [pattern, description] = syntax[rule];
  return pattern.test(value) ? undefined : `${what} "${shown}" would not be ${description}`;
}

/** What the names derived from `name` would have to satisfy, from the rendered children. */
function nameChecks(
  input: RenderInput,
  clusterDomain: string,
  children: readonly KubeObject[] = renderNats(input, { ...PROBE_CONTEXT, clusterDomain }),
): NameCheck[] {
  const names = objectNames(input.name);
  const lastPod = `${names.statefulSet}-${String(Math.max(input.spec.cluster.size - 1, 0))}`;
  const checks: NameCheck[] = children.map((child) => ({
    what: `the ${child.kind} name`,
    value: child.metadata.name ?? '',
    // Service names are DNS-1035 labels; the other kinds take DNS subdomains.
    rule: child.kind === 'Service' ? 'dns-1035-label' : 'subdomain',
  }));
  checks.push(
    { what: 'the pod name (its hostname)', value: lastPod, rule: 'label' },
    {
      what: "the pods' controller-revision-hash label",
      value: `${names.statefulSet}-${'h'.repeat(REVISION_HASH_LENGTH)}`,
      rule: 'label-value',
      shown: `${names.statefulSet}-<hash of up to ${String(REVISION_HASH_LENGTH)}>`,
    },
    { what: 'the volume claim name', value: `${names.volumeClaim}-${lastPod}`, rule: 'subdomain' },
    {
      what: 'the pod DNS name',
      value: `${lastPod}.${names.service}.${input.namespace}.svc.${clusterDomain}`,
      rule: 'subdomain',
    },
  );
  for (const child of children) {
    for (const [key, value] of Object.entries(stringMap(child.metadata.labels))) {
      if (input.spec.labels?.[key] === value) continue; // the spec's own: checked as such
      checks.push({ what: `the ${child.kind} label ${key}`, value, rule: 'label-value' });
    }
  }
  return checks;
}

function defaultedInput(name: string, namespace: string, spec: DefaultedNatsSpec): RenderInput {
  return { name, namespace, uid: 'probe', spec };
}

const DEFAULT_SPEC_FOR_NAMES = {
  cluster: { size: 3 },
  jetStream: {
    memStorage: { enabled: true, size: '1Gi' },
    fileStorage: { storageClassName: 'default' },
  },
  logging: { debug: false, trace: false },
  resources: {},
} satisfies DefaultedNatsSpec;

/**
 * Why `name` cannot be served in `namespace` (undefined when it can): as the manager's
 * configuration checks `--nats-cr-name` at start.
 */
export function servedNameProblem(
  name: string,
  namespace: string,
  clusterDomain = 'cluster.local',
): string | undefined {
  if (name.length > MAX_SUBDOMAIN || !DNS_SUBDOMAIN.test(name)) {
    return 'is not a valid resource name (a lowercase DNS subdomain of at most 253 characters)';
  }
  const input = defaultedInput(name, namespace, DEFAULT_SPEC_FOR_NAMES);
  const problems = nameChecks(input, clusterDomain)
    .map(problemOf)
    .filter((p) => p !== undefined);
  return problems.length === 0 ? undefined : nameLimitMessage(problems);
}

function nameLimitMessage(problems: readonly string[]): string {
  const withNats = maxServedNameLengthCached(true);
  const without = maxServedNameLengthCached(false);
  return (
    `cannot be served: ${problems.join('; ')}. A served NATS name is a DNS-1035 label of at ` +
    `most ${String(withNats)} characters when it contains "nats", else ${String(without)} ` +
    '(its children are named after it, with "-nats" appended)'
  );
}

const maxLengths = new Map<boolean, number>();

/**
 * The longest served name, from the render code: names that contain "nats" are used as they
 * are, others get "-nats" appended. Found by rendering, so it follows any change of names.
 */
export function maxServedNameLength(withNats: boolean): number {
  return maxServedNameLengthCached(withNats);
}

function maxServedNameLengthCached(withNats: boolean): number {
  let length = maxLengths.get(withNats);
  if (length === undefined) {
    length = searchMaxLength(withNats);
    maxLengths.set(withNats, length);
  }
  return length;
}

// The search without the message, so that it does not recurse into itself.
function searchMaxLength(withNats: boolean): number {
  const nameOf = (n: number): string =>
    (withNats ? 'nats' : '') + 'a'.repeat(n - (withNats ? 4 : 0));
  const fits = (n: number): boolean =>
    nameChecks(defaultedInput(nameOf(n), 'kyma-system', DEFAULT_SPEC_FOR_NAMES), 'cluster.local')
      .map(problemOf)
      .every((p) => p === undefined);
  let length = withNats ? 4 : 1;
  while (length < MAX_SUBDOMAIN && fits(length + 1)) length++;
  return length;
}

function stringMap(value: unknown): Record<string, string> {
  return typeof value === 'object' && value !== null ? (value as Record<string, string>) : {};
}

function annotationBytes(annotations: Readonly<Record<string, string>> | undefined): number {
  let total = 0;
  for (const [key, value] of Object.entries(annotations ?? {})) {
    total += Buffer.byteLength(key) + Buffer.byteLength(value);
  }
  return total;
}

interface ChildRulesInput {
  readonly name: string;
  readonly namespace: string;
  readonly spec: Record<string, unknown>;
  readonly provider: string | undefined;
}

// Every NATS write is judged twice with the same defaulted spec, by the mutating webhook and by
// the validating one, and a re-apply of an unchanged resource (GitOps does it every few minutes)
// is judged again; rendering the children is more than half of a judgement. Specs larger than
// the cap (big annotations) are rendered each time rather than held.
const RENDERED_ERRORS = new LruCache<string, readonly NatsFieldError[]>(64, {
  maxKeyLength: 8 * 1024,
});

/**
 * The errors of the children a NATS resource would produce (see ChildRules in src/api/rules.ts):
 * names at `metadata.name`, annotation sizes at `spec.annotations`. Memoised: a pure function
 * of its arguments.
 */
export function renderedChildErrors(
  resource: ChildRulesInput,
  clusterDomain = 'cluster.local',
): NatsFieldError[] {
  const { name, namespace, provider, spec } = resource;
  const key = JSON.stringify([name, namespace, provider ?? null, clusterDomain, spec]);
  return [...RENDERED_ERRORS.getOrCompute(key, () => childErrorsOf(resource, clusterDomain))];
}

function childErrorsOf(
  resource: ChildRulesInput,
  clusterDomain: string,
): readonly NatsFieldError[] {
  const input = defaultedInput(
    resource.name,
    resource.namespace,
    resource.spec as DefaultedNatsSpec,
  );
  let checks: NameCheck[];
  let children;
  try {
    // Rendered once: the names do not depend on the provider.
    children = renderNats(input, { ...PROBE_CONTEXT, clusterDomain, provider: resource.provider });
    checks = nameChecks(input, clusterDomain, children);
  } catch {
    // A spec the rules refuse already (a size nats-server cannot hold, ...) does not render.
    return Object.freeze([]);
  }
  const errors: NatsFieldError[] = [];
  const problems = checks.map(problemOf).filter((p) => p !== undefined);
  if (problems.length > 0) {
    errors.push(invalid('metadata.name', resource.name, nameLimitMessage(problems)));
  }
  const annotated = children.flatMap((child) => {
    const template = (
      child.spec as
        { template?: { metadata?: { annotations?: Record<string, string> } } } | undefined
    )?.template;
    return [
      { what: `the ${child.kind}`, annotations: stringMap(child.metadata.annotations) },
      ...(template
        ? [{ what: `the ${child.kind}'s pods`, annotations: template.metadata?.annotations }]
        : []),
    ];
  });
  const largest = annotated
    .map(({ what, annotations }) => ({ what, bytes: annotationBytes(annotations) }))
    .sort((a, b) => b.bytes - a.bytes)[0];
  if (largest !== undefined && largest.bytes > MAX_ANNOTATIONS_BYTES) {
    errors.push(
      invalid(
        'spec.annotations',
        `${String(annotationBytes(input.spec.annotations))} bytes`,
        `would give ${largest.what} ${String(largest.bytes)} bytes of annotations (keys and ` +
          `values, with the operator's own), at most ${String(MAX_ANNOTATIONS_BYTES)} (256KiB) ` +
          'are allowed',
      ),
    );
  }
  return errors;
}
