// The CEL cost figures of the NATS CRD, as the real API server estimates them (see
// test/support/cel-cost.ts for how they are read), bounded well below the API server's limits.
// docs/security.md records the figures this prints.
import { buildNatsCrd } from '../../src/api/crd.ts';
import {
  PER_CRD_COST_LIMIT,
  PER_RULE_COST_LIMIT,
  measureRuleCost,
  measureSchemaCosts,
  rulesOf,
} from '../support/cel-cost.ts';
import { testKubeConfig } from '../support/kube.ts';

type Node = Record<string, unknown>;

const schema = buildNatsCrd().spec.versions[0].schema.openAPIV3Schema as unknown as Node;

function nodeAt(path: string): Node {
  const found = rulesOf(schema).find((rule) => rule.path === path);
  if (found === undefined) throw new Error(`no rule at ${path}`);
  return found.node;
}

describe('CEL cost of the NATS CRD', () => {
  const kc = testKubeConfig();

  it('keeps every rule and their total far below the API server limits', async () => {
    const costs = await measureSchemaCosts(kc, schema);
    const total = costs.reduce((sum, { cost }) => sum + cost, 0);
    process.stderr.write(
      '[cel-cost] estimated cost per evaluation (limit per rule 10^7, per CRD 10^8):\n' +
        costs
          .map(({ path, cost, probes }) => `  ${path}: ${String(cost)} (${String(probes)} probes)`)
          .join('\n') +
        `\n  total: ${String(total)}\n`,
    );
    expect(costs).toHaveLength(rulesOf(schema).length);
    for (const { path, cost } of costs) {
      expect({ path, cost, withinATenthOfTheLimit: cost < PER_RULE_COST_LIMIT / 10 }).toEqual({
        path,
        cost,
        withinATenthOfTheLimit: true,
      });
    }
    expect(total).toBeLessThan(PER_CRD_COST_LIMIT / 100);
  }, 120_000);

  // The figures depend on the bounds: the same rules without maxLength cost orders of magnitude
  // more, because the API server then sizes a string by the largest request it accepts.
  it('owes its figures to the length bound of the quantity fields', async () => {
    const bounded = nodeAt('spec.jetStream.fileStorage.size');
    const unbounded = Object.fromEntries(
      Object.entries(bounded).filter(([key]) => key !== 'maxLength'),
    );
    for (const index of [0, 1]) {
      const withBound = await measureRuleCost(kc, bounded, index);
      const withoutBound = await measureRuleCost(kc, unbounded, index);
      process.stderr.write(
        `[cel-cost] fileStorage.size rule ${String(index)}: ${String(withBound.cost)} with ` +
          `maxLength, ${String(withoutBound.cost)} without\n`,
      );
      expect(withoutBound.cost).toBeGreaterThan(withBound.cost * 100);
    }
  }, 120_000);
});
