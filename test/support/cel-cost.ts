// The estimated cost the API server assigns to a CRD's CEL rules, read from the API server itself.
// It reports a cost only when a rule exceeds the per-rule limit (10^7), as "estimated rule cost
// exceeds budget by factor of F", where the cost is the rule's own cost times the largest number
// of places it can apply (its cardinality). So each rule is probed alone, in a map whose
// maxProperties sets that cardinality, and the smallest refused cardinality N gives the cost:
// C·N > 10^7 ≥ C·(N-1), and F (printed with six decimals below 1.5) gives C = F·10^7/N.
import type { KubeConfig } from '@kubernetes/client-node';
import { KubeApiError, requestJson } from '../../src/kube/api.ts';

/** apiextensions' StaticEstimatedCostLimit: the most one rule may cost. */
export const PER_RULE_COST_LIMIT = 10_000_000;
/** apiextensions' StaticEstimatedCRDCostLimit: the most all rules of a CRD may cost together. */
export const PER_CRD_COST_LIMIT = 100_000_000;

type Node = Record<string, unknown>;

export interface RuleCost {
  /** Where the rule sits, as a path of property names. */
  readonly path: string;
  readonly rule: string;
  /** Estimated cost of one evaluation. */
  readonly cost: number;
  /** Probes sent to find it. */
  readonly probes: number;
}

function withoutRules(node: unknown): unknown {
  if (Array.isArray(node)) return (node as unknown[]).map(withoutRules);
  if (typeof node !== 'object' || node === null) return node;
  return Object.fromEntries(
    Object.entries(node)
      .filter(([key]) => key !== 'x-kubernetes-validations')
      .map(([key, child]) => [key, withoutRules(child)]),
  );
}

/** Every CEL rule of a schema with its path and the schema node it sits on. */
export function rulesOf(schema: Node, path = ''): { path: string; node: Node; index: number }[] {
  const found: { path: string; node: Node; index: number }[] = [];
  const rules = (schema['x-kubernetes-validations'] ?? []) as unknown[];
  rules.forEach((_, index) => found.push({ path, node: schema, index }));
  const properties = (schema.properties ?? {}) as Record<string, Node>;
  for (const [key, child] of Object.entries(properties)) {
    found.push(...rulesOf(child, path === '' ? key : `${path}.${key}`));
  }
  const additional = schema.additionalProperties;
  if (typeof additional === 'object' && additional !== null) {
    found.push(...rulesOf(additional as Node, `${path}[*]`));
  }
  const items = schema.items;
  if (typeof items === 'object' && items !== null) {
    found.push(...rulesOf(items as Node, `${path}[]`));
  }
  return found;
}

const FACTOR = /estimated rule cost exceeds budget by factor of ([0-9.]+)x/;

function probeCrd(node: Node, index: number, cardinality: number): Node {
  const rule = ((node['x-kubernetes-validations'] ?? []) as unknown[])[index];
  const probed = { ...(withoutRules(node) as Node), 'x-kubernetes-validations': [rule] };
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: 'costprobes.probe.nats-manager.test' },
    spec: {
      group: 'probe.nats-manager.test',
      names: {
        kind: 'CostProbe',
        listKind: 'CostProbeList',
        plural: 'costprobes',
        singular: 'costprobe',
      },
      scope: 'Namespaced',
      versions: [
        {
          name: 'v1',
          served: true,
          storage: true,
          schema: {
            openAPIV3Schema: {
              type: 'object',
              properties: {
                spec: {
                  type: 'object',
                  properties: {
                    probe: {
                      type: 'object',
                      maxProperties: cardinality,
                      additionalProperties: probed,
                    },
                  },
                },
              },
            },
          },
        },
      ],
    },
  };
}

/** The factor the API server reports for the rule at `cardinality`, or undefined if within. */
async function exceedFactor(
  kc: KubeConfig,
  node: Node,
  index: number,
  cardinality: number,
): Promise<number | 'more than 100x' | undefined> {
  try {
    await requestJson(kc, {
      method: 'POST',
      path: '/apis/apiextensions.k8s.io/v1/customresourcedefinitions',
      query: { dryRun: 'All' },
      body: probeCrd(node, index, cardinality),
    });
    return undefined;
  } catch (error) {
    if (!(error instanceof KubeApiError) || error.status !== 422) throw error;
    if (error.message.includes('estimated rule cost exceeds budget by factor of more than 100x')) {
      return 'more than 100x';
    }
    const match = FACTOR.exec(error.message);
    if (match?.[1] === undefined) throw error;
    return Number(match[1]);
  }
}

/** The API server's estimated cost of one evaluation of the rule `index` on `node`. */
export async function measureRuleCost(
  kc: KubeConfig,
  node: Node,
  index: number,
): Promise<{ cost: number; probes: number }> {
  let probes = 1;
  const alone = await exceedFactor(kc, node, index, 1);
  if (alone !== undefined) {
    // Over the limit on its own: the factor is all the API server says.
    return { cost: alone === 'more than 100x' ? Infinity : alone * PER_RULE_COST_LIMIT, probes };
  }
  let within = 1;
  let refused = 2;
  for (;;) {
    probes++;
    if ((await exceedFactor(kc, node, index, refused)) !== undefined) break;
    within = refused;
    refused *= 2;
    if (refused > 2 ** 52) throw new Error('the rule costs nothing the API server reports');
  }
  while (refused - within > 1) {
    const middle = Math.floor((within + refused) / 2);
    probes++;
    if ((await exceedFactor(kc, node, index, middle)) === undefined) within = middle;
    else refused = middle;
  }
  probes++;
  const factor = await exceedFactor(kc, node, index, refused);
  if (typeof factor !== 'number') throw new Error(`unexpected factor ${String(factor)}`);
  return { cost: Math.round((factor * PER_RULE_COST_LIMIT) / refused), probes };
}

/** The estimated cost of every rule of `schema`, each at cardinality one. */
export async function measureSchemaCosts(kc: KubeConfig, schema: Node): Promise<RuleCost[]> {
  const costs: RuleCost[] = [];
  for (const { path, node, index } of rulesOf(schema)) {
    const rule = ((node['x-kubernetes-validations'] ?? []) as { rule: string }[])[index];
    const { cost, probes } = await measureRuleCost(kc, node, index);
    costs.push({ path, rule: rule?.rule ?? '', cost, probes });
  }
  return costs;
}
