// What a scheduler and kubelets would do for the StatefulSet's pods, on a plane that has neither:
// bind each pod to a node (one per zone) and report it ready. The StatefulSet controller then
// writes the rolled-out status itself.
import type * as k8s from '@kubernetes/client-node';
import { kubeTime, requestJson, type KubeObject } from '../../src/kube/api.ts';
import { eventually } from './kube.ts';

async function listPods(kc: k8s.KubeConfig, namespace: string): Promise<KubeObject[]> {
  const list = (await requestJson(kc, {
    method: 'GET',
    path: `/api/v1/namespaces/${namespace}/pods`,
  })) as { items: KubeObject[] };
  return list.items;
}

/** Creates a node per zone (unique to the namespace) and returns their names. */
export async function createZoneNodes(
  kc: k8s.KubeConfig,
  namespace: string,
  zones: readonly string[],
): Promise<string[]> {
  const names: string[] = [];
  for (const zone of zones) {
    const name = `${namespace}-node-${zone}`;
    await requestJson(kc, {
      method: 'POST',
      path: '/api/v1/nodes',
      body: {
        apiVersion: 'v1',
        kind: 'Node',
        metadata: { name, labels: { 'topology.kubernetes.io/zone': zone } },
      },
    });
    names.push(name);
  }
  return names;
}

/** Waits for `count` pods, binds pod i to nodes[i % nodes.length] and marks each ready. */
export async function runPods(
  kc: k8s.KubeConfig,
  namespace: string,
  count: number,
  nodes: readonly string[],
): Promise<void> {
  const pods = await eventually(`${String(count)} pods`, async () => {
    const list = await listPods(kc, namespace);
    return list.length === count ? list : undefined;
  });
  for (const [index, pod] of pods.entries()) {
    const podName = pod.metadata.name ?? '';
    await requestJson(kc, {
      method: 'POST',
      path: `/api/v1/namespaces/${namespace}/pods/${podName}/binding`,
      body: {
        apiVersion: 'v1',
        kind: 'Binding',
        metadata: { name: podName },
        target: { apiVersion: 'v1', kind: 'Node', name: nodes[index % nodes.length] },
      },
    });
    const now = kubeTime(new Date());
    await requestJson(kc, {
      method: 'PATCH',
      path: `/api/v1/namespaces/${namespace}/pods/${podName}/status`,
      body: {
        status: {
          phase: 'Running',
          conditions: [{ type: 'Ready', status: 'True', lastTransitionTime: now }],
        },
      },
      contentType: 'application/merge-patch+json',
    });
  }
}
