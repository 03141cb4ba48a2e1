import { defaultNatsSpec } from '../../src/api/defaults.ts';
import { NatsState } from '../../src/api/nats.ts';
import { NATS_STATES, QUANTITY_PATTERN, natsSchema } from '../../src/api/nats-schema.ts';
import { validateNats } from '../../src/api/validator.ts';

type Node = Readonly<Record<string, unknown>>;

interface Visit {
  path: string;
  node: Node;
  // How the node is reached: as a named property, as list items, map values or an anyOf branch.
  via: 'root' | 'property' | 'items' | 'additionalProperties' | 'junctor';
}

function children(node: Node, path: string): Visit[] {
  const result: Visit[] = [];
  const properties = (node.properties ?? {}) as Record<string, Node>;
  for (const [name, child] of Object.entries(properties)) {
    result.push({ path: path === '' ? name : `${path}.${name}`, node: child, via: 'property' });
  }
  if (node.items) result.push({ path: `${path}[]`, node: node.items as Node, via: 'items' });
  if (typeof node.additionalProperties === 'object') {
    result.push({
      path: `${path}{}`,
      node: node.additionalProperties as Node,
      via: 'additionalProperties',
    });
  }
  for (const junctor of ['anyOf', 'allOf', 'oneOf'] as const) {
    for (const [i, branch] of ((node[junctor] ?? []) as Node[]).entries()) {
      result.push({ path: `${path}<${junctor}[${i}]>`, node: branch, via: 'junctor' });
    }
  }
  return result;
}

function walk(): Visit[] {
  const visits: Visit[] = [];
  const pending: Visit[] = [{ path: '', node: natsSchema, via: 'root' }];
  for (let visit = pending.pop(); visit; visit = pending.pop()) {
    visits.push(visit);
    pending.push(...children(visit.node, visit.path));
  }
  return visits;
}

const visits = walk();
const outsideJunctors = visits.filter(({ via }) => via !== 'junctor');

// The keywords of apiextensions.k8s.io/v1 JSONSchemaProps that a structural schema may use.
const KUBERNETES_KEYWORDS = new Set([
  'description', 'type', 'format', 'title', 'default', 'nullable', 'enum',
  'maximum', 'exclusiveMaximum', 'minimum', 'exclusiveMinimum', 'multipleOf',
  'maxLength', 'minLength', 'pattern', 'maxItems', 'minItems', 'uniqueItems',
  'maxProperties', 'minProperties', 'required', 'items', 'properties', 'additionalProperties',
  'allOf', 'anyOf', 'oneOf', 'not',
  'x-kubernetes-preserve-unknown-fields', 'x-kubernetes-embedded-resource',
  'x-kubernetes-int-or-string', 'x-kubernetes-list-map-keys', 'x-kubernetes-list-type',
  'x-kubernetes-map-type', 'x-kubernetes-validations',
]); // prettier-ignore

// The root metadata is owned by Kubernetes: it may only say `type: object`, not even describe it.
const isRootMetadata = (visit: Visit): boolean => visit.path === 'metadata';

function isIntOrString(node: Node): boolean {
  return node['x-kubernetes-int-or-string'] === true;
}

describe('NATS schema is structural', () => {
  it('uses only keywords Kubernetes knows', () => {
    const unknown = visits.flatMap(({ path, node }) =>
      Object.keys(node)
        .filter((keyword) => !KUBERNETES_KEYWORDS.has(keyword))
        .map((keyword) => `${path}: ${keyword}`),
    );
    expect(unknown).toEqual([]);
  });

  it('gives every field a type (int-or-string as controller-gen spells it)', () => {
    const untyped = outsideJunctors.filter(({ node }) =>
      isIntOrString(node)
        ? 'type' in node ||
          JSON.stringify(node.anyOf) !== JSON.stringify([{ type: 'integer' }, { type: 'string' }])
        : typeof node.type !== 'string',
    );
    expect(untyped.map(({ path }) => path)).toEqual([]);
  });

  it('describes every property', () => {
    const undescribed = visits.filter(
      (visit) =>
        (visit.via === 'property' || visit.via === 'root') &&
        !isRootMetadata(visit) &&
        !(typeof visit.node.description === 'string' && visit.node.description.length > 0),
    );
    expect(undescribed.map(({ path }) => path)).toEqual([]);
  });

  it('leaves the root metadata to Kubernetes', () => {
    expect(natsSchema.properties.metadata).toEqual({ type: 'object' });
  });

  it('never combines properties with additionalProperties', () => {
    const both = visits.filter(
      ({ node }) => 'properties' in node && 'additionalProperties' in node,
    );
    expect(both.map(({ path }) => path)).toEqual([]);
  });

  it('declares the content of every object, so that nothing is pruned by accident', () => {
    const open = outsideJunctors.filter(
      (visit) =>
        visit.node.type === 'object' &&
        !isRootMetadata(visit) &&
        !('properties' in visit.node) &&
        !('additionalProperties' in visit.node),
    );
    expect(open.map(({ path }) => path)).toEqual([]);
  });

  it('keeps anyOf/allOf/oneOf branches free of types, defaults and descriptions', () => {
    const forbidden = ['description', 'default', 'additionalProperties', 'nullable', 'type'];
    const offending = visits
      .filter(({ via }) => via === 'junctor')
      .filter(({ path, node }) => {
        const parentIsIntOrString = /<anyOf\[[01]\]>$/.test(path);
        const allowed = parentIsIntOrString ? ['type'] : [];
        return Object.keys(node).some((k) => forbidden.includes(k) && !allowed.includes(k));
      });
    expect(offending.map(({ path }) => path)).toEqual([]);
  });

  it('keys list-maps by required fields', () => {
    const listMaps = visits.filter(({ node }) => node['x-kubernetes-list-type'] === 'map');
    expect(listMaps.map(({ path }) => path)).toEqual(['status.conditions']);
    for (const { node } of listMaps) {
      const required = (node.items as Node).required as string[];
      for (const key of node['x-kubernetes-list-map-keys'] as string[]) {
        expect(required).toContain(key);
      }
    }
  });

  it('gives every CEL rule a message', () => {
    const rules = visits.flatMap(({ path, node }) =>
      ((node['x-kubernetes-validations'] ?? []) as Node[]).map((rule) => ({ path, rule })),
    );
    expect(rules.length).toBeGreaterThan(0);
    expect(rules.filter(({ rule }) => typeof rule.message !== 'string')).toEqual([]);
  });

  it('has defaults that pass its own validation', () => {
    expect(validateNats({ spec: defaultNatsSpec({}) })).toEqual([]);
  });
});

describe('NATS schema rules', () => {
  const rulesAt = (path: string): string[] => {
    const visit = visits.find((v) => v.path === path);
    return ((visit?.node['x-kubernetes-validations'] ?? []) as { rule: string }[]).map(
      ({ rule }) => rule,
    );
  };

  // Upstream compared the whole fileStorage object with oldSelf, which rejected setting a size
  // on a CR created without one. Only the size's own transition rule (skipped when there is no
  // old value) and a removal guard that passes without an old size may remain.
  it('lets fileStorage.size be set later on a CR created without it', () => {
    expect(rulesAt('spec')).toEqual([]);
    expect(rulesAt('spec.jetStream')).toEqual([]);
    const [removal, ...others] = rulesAt('spec.jetStream.fileStorage');
    expect(others).toEqual([]);
    expect(removal).toMatch(/^!has\(oldSelf\.size\) \|\| has\(self\.size\) \|\| /);
    // The bound and the transition rule.
    expect(rulesAt('spec.jetStream.fileStorage.size')).toHaveLength(2);
  });

  // The apiserver runs CEL even on values that failed `pattern`, and quantity() of a string such
  // as 1e2147483647 costs minutes of CPU in comparisons: every parse must sit behind a match of
  // the bounded pattern, on a node whose length is bounded too.
  it('parses a quantity in CEL only after matching the bounded pattern', () => {
    const guard = `.matches(r'${QUANTITY_PATTERN}')`;
    const rules = visits.flatMap(({ node }) =>
      ((node['x-kubernetes-validations'] ?? []) as { rule: string }[]).map(({ rule }) => rule),
    );
    const parsing = rules.filter((rule) => rule.includes('quantity(string('));
    expect(parsing.length).toBeGreaterThan(0);
    for (const rule of parsing) {
      for (const [call, value] of rule.matchAll(/quantity\(string\(([a-zA-Z.]+)\)\)/g)) {
        const guarded = rule.indexOf(`string(${String(value)})${guard}`);
        expect({ rule, call, guarded: guarded !== -1 && guarded < rule.indexOf(call) }).toEqual({
          rule,
          call,
          guarded: true,
        });
      }
      // The only other quantity() calls take constants.
      expect(rule.replaceAll(/quantity\(string\([a-zA-Z.]+\)\)/g, '')).not.toMatch(
        /quantity\((?!'[0-9]+'\))/,
      );
    }
    const unbounded = visits.filter(
      ({ node }) => node['x-kubernetes-int-or-string'] === true && node.maxLength === undefined,
    );
    expect(unbounded.map(({ path }) => path)).toEqual([]);
  });

  it('names the same states as the NatsState constant', () => {
    expect(Object.values(NatsState)).toEqual([...NATS_STATES]);
  });
});
