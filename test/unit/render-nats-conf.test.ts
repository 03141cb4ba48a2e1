import { defaultNatsSpec } from '../../src/api/defaults.ts';
import type { NatsSpec } from '../../src/api/nats.ts';
import { DEFAULT_IMAGES, type RenderContext, type RenderInput } from '../../src/render/context.ts';
import { quoteConfString, renderNatsConf, renderResolverConf } from '../../src/render/nats-conf.ts';
import { generateSystemAccountPassword } from '../../src/render/password.ts';

const context: RenderContext = {
  istioPresent: false,
  systemAccountPassword: 'secret',
  images: DEFAULT_IMAGES,
  clusterDomain: 'cluster.local',
};

function input(spec: NatsSpec = {}, name = 'eventing-nats'): RenderInput {
  return { name, namespace: 'kyma-system', uid: 'uid-1', spec: defaultNatsSpec(spec) };
}

function render(spec: NatsSpec = {}, name?: string): string {
  return renderNatsConf(input(spec, name), context);
}

/** The lines of a top-level `<name> { ... }` block, without the braces. */
function block(conf: string, name: string): string[] | undefined {
  const match = new RegExp(`^${name} \\{\\n([\\s\\S]*?)\\n\\}$`, 'm').exec(conf);
  return match?.[1]?.split('\n');
}

function topLevelLine(conf: string, key: string): string | undefined {
  return conf.split('\n').find((line) => line.startsWith(`${key}:`) || line.startsWith(`${key} `));
}

describe('renderNatsConf', () => {
  test('a single server: client, monitor, pid, name and lame duck settings, no cluster', () => {
    const conf = render({ cluster: { size: 1 } });
    expect(conf.split('\n')).toEqual(
      expect.arrayContaining([
        'port: 4222',
        'http_port: 8222',
        'pid_file: "/var/run/nats/nats.pid"',
        'server_name: $SERVER_NAME',
        'lame_duck_grace_period: "10s"',
        'lame_duck_duration: "120s"',
        'include "../nats-secret/resolver.conf"',
      ]),
    );
    expect(block(conf, 'cluster')).toBeUndefined();
    expect(conf).not.toMatch(/cluster|routes|6222/);
    expect(conf.endsWith('\n')).toBe(true);
  });

  test('defaults: three routes to the stable pod names, advertise and retries', () => {
    expect(block(render(), 'cluster')).toEqual([
      '  name: "eventing-nats"',
      '  port: 6222',
      '  routes: [',
      '    "nats://eventing-nats-0.eventing-nats.kyma-system.svc.cluster.local:6222"',
      '    "nats://eventing-nats-1.eventing-nats.kyma-system.svc.cluster.local:6222"',
      '    "nats://eventing-nats-2.eventing-nats.kyma-system.svc.cluster.local:6222"',
      '  ]',
      '  cluster_advertise: $CLUSTER_ADVERTISE',
      '  connect_retries: 120',
    ]);
  });

  test('five servers: a route to every pod, named after the object name, not the CR name', () => {
    const routes = block(render({ cluster: { size: 5 } }, 'broker'), 'cluster')?.filter((line) =>
      line.includes('nats://'),
    );
    expect(routes).toEqual(
      [0, 1, 2, 3, 4].map(
        (i) =>
          `    "nats://broker-nats-${String(i)}.broker-nats.kyma-system.svc.cluster.local:6222"`,
      ),
    );
    expect(block(render({ cluster: { size: 5 } }, 'broker'), 'cluster')?.[0]).toBe(
      '  name: "broker-nats"',
    );
  });

  test('routes use the cluster domain from the context', () => {
    const conf = renderNatsConf(input(), { ...context, clusterDomain: 'example.internal' });
    expect(conf).toContain('eventing-nats-0.eventing-nats.kyma-system.svc.example.internal:6222');
  });

  test('jetstream: memory store 1Gi, store dir, and a file store 256Mi below the 1Gi claim', () => {
    expect(block(render(), 'jetstream')).toEqual([
      '  max_memory_store: 1073741824',
      '  store_dir: "/data"',
      '  max_file_store: 805306368',
    ]);
  });

  test('jetstream without memory storage limits the memory store to 0', () => {
    const conf = render({ jetStream: { memStorage: { enabled: false, size: '2Gi' } } });
    expect(block(conf, 'jetstream')).toEqual([
      '  max_memory_store: 0',
      '  store_dir: "/data"',
      '  max_file_store: 805306368',
    ]);
  });

  test.each([
    ['1Gi', '1073741824'],
    ['1.5Gi', '1610612736'],
    ['500M', '500000000'],
    ['1e9', '1000000000'],
    [2147483648, '2147483648'],
    ['100Ti', '109951162777600'],
    ['9223372036854775807', '9223372036854775807'],
  ])('memory size %p is written as exactly %s bytes', (size, bytes) => {
    const conf = render({ jetStream: { memStorage: { enabled: true, size } } });
    expect(block(conf, 'jetstream')?.[0]).toBe(`  max_memory_store: ${bytes}`);
  });

  // Headroom: 10% of the claim, at least 256Mi, at most 25% of the claim.
  test.each([
    ['1Gi', '805306368'], // 1Gi - 256Mi (the floor)
    ['1.5Gi', '1342177280'], // 1.5Gi - 256Mi
    ['2560Mi', '2415919104'], // 2.5Gi - 256Mi: the 10% and the floor meet
    ['20Gi', '19327352832'], // 20Gi - 2Gi (10%)
    ['500M', '375000000'], // 75%: the floor would take more than a quarter
    ['1e9', '750000000'],
    [2147483648, '1879048192'], // 2Gi - 256Mi
    ['100Ti', '98956046499840'], // 90%
    ['9223372036854775807', '8301034833169298226'], // 90%, the 10% rounded up
  ])('file storage %p gets max_file_store %s bytes, below the claim', (size, bytes) => {
    const conf = render({ jetStream: { fileStorage: { size } } });
    expect(block(conf, 'jetstream')?.[2]).toBe(`  max_file_store: ${bytes}`);
  });

  test.each(['9223372036854775808', '1e19', '-1Gi'])(
    'size %p that nats-server cannot hold is refused',
    (size) => {
      expect(() => render({ jetStream: { fileStorage: { size } } })).toThrow(RangeError);
    },
  );

  test('debug and trace lines appear only when set', () => {
    const plain = render();
    expect(plain).not.toMatch(/debug|trace/);
    expect(topLevelLine(render({ logging: { debug: true } }), 'debug')).toBe('debug: true');
    expect(render({ logging: { debug: true } })).not.toContain('trace');
    expect(topLevelLine(render({ logging: { trace: true } }), 'trace')).toBe('trace: true');
    expect(render({ logging: { trace: true } })).not.toContain('debug');
    const both = render({ logging: { debug: true, trace: true } });
    expect([topLevelLine(both, 'debug'), topLevelLine(both, 'trace')]).toEqual([
      'debug: true',
      'trace: true',
    ]);
  });

  test('is deterministic and leaves its input alone', () => {
    const given = input({ cluster: { size: 5 }, logging: { debug: true } });
    const before = JSON.stringify(given);
    const first = renderNatsConf(given, context);
    expect(renderNatsConf(given, context)).toBe(first);
    expect(renderNatsConf(JSON.parse(before) as RenderInput, context)).toBe(first);
    expect(JSON.stringify(given)).toBe(before);
  });

  test('only the spec, names and cluster domain matter, not images or the password', () => {
    const other: RenderContext = {
      ...context,
      istioPresent: true,
      systemAccountPassword: 'other',
      images: { nats: 'a', configReloader: 'b', metricsExporter: 'c' },
    };
    expect(renderNatsConf(input(), other)).toBe(render());
  });
});

describe('renderResolverConf', () => {
  test('declares $SYS with the admin user, the system account and the MEMORY resolver', () => {
    expect(renderResolverConf('p4ssw0rd').split('\n')).toEqual(
      expect.arrayContaining([
        'accounts: {',
        '  "$SYS": {',
        '      { user: "admin", password: "p4ssw0rd" }',
        'system_account: "$SYS"',
        'resolver: MEMORY',
      ]),
    );
  });

  test('a password cannot break out of its string', () => {
    const conf = renderResolverConf('a"b\\c\n}$X #é');
    const line = conf.split('\n').find((l) => l.includes('user:'));
    expect(line).toBe(
      '      { user: "admin", password: "a\\x22b\\x5cc\\x0a\\x7d$X\\x20\\x23\\xc3\\xa9" }',
    );
  });

  test('refuses an empty password', () => {
    expect(() => renderResolverConf('')).toThrow(RangeError);
  });
});

describe('quoteConfString', () => {
  test('keeps plain text and escapes every other byte', () => {
    expect(quoteConfString('nats://a-0.b.c.svc:6222')).toBe('"nats://a-0.b.c.svc:6222"');
    expect(quoteConfString('')).toBe('""');
    expect(quoteConfString('\t"\'')).toBe('"\\x09\\x22\\x27"');
  });
});

describe('generateSystemAccountPassword', () => {
  test('60 characters of [A-Za-z0-9], different each time', () => {
    const first = generateSystemAccountPassword();
    expect(first).toMatch(/^[A-Za-z0-9]{60}$/);
    expect(generateSystemAccountPassword()).not.toBe(first);
  });

  test('maps bytes evenly and skips the ones that would bias it', () => {
    // 248..255 are skipped; 0 -> 'A', 61 -> '9', 62 -> 'A' again.
    const bytes = [255, 248, 0, 61, 62, ...Array<number>(100).fill(25)];
    let offset = 0;
    const source = (size: number): Uint8Array => {
      const chunk = Uint8Array.from(bytes.slice(offset, offset + size));
      offset += size;
      return chunk;
    };
    expect(generateSystemAccountPassword(source)).toBe(`A9A${'Z'.repeat(57)}`);
  });
});
