// No input can make the API server burn CPU: every quantity field of the NATS CRD, sent values
// built to be expensive to parse or compare, on CREATE and UPDATE, with no webhook installed
// (the CRD's schema and CEL rules alone). Each must be refused, and answered well under a second;
// before the bounded pattern one such write kept kube-apiserver at a full core for minutes.
import { KubeApiError, requestJson, resourcePath } from '../../src/kube/api.ts';
import { NATS_API_VERSION, NATS_KIND } from '../../src/api/nats.ts';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import {
  createTestNamespace,
  deleteTestNamespace,
  testKubeConfig,
  testKubeconfigPath,
} from '../support/kube.ts';

/**
 * CPU seconds kube-apiserver has used so far (user + system), read from /proc through the
 * plane's pid list; undefined where that cannot be read. A figure to report, not to assert.
 */
function apiserverCpuSeconds(): number | undefined {
  const pids = join(dirname(testKubeconfigPath()), 'pids');
  if (!existsSync(pids)) return undefined;
  for (const pid of readFileSync(pids, 'utf8')
    .split('\n')
    .filter((p) => p !== '')) {
    const comm = `/proc/${pid}/comm`;
    if (!existsSync(comm) || readFileSync(comm, 'utf8').trim() !== 'kube-apiserver') continue;
    // Fields after the command name in parentheses: utime and stime are the 12th and 13th.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(fields[11]) + Number(fields[12]);
    return ticks / 100; // USER_HZ is 100 on Linux
  }
  return undefined;
}

/** "Well under a second" for one refused write on this 2-core machine shared with others. */
const ANSWER_BOUND_MS = 1_000;

/** Every quantity field, as the merge patch that sets it to `value`. */
const FIELDS: Record<string, (value: unknown) => Record<string, unknown>> = {
  'jetStream.memStorage.size': (value) => ({ jetStream: { memStorage: { size: value } } }),
  'jetStream.fileStorage.size': (value) => ({ jetStream: { fileStorage: { size: value } } }),
  'resources.limits[cpu]': (value) => ({ resources: { limits: { cpu: value } } }),
  'resources.limits[memory]': (value) => ({ resources: { limits: { memory: value } } }),
  'resources.requests[cpu]': (value) => ({ resources: { requests: { cpu: value } } }),
  'resources.requests[memory]': (value) => ({ resources: { requests: { memory: value } } }),
  // The maps take any resource name; its value is a quantity all the same.
  'resources.limits[ephemeral-storage]': (value) => ({
    resources: { limits: { 'ephemeral-storage': value } },
  }),
};

/** Values built to be expensive: huge exponents, huge digit strings, both, and near misses. */
const HOSTILE: readonly unknown[] = [
  '1e2147483647',
  '1e-2147483647',
  '9.999e2147483647',
  '1E2147483647',
  '1e99999999999999999999',
  '1e100',
  '-1e2147483647',
  '+1e2147483647',
  '1' + '0'.repeat(100_000),
  '0.' + '0'.repeat(100_000) + '1',
  '9'.repeat(1_000_000) + 'Ei',
  '1e' + '9'.repeat(100_000),
  '.' + '5'.repeat(50) + 'e99',
  '1.5e2147483647Gi',
  '1e2147483647e2147483647',
  // A number beyond int64 is no integer; a float is refused by type before any rule runs.
  1e300,
];

interface Timed {
  readonly field: string;
  readonly value: string;
  readonly operation: 'CREATE' | 'UPDATE';
  readonly ms: number;
  readonly status: number;
}

const short = (value: unknown): string => {
  const text = typeof value === 'string' ? value : String(value);
  return text.length > 24 ? `${text.slice(0, 12)}…(${String(text.length)} chars)` : text;
};

describe('hostile quantities against the CRD alone', () => {
  const kc = testKubeConfig();
  let namespace = '';
  const timings: Timed[] = [];
  let cpuBefore: number | undefined;
  let startedAt = 0;

  beforeAll(async () => {
    namespace = await createTestNamespace(kc, 'hostile-quantity');
    cpuBefore = apiserverCpuSeconds();
    startedAt = performance.now();
  });

  afterAll(async () => {
    const slowest = [...timings].sort((a, b) => b.ms - a.ms).slice(0, 5);
    const total = timings.reduce((sum, t) => sum + t.ms, 0);
    process.stderr.write(
      `[hostile-quantities] ${String(timings.length)} refused writes, ` +
        `mean ${(total / Math.max(timings.length, 1)).toFixed(1)} ms, slowest: ` +
        slowest
          .map((t) => `${t.operation} ${t.field}=${t.value} ${t.ms.toFixed(1)} ms`)
          .join('; ') +
        '\n',
    );
    const cpuAfter = apiserverCpuSeconds();
    if (cpuBefore !== undefined && cpuAfter !== undefined) {
      const wall = (performance.now() - startedAt) / 1000;
      // No work may linger once the answers are given (it used to run on for minutes).
      await new Promise((resolve) => setTimeout(resolve, 2_000));
      const settled = apiserverCpuSeconds() ?? cpuAfter;
      process.stderr.write(
        `[hostile-quantities] kube-apiserver used ${(cpuAfter - cpuBefore).toFixed(2)} CPU-s ` +
          `in ${wall.toFixed(1)} s of the suite, then ${(settled - cpuAfter).toFixed(2)} CPU-s ` +
          'in the 2 s after the last answer (other suites of the run included)\n',
      );
    }
    await deleteTestNamespace(kc, namespace);
  });

  const path = (name?: string): string =>
    resourcePath(NATS_API_VERSION, NATS_KIND, namespace, name);

  /** The status code of a write that must fail, and how long the answer took. */
  async function timedOnce(write: () => Promise<unknown>): Promise<{ ms: number; status: number }> {
    const started = performance.now();
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        reject(new Error('no answer within 10 s'));
      }, 10_000);
    });
    try {
      await Promise.race([write(), deadline]);
    } catch (error) {
      const ms = performance.now() - started;
      if (error instanceof KubeApiError) return { ms, status: error.status };
      throw error;
    } finally {
      clearTimeout(timer);
    }
    throw new Error('the apiserver accepted a hostile quantity');
  }

  /**
   * As timedOnce; a slow answer is asked once more and the faster one counts. An expensive input
   * is slow every time, while the other suites sharing these two cores make single answers slow
   * now and then.
   */
  async function timedRefusal(
    write: () => Promise<unknown>,
  ): Promise<{ ms: number; status: number }> {
    const first = await timedOnce(write);
    if (first.ms < ANSWER_BOUND_MS) return first;
    const second = await timedOnce(write);
    return second.ms < first.ms ? second : first;
  }

  const create = (name: string, spec: unknown): Promise<unknown> =>
    requestJson(kc, {
      method: 'POST',
      path: path(),
      body: { apiVersion: NATS_API_VERSION, kind: NATS_KIND, metadata: { name, namespace }, spec },
    });

  const patch = (name: string, spec: unknown): Promise<unknown> =>
    requestJson(kc, {
      method: 'PATCH',
      path: path(name),
      body: { spec },
      contentType: 'application/merge-patch+json',
    });

  it.each(Object.keys(FIELDS))(
    'refuses every hostile value of %s on CREATE at once',
    async (field) => {
      const build = FIELDS[field];
      if (build === undefined) throw new Error(field);
      for (const value of HOSTILE) {
        const { ms, status } = await timedRefusal(() => create('hostile', build(value)));
        timings.push({ field, value: short(value), operation: 'CREATE', ms, status });
        expect({ field, value: short(value), status }).toEqual({
          field,
          value: short(value),
          status: 422,
        });
        expect({ field, value: short(value), fast: ms < ANSWER_BOUND_MS }).toEqual({
          field,
          value: short(value),
          fast: true,
        });
      }
    },
  );

  // Both old-value cases of the transition rules: a stored real size, and none.
  it.each(Object.keys(FIELDS))(
    'refuses every hostile value of %s on UPDATE at once',
    async (field) => {
      const build = FIELDS[field];
      if (build === undefined) throw new Error(field);
      const name = `target-${field.replaceAll(/[^a-z]/g, '').slice(0, 40)}`;
      await create(name, { jetStream: { fileStorage: { size: '5Gi' } } });
      await create(`${name}-bare`, {});
      for (const target of [name, `${name}-bare`]) {
        for (const value of HOSTILE) {
          const { ms, status } = await timedRefusal(() => patch(target, build(value)));
          timings.push({ field, value: short(value), operation: 'UPDATE', ms, status });
          expect({ target, field, value: short(value), status }).toEqual({
            target,
            field,
            value: short(value),
            status: 422,
          });
          expect({ field, value: short(value), fast: ms < ANSWER_BOUND_MS }).toEqual({
            field,
            value: short(value),
            fast: true,
          });
        }
      }
    },
  );

  it('still stores every ordinary notation', async () => {
    const ordinary = ['1Gi', '512Mi', '1.5Gi', '1e9', '2G', '1073741824', '0.5Gi', '20Gi', '+1Gi'];
    for (const [i, size] of ordinary.entries()) {
      const created = (await create(`ordinary-${String(i)}`, {
        jetStream: { memStorage: { size }, fileStorage: { size } },
        resources: { limits: { cpu: '500m', memory: size }, requests: { cpu: '0.04' } },
      })) as { spec: { jetStream: { fileStorage: { size: unknown } } } };
      expect(created.spec.jetStream.fileStorage.size).toBe(size);
    }
  });
});
