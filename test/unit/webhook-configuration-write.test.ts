// What the manager reads and writes to keep its webhook configurations in place in a cluster, on
// every certificate check: nothing but one read when the CA bundle is already there.
import { createFakeKubeClient } from '../../src/kube/fake.ts';
import { writeConfiguration } from '../../src/manager/admission.ts';
import { loadWebhookConfigurations } from '../../src/manager/webhook-configurations.ts';

const CA_PEM = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';
const IN_CLUSTER = { offCluster: false, caPem: CA_PEM, injectCa: true };

function validating(): ReturnType<typeof loadWebhookConfigurations>[number] {
  const configuration = loadWebhookConfigurations().find(
    (c) => c.kind === 'ValidatingWebhookConfiguration',
  );
  if (configuration === undefined) throw new Error('no validating configuration in deploy/');
  return configuration;
}

describe('writeConfiguration in a cluster', () => {
  it('writes the CA bundle once, then only reads on later checks', async () => {
    const client = createFakeKubeClient();
    client.put(validating());
    await writeConfiguration(client, validating(), IN_CLUSTER);
    expect(client.calls.map((call) => call.verb)).toEqual(['get', 'get', 'update']);
    const stored = client.stored({
      apiVersion: 'admissionregistration.k8s.io/v1',
      kind: 'ValidatingWebhookConfiguration',
      name: String(validating().metadata.name),
    });
    const caBundle = Buffer.from(CA_PEM).toString('base64');
    const webhooks = stored?.webhooks as { clientConfig?: { caBundle?: string } }[] | undefined;
    expect(webhooks?.every((w) => w.clientConfig?.caBundle === caBundle)).toBe(true);

    client.calls.length = 0;
    await writeConfiguration(client, validating(), IN_CLUSTER);
    await writeConfiguration(client, validating(), IN_CLUSTER);
    expect(client.calls.map((call) => call.verb)).toEqual(['get', 'get']);
  });

  it('creates a deleted configuration again from the manifest', async () => {
    const client = createFakeKubeClient();
    await writeConfiguration(client, validating(), IN_CLUSTER);
    expect(client.calls.map((call) => call.verb)).toEqual(['get', 'create']);
  });

  it('still refuses an empty CA bundle rather than call it in place', async () => {
    const client = createFakeKubeClient();
    client.put(validating());
    await expect(
      writeConfiguration(client, validating(), { ...IN_CLUSTER, caPem: ' ' }),
    ).rejects.toThrow(/empty CA bundle/);
  });
});
