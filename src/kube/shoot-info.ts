// The cloud provider, as Gardener publishes it in ConfigMap kube-system/shoot-info (key
// `provider`); the Go manager reads it once at start, for the provider's file-storage default.
import { SHOOT_INFO } from '../api/storage.ts';
import type { KubeClient } from './client.ts';
import { KubeApiError } from './transport.ts';

/**
 * The provider, or undefined where the cluster does not say (no ConfigMap, no key, or no right
 * to read it: every cluster that is not a Gardener shoot).
 */
export async function readProvider(client: KubeClient): Promise<string | undefined> {
  try {
    const configMap = await client.get<{ data?: Record<string, unknown> }>({
      apiVersion: 'v1',
      kind: 'ConfigMap',
      namespace: SHOOT_INFO.namespace,
      name: SHOOT_INFO.name,
    });
    const provider = configMap?.data?.[SHOOT_INFO.key];
    return typeof provider === 'string' && provider !== '' ? provider : undefined;
  } catch (error) {
    if (error instanceof KubeApiError && error.status === 403) return undefined;
    throw error;
  }
}
