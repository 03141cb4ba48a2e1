// The manager's log lines: JSON on one line each, the level threshold, errors with their stack
// and causes, and the fields of every enclosing logger on each line.
import { jsonLogger, setLogLevel } from '../../src/base/log.ts';

function capture(): { lines: () => Record<string, unknown>[]; write: (line: string) => void } {
  const raw: string[] = [];
  return {
    write: (line) => raw.push(line),
    lines: () =>
      raw
        .join('')
        .split('\n')
        .filter((line) => line !== '')
        .map((line) => JSON.parse(line) as Record<string, unknown>),
  };
}

describe('jsonLogger', () => {
  afterEach(() => {
    setLogLevel('info');
  });

  it('writes one JSON object a line with ts, level, msg and the fields', () => {
    const out = capture();
    jsonLogger({ logger: 'manager' }, out.write).info('connected', { server: 'https://x' });
    const [line] = out.lines();
    expect(line).toMatchObject({
      level: 'info',
      msg: 'connected',
      logger: 'manager',
      server: 'https://x',
    });
    expect(new Date(String(line?.ts)).toISOString()).toBe(line?.ts);
  });

  it('carries the fields of every enclosing logger, e.g. the resource of a reconcile', () => {
    const out = capture();
    const reconcile = jsonLogger({ logger: 'manager' }, out.write).with({
      namespace: 'kyma-system',
      name: 'eventing-nats',
    });
    reconcile.info('status written');
    reconcile.with({ child: 'ConfigMap/x' }).error('child write failed');
    for (const line of out.lines()) {
      expect(line).toMatchObject({
        logger: 'manager',
        namespace: 'kyma-system',
        name: 'eventing-nats',
      });
    }
    expect(out.lines()).toHaveLength(2);
  });

  it('keeps the stack and the chain of causes of an error', () => {
    const out = capture();
    const cause = new Error('connect ECONNREFUSED 10.96.0.1:443');
    jsonLogger({}, out.write).error('reconcile failed', {
      error: new Error('listing StatefulSets', { cause }),
    });
    const error = out.lines()[0]?.error as Record<string, unknown>;
    expect(error.message).toBe('listing StatefulSets');
    expect(String(error.stack)).toContain('log.test.ts');
    expect((error.cause as Record<string, unknown>).message).toBe(cause.message);
  });

  it('drops lines below the level set, for loggers made before it was set', () => {
    const out = capture();
    const log = jsonLogger({}, out.write);
    setLogLevel('error');
    log.info('not written');
    log.error('written');
    setLogLevel('debug');
    log.info('written too');
    expect(out.lines().map((line) => line.msg)).toEqual(['written', 'written too']);
  });
});
