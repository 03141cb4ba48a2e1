// `node --import .../cluster-dns-preload.ts`: resolveClusterNames() for a whole process, from
// NATS_MANAGER_CLUSTER_DNS (the node's DNS address) and CLUSTER_DOMAIN. Lets a manager process
// run on the host beside the local node reach NATS by its Service's cluster name.
import { resolveClusterNames } from './cluster-dns.ts';

const server = process.env.NATS_MANAGER_CLUSTER_DNS;
if (server !== undefined && server !== '') {
  resolveClusterNames(server, process.env.CLUSTER_DOMAIN ?? 'cluster.local');
}
