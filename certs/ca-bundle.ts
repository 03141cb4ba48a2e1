// Writes the CA bundle into the webhook configurations, so that API servers trust the serving
// certificate. The manager calls it on start and after every rotation; every replica may, so it
// writes only when a webhook's caBundle differs, and with the resourceVersion it read.
import type { KubeObject } from '../src/base/object.ts';
import type { KubeClient } from '../src/kube/client.ts';
import { isApiStatus } from '../src/kube/transport.ts';

export interface WebhookConfigurationNames {
  readonly mutating: readonly string[];
  readonly validating: readonly string[];
}

interface Webhook {
  clientConfig?: { caBundle?: string; [key: string]: unknown };
  [key: string]: unknown;
}

const API_VERSION = 'admissionregistration.k8s.io/v1';
const MAX_WRITE_ATTEMPTS = 5;

/** The configuration with every webhook's caBundle set; `undefined` when it already is. */
export function withCaBundle(configuration: KubeObject, caBundle: string): KubeObject | undefined {
  const webhooks = (configuration.webhooks ?? []) as Webhook[];
  if (webhooks.every((webhook) => webhook.clientConfig?.caBundle === caBundle)) return undefined;
  return {
    ...configuration,
    webhooks: webhooks.map((webhook) => ({
      ...webhook,
      clientConfig: { ...webhook.clientConfig, caBundle },
    })),
  };
}

/** The caBundle value for `caPem`. An empty one is refused: every API server would distrust it. */
function encodedBundle(caPem: string): string {
  if (caPem.trim() === '') throw new Error('refusing to inject an empty CA bundle');
  return Buffer.from(caPem, 'utf8').toString('base64');
}

/** Whether every webhook of `configuration` already trusts `caPem`: nothing to write. */
export function hasCaBundle(configuration: KubeObject, caPem: string): boolean {
  return withCaBundle(configuration, encodedBundle(caPem)) === undefined;
}

/** Sets the bundle on one configuration; resolves to whether it wrote. */
async function injectInto(
  client: KubeClient,
  kind: string,
  name: string,
  caBundle: string,
): Promise<boolean> {
  for (let attempt = 1; ; attempt++) {
    const current = await client.get({ apiVersion: API_VERSION, kind, name });
    if (current === undefined) throw new Error(`${kind} ${name} does not exist`);
    const updated = withCaBundle(current, caBundle);
    if (updated === undefined) return false;
    try {
      await client.update(updated);
      return true;
    } catch (error) {
      // Another writer got in between (often another replica with the same bundle): re-read.
      if (!isApiStatus(error, 409) || attempt >= MAX_WRITE_ATTEMPTS) throw error;
    }
  }
}

/**
 * Puts `caPem` into every webhook of the named configurations. Resolves to the configurations it
 * changed, as `Kind/name`; a missing configuration is an error, since its webhooks would fail.
 */
export async function injectCaBundle(
  client: KubeClient,
  caPem: string,
  names: WebhookConfigurationNames,
): Promise<string[]> {
  const caBundle = encodedBundle(caPem);
  const targets = [
    ...names.mutating.map((name) => ['MutatingWebhookConfiguration', name] as const),
    ...names.validating.map((name) => ['ValidatingWebhookConfiguration', name] as const),
  ];
  const written = await Promise.all(
    targets.map(async ([kind, name]) => {
      try {
        return (await injectInto(client, kind, name, caBundle)) ? `${kind}/${name}` : undefined;
      } catch (error) {
        throw new Error(`cannot write the CA bundle into ${kind} ${name}`, { cause: error });
      }
    }),
  );
  return written.filter((entry) => entry !== undefined);
}
