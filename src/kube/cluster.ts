// Which cluster the manager talks to: KUBECONFIG, else the pod's service account, else an
// embedded local control plane so that `npm start` works on a laptop with nothing configured.
// ~/.kube/config is deliberately not picked up implicitly: a newcomer's first `npm start` must
// never act on whatever cluster that file happens to point at.
import { existsSync } from 'node:fs';
import * as k8s from '@kubernetes/client-node';
import { startLocalPlane, type LocalPlane } from '../localplane/plane.ts';

const SERVICE_ACCOUNT_TOKEN = '/var/run/secrets/kubernetes.io/serviceaccount/token';

export type ClusterSource = 'kubeconfig' | 'in-cluster' | 'embedded';

export interface Cluster {
  readonly kc: k8s.KubeConfig;
  readonly source: ClusterSource;
  /** Set when the embedded plane was started; stop it on shutdown. */
  readonly plane?: LocalPlane;
}

export function clusterSource(env: NodeJS.ProcessEnv, tokenExists: boolean): ClusterSource {
  if (env.KUBECONFIG !== undefined && env.KUBECONFIG !== '') return 'kubeconfig';
  if (env.KUBERNETES_SERVICE_HOST !== undefined && tokenExists) return 'in-cluster';
  return 'embedded';
}

export async function connectCluster(env: NodeJS.ProcessEnv = process.env): Promise<Cluster> {
  const kc = new k8s.KubeConfig();
  const source = clusterSource(env, existsSync(SERVICE_ACCOUNT_TOKEN));
  switch (source) {
    case 'kubeconfig':
      kc.loadFromDefault();
      return { kc, source };
    case 'in-cluster':
      kc.loadFromCluster();
      return { kc, source };
    case 'embedded': {
      // Killed parts of the plane come back, as they would under a kubelet.
      const plane = await startLocalPlane({ restartOnExit: true });
      kc.loadFromFile(plane.kubeconfigPath);
      return { kc, source, plane };
    }
  }
}
