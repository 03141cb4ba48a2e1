// Which cluster the manager talks to: KUBECONFIG, else the pod's service account, else an
// embedded local control plane so that `npm start` works on a laptop with nothing configured.
// ~/.kube/config is deliberately not picked up implicitly: a newcomer's first `npm start` must
// never act on whatever cluster that file happens to point at.
import { existsSync } from 'node:fs';
import {
  inClusterAccess,
  loadKubeconfig,
  readKubeconfig,
  type ClusterAccess,
} from '../kube/kubeconfig.ts';
import type { LocalPlane } from '../localplane/plane.ts';

const SERVICE_ACCOUNT_TOKEN = '/var/run/secrets/kubernetes.io/serviceaccount/token';

export type ClusterSource = 'kubeconfig' | 'in-cluster' | 'embedded';

export interface Cluster {
  readonly kc: ClusterAccess;
  readonly source: ClusterSource;
  /** Set when the embedded plane was started; stop it on shutdown. */
  readonly plane?: LocalPlane;
}

export class NotInClusterError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'NotInClusterError';
  }
}

/**
 * `inCluster` (the manager's `--in-cluster`) says the manager runs as a pod: then only the
 * service account will do, and without it the answer is an error, never an embedded plane.
 */
export function clusterSource(
  env: NodeJS.ProcessEnv,
  tokenExists: boolean,
  inCluster = false,
): ClusterSource {
  if (inCluster) {
    const host = env.KUBERNETES_SERVICE_HOST;
    if (host === undefined || host === '' || !tokenExists) {
      throw new NotInClusterError(
        `--in-cluster is set, but ${host === undefined || host === '' ? 'KUBERNETES_SERVICE_HOST is not set' : `there is no service account token at ${SERVICE_ACCOUNT_TOKEN}`}` +
          ' (is automountServiceAccountToken off?)',
      );
    }
    return 'in-cluster';
  }
  if (env.KUBECONFIG !== undefined && env.KUBECONFIG !== '') return 'kubeconfig';
  if (env.KUBERNETES_SERVICE_HOST !== undefined && tokenExists) return 'in-cluster';
  return 'embedded';
}

export async function connectCluster(
  env: NodeJS.ProcessEnv = process.env,
  inCluster = false,
): Promise<Cluster> {
  const source = clusterSource(env, existsSync(SERVICE_ACCOUNT_TOKEN), inCluster);
  switch (source) {
    case 'kubeconfig':
      return { kc: await loadKubeconfig(env), source };
    case 'in-cluster':
      return { kc: inClusterAccess(env), source };
    case 'embedded': {
      // Loaded only here: the in-cluster image leaves the local plane out (see build-image.ts).
      const [{ startLocalPlane }, { resolveClusterNames }] = await Promise.all([
        import('../localplane/plane.ts'),
        import('../localplane/cluster-dns.ts'),
      ]).catch((error: unknown) => {
        throw new NotInClusterError(
          'no cluster configured (KUBECONFIG, or a pod with --in-cluster), and this build has no embedded plane',
          { cause: error },
        );
      });
      // Killed parts of the plane come back, as they would under a kubelet. A worker node joins
      // where the host can run one (the plane logs which, and why not); NATS_MANAGER_LOCAL_NODE=off
      // leaves it out.
      const plane = await startLocalPlane({
        restartOnExit: true,
        node: env.NATS_MANAGER_LOCAL_NODE === 'off' ? false : 'auto',
      });
      // The manager then reaches NATS by its Service's cluster name, as in a cluster.
      if (plane.node !== undefined)
        resolveClusterNames(plane.node.clusterDns, plane.node.clusterDomain);
      const kc = readKubeconfig(plane.kubeconfigPath);
      if (kc === undefined)
        throw new Error(`${plane.kubeconfigPath} is not a client-certificate kubeconfig`);
      return { kc, source, plane };
    }
  }
}
