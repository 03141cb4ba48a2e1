import { ConfigError, parseConfig } from '../../src/manager/config.ts';
import { DEFAULT_IMAGES } from '../../src/render/context.ts';

describe('manager configuration', () => {
  it('defaults to the upstream names', () => {
    const config = parseConfig([], {});
    expect(config).toMatchObject({
      natsName: 'eventing-nats',
      natsNamespace: 'kyma-system',
      images: DEFAULT_IMAGES,
      managerUsername: 'system:serviceaccount:kyma-system:nats-manager',
      webhookPort: 9443,
      metricsAddress: ':8080',
      probeAddress: ':8081',
      certificateMode: 'secret',
      leaderElect: false,
      breakGlassUsers: [],
    });
  });

  it('takes environment variables, and flags over them', () => {
    const env = { NATS_CR_NAME: 'from-env', NATS_CR_NAMESPACE: 'ns', BREAK_GLASS_GROUPS: 'a, b,,' };
    const config = parseConfig(
      ['--nats-cr-name=from-flag', '--leader-elect', '--webhook-port', '10443'],
      env,
    );
    expect(config.natsName).toBe('from-flag');
    expect(config.natsNamespace).toBe('ns');
    expect(config.breakGlassGroups).toEqual(['a', 'b']);
    expect(config.leaderElect).toBe(true);
    expect(config.webhookPort).toBe(10443);
  });

  it.each([
    [['--no-such-flag'], 'unknown flag --no-such-flag'],
    [['--webhook-port=99999'], '--webhook-port: "99999" is not a port number (0-65535)'],
    [['--leader-elect=yes'], '--leader-elect: "yes" is neither true nor false'],
    [['--cert-mode=magic'], '--cert-mode: "magic" must be "secret" or "files"'],
    [['stray'], 'unexpected argument "stray"'],
  ])('refuses %j with a clear message', (argv, message) => {
    expect(() => parseConfig(argv, {})).toThrow(ConfigError);
    expect(() => parseConfig(argv, {})).toThrow(message);
  });
});
