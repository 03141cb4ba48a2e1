// The webhook configurations in deploy/webhooks are the single description of what the API
// server sends us. Off-cluster (the embedded plane, tests) the API server cannot reach a
// Service, so the same manifests are installed with a url clientConfig instead, the way
// envtest does it.
import { readFileSync } from 'node:fs';
import { load } from 'js-yaml';
import type { KubeObject } from '../kube/api.ts';
import { CHILD_KINDS } from '../render/children.ts';

const DEPLOY_WEBHOOKS = new URL('../../deploy/webhooks/', import.meta.url);

export const MUTATING_CONFIGURATION = 'nats-manager-mutating';
export const VALIDATING_CONFIGURATION = 'nats-manager-validating';

interface ClientConfig {
  service?: { name: string; namespace: string; path?: string; port?: number };
  url?: string;
  caBundle?: string;
}

export interface MatchCondition {
  name: string;
  expression: string;
}

interface Webhook {
  name: string;
  clientConfig: ClientConfig;
  namespaceSelector?: { matchLabels?: Record<string, string> };
  matchConditions?: MatchCondition[];
  [key: string]: unknown;
}

export const CHILD_NAME_CONDITION = 'child-name';

/**
 * The guard entry's condition: the API server sends it an object only when the object bears the
 * name of a child of `natsName`. Squatting needs a child's name; every other object created in
 * the NATS namespace is none of the manager's business, and without the condition each of them
 * waited for a webhook call (up to its 5 s timeout while the manager is slow).
 */
export function childNameCondition(natsName: string): MatchCondition {
  const names = [...new Set(CHILD_KINDS.map((child) => child.name(natsName)))].toSorted();
  // Child names are DNS labels: as JSON strings they are CEL string literals.
  return {
    name: CHILD_NAME_CONDITION,
    expression: `object.metadata.name in ${JSON.stringify(names)}`,
  };
}

export interface WebhookConfiguration extends KubeObject {
  webhooks: Webhook[];
}

export function loadWebhookConfigurations(): WebhookConfiguration[] {
  return ['mutating-webhook-configuration.yaml', 'validating-webhook-configuration.yaml'].map(
    (file) => load(readFileSync(new URL(file, DEPLOY_WEBHOOKS), 'utf8')) as WebhookConfiguration,
  );
}

export interface WebhookTarget {
  /** Where the API server reaches the webhook server, e.g. `https://127.0.0.1:9443`; none keeps the Service. */
  readonly baseUrl?: string;
  readonly caPem: string;
  /** The namespace of the served NATS resource, for the entry that selects by namespace. */
  readonly natsNamespace: string;
  /** The served NATS resource's name, for the entry that selects its children's names. */
  readonly natsName: string;
}

const NAMESPACE_LABEL = 'kubernetes.io/metadata.name';

/** The configurations as they should be in the cluster: caBundle set, addressing adapted. Pure. */
export function desiredWebhookConfigurations(
  configurations: readonly WebhookConfiguration[],
  target: WebhookTarget,
): WebhookConfiguration[] {
  const caBundle = Buffer.from(target.caPem).toString('base64');
  return configurations.map((configuration) => ({
    ...configuration,
    webhooks: configuration.webhooks.map((webhook) => {
      const { service } = webhook.clientConfig;
      const clientConfig: ClientConfig =
        target.baseUrl !== undefined && service !== undefined
          ? { url: `${target.baseUrl}${service.path ?? '/'}`, caBundle }
          : { ...webhook.clientConfig, caBundle };
      const namespaceLabel = webhook.namespaceSelector?.matchLabels?.[NAMESPACE_LABEL];
      const { matchConditions } = webhook;
      return {
        ...webhook,
        clientConfig,
        ...(matchConditions === undefined
          ? {}
          : {
              matchConditions: matchConditions.map((condition) =>
                condition.name === CHILD_NAME_CONDITION
                  ? childNameCondition(target.natsName)
                  : condition,
              ),
            }),
        ...(namespaceLabel === undefined
          ? {}
          : {
              namespaceSelector: {
                ...webhook.namespaceSelector,
                matchLabels: {
                  ...webhook.namespaceSelector?.matchLabels,
                  [NAMESPACE_LABEL]: target.natsNamespace,
                },
              },
            }),
      };
    }),
  }));
}
