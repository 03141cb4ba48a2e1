// `npm run plane`: the embedded local control plane alone, prepared as for the manager, until
// Ctrl-C. The manager then runs against it as a separate process (KUBECONFIG=...), so it can be
// stopped, killed and started again while the cluster and its state stay; and the plane
// restarts whatever of it gets killed, so API server restarts can be tried too.
//
// `npm run plane -- --with-manager-image` instead builds the manager's image, imports it into the
// nodes and writes a kustomize overlay that installs it, as a cluster admin would: the in-cluster
// deployment of deploy/, tried by hand.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as k8s from '@kubernetes/client-node';
import { dump } from 'js-yaml';
import { buildManagerImage, LOCAL_MANAGER_IMAGE } from '../localplane/manager-image.ts';
import { startLocalPlane, type LocalPlane } from '../localplane/plane.ts';
import { ConfigError, parseConfig } from './config.ts';
import { prepareEmbeddedPlane } from './embedded.ts';

const WITH_IMAGE = '--with-manager-image';
const ROOT = fileURLToPath(new URL('../..', import.meta.url));
/** The image the default overlay names, which the local overlay replaces. */
const RELEASE_IMAGE = 'europe-docker.pkg.dev/kyma-project/prod/nats-manager';

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const withImage = args.includes(WITH_IMAGE);
  const config = parseConfig(
    args.filter((arg) => arg !== WITH_IMAGE),
    process.env,
  );
  const image = withImage
    ? await buildManagerImage(join(ROOT, 'dist', 'nats-manager-image.tar'))
    : undefined;
  const plane = await startLocalPlane({
    restartOnExit: true,
    node: withImage ? true : process.env.NATS_MANAGER_LOCAL_NODE === 'off' ? false : 'auto',
    ...(image === undefined ? {} : { extraImages: [{ name: image.name, archive: image.archive }] }),
  });
  let stopping = false;
  const stop = (): void => {
    if (stopping) return;
    stopping = true;
    void plane.stop().then(() => process.exit(0));
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);

  if (withImage) {
    printInstall(plane);
    return;
  }
  const kc = new k8s.KubeConfig();
  kc.loadFromFile(plane.kubeconfigPath);
  const managerKc = await prepareEmbeddedPlane({ kc, source: 'embedded', plane }, config);
  // The manager's own identity (its service account), for `KUBECONFIG=... npm start`.
  const managerKubeconfig = join(plane.dir, 'manager.kubeconfig');
  writeFileSync(managerKubeconfig, managerKc.exportConfig(), { mode: 0o600 });

  // With nodes, the manager reaches NATS by its cluster name through the nodes' DNS: a preload
  // of its own process does that (npm's Node may be too old to load it, so node directly).
  const preload = fileURLToPath(new URL('../localplane/cluster-dns-preload.ts', import.meta.url));
  const managerCommand =
    plane.node === undefined
      ? `KUBECONFIG=${managerKubeconfig} npm start -- --break-glass-users=admin`
      : `NATS_MANAGER_CLUSTER_DNS=${plane.node.clusterDns} KUBECONFIG=${managerKubeconfig} \\\n` +
        `               node_modules/.bin/node --import ${preload} src/manager/main.ts --break-glass-users=admin`;
  process.stdout.write(
    [
      '',
      'A local control plane (etcd, kube-apiserver, kube-controller-manager) is running.',
      plane.node === undefined
        ? '  no node: pods stay Pending (see the [localplane] line above for why)'
        : `  nodes:       ${plane.node.workers.map((w) => `${w.name} (${w.zone})`).join(', ')}; pods run, cluster DNS at ${plane.node.clusterDns}`,
      `  you:         export KUBECONFIG=${plane.kubeconfigPath}`,
      `  the manager: ${managerCommand}`,
      '               (as its service account; --break-glass-users lets your kubectl edit',
      '               children, to watch them being put back)',
      `  a restart:   pkill -f 'kube-apiserver.*${plane.dir}'   (the plane starts it again)`,
      'Stop with Ctrl-C; the plane and its data go with it.',
      '',
    ].join('\n') + '\n',
  );
}

/** Writes the default overlay with the local image, and says how to install it. */
function printInstall(plane: LocalPlane): void {
  const overlay = join(plane.dir, 'overlay');
  mkdirSync(overlay, { recursive: true });
  const at = LOCAL_MANAGER_IMAGE.lastIndexOf(':');
  writeFileSync(
    join(overlay, 'kustomization.yaml'),
    dump({
      apiVersion: 'kustomize.config.k8s.io/v1beta1',
      kind: 'Kustomization',
      // Relative: kustomize refuses an absolute path.
      resources: [relative(overlay, join(ROOT, 'deploy/overlays/default'))],
      images: [
        {
          name: RELEASE_IMAGE,
          newName: LOCAL_MANAGER_IMAGE.slice(0, at),
          newTag: LOCAL_MANAGER_IMAGE.slice(at + 1),
        },
      ],
    }),
  );
  process.stdout.write(
    [
      '',
      `A local control plane with nodes is running; the manager's image ${LOCAL_MANAGER_IMAGE} is on them.`,
      `  you:        export KUBECONFIG=${plane.kubeconfigPath}`,
      '  install:    kubectl create namespace kyma-system',
      `              kubectl apply --server-side -k ${overlay}`,
      '              kubectl -n kyma-system rollout status deployment/nats-manager',
      `              kubectl apply -f ${join(ROOT, 'release/nats-default-cr.yaml')}`,
      `  uninstall:  kubectl delete -k ${overlay}`,
      'Stop with Ctrl-C; the plane and its data go with it.',
      '',
    ].join('\n') + '\n',
  );
}

main().catch((error: unknown) => {
  process.stderr.write(
    `nats-manager plane: ${error instanceof ConfigError ? error.message : String(error)}\n`,
  );
  process.exit(error instanceof ConfigError ? 2 : 1);
});
