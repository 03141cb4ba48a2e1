import {
  desiredWebhookConfigurations,
  loadWebhookConfigurations,
} from '../../src/manager/webhook-configurations.ts';

const CA = '-----BEGIN CERTIFICATE-----\nabc\n-----END CERTIFICATE-----\n';

describe('webhook configurations', () => {
  const deployed = loadWebhookConfigurations();

  it('come from deploy/webhooks: one mutating, one validating with three webhooks', () => {
    expect(deployed.map((c) => [c.kind, c.webhooks.length])).toEqual([
      ['MutatingWebhookConfiguration', 1],
      ['ValidatingWebhookConfiguration', 3],
    ]);
  });

  it('in a cluster keep the Service and get the CA bundle', () => {
    const [mutating] = desiredWebhookConfigurations(deployed, {
      caPem: CA,
      natsNamespace: 'kyma-system',
      natsName: 'eventing-nats',
    });
    expect(mutating?.webhooks[0]?.clientConfig).toEqual({
      service: {
        name: 'nats-manager-webhook',
        namespace: 'kyma-system',
        path: '/mutate-nats',
        port: 443,
      },
      caBundle: Buffer.from(CA).toString('base64'),
    });
  });

  it('off-cluster point at the local server by url, path kept', () => {
    const desired = desiredWebhookConfigurations(deployed, {
      baseUrl: 'https://127.0.0.1:9443',
      caPem: CA,
      natsNamespace: 'kyma-system',
      natsName: 'eventing-nats',
    });
    const urls = desired.flatMap((c) => c.webhooks.map((w) => w.clientConfig.url));
    expect(urls).toEqual([
      'https://127.0.0.1:9443/mutate-nats',
      'https://127.0.0.1:9443/validate-nats',
      'https://127.0.0.1:9443/protect-children',
      'https://127.0.0.1:9443/protect-children',
    ]);
    expect(desired.flatMap((c) => c.webhooks.map((w) => w.clientConfig.service))).toEqual([
      undefined,
      undefined,
      undefined,
      undefined,
    ]);
  });

  it('select the configured NATS namespace where an entry selects by namespace name', () => {
    const desired = desiredWebhookConfigurations(deployed, {
      caPem: CA,
      natsNamespace: 'messaging',
      natsName: 'eventing-nats',
    });
    const guard = desired[1]?.webhooks.find((w) => w.name.startsWith('guard.'));
    expect(guard?.namespaceSelector).toEqual({
      matchLabels: { 'kubernetes.io/metadata.name': 'messaging' },
    });
    // The deployed objects are not changed in place.
    expect(
      deployed[1]?.webhooks.find((w) => w.name.startsWith('guard.'))?.namespaceSelector,
    ).toEqual({
      matchLabels: { 'kubernetes.io/metadata.name': 'kyma-system' },
    });
  });

  it("send the guard only objects bearing a child's name, the configured resource's", () => {
    const guardOf = (configurations: typeof deployed) =>
      configurations[1]?.webhooks.find((w) => w.name.startsWith('guard.'));
    expect(guardOf(deployed)?.matchConditions).toEqual([
      {
        name: 'child-name',
        expression:
          'object.metadata.name in ["eventing-nats","eventing-nats-config","eventing-nats-secret"]',
      },
    ]);
    const desired = desiredWebhookConfigurations(deployed, {
      caPem: CA,
      natsNamespace: 'kyma-system',
      natsName: 'orders',
    });
    expect(guardOf(desired)?.matchConditions).toEqual([
      {
        name: 'child-name',
        expression:
          'object.metadata.name in ["orders-nats","orders-nats-config","orders-nats-secret"]',
      },
    ]);
    // The other entries select by label, not by name.
    expect(desired[1]?.webhooks.filter((w) => w.matchConditions !== undefined)).toHaveLength(1);
  });
});
