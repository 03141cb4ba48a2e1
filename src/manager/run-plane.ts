// `npm run plane`: the embedded local control plane alone, prepared as for the manager, until
// Ctrl-C. The manager then runs against it as a separate process (KUBECONFIG=...), so it can be
// stopped, killed and started again while the cluster and its state stay; and the plane
// restarts whatever of it gets killed, so API server restarts can be tried too.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as k8s from '@kubernetes/client-node';
import { startLocalPlane } from '../localplane/plane.ts';
import { ConfigError, parseConfig } from './config.ts';
import { prepareEmbeddedPlane } from './embedded.ts';

async function main(): Promise<void> {
  const config = parseConfig(process.argv.slice(2), process.env);
  const plane = await startLocalPlane({ restartOnExit: true });
  let stopping = false;
  const stop = (): void => {
    if (stopping) return;
    stopping = true;
    void plane.stop().then(() => process.exit(0));
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);

  const kc = new k8s.KubeConfig();
  kc.loadFromFile(plane.kubeconfigPath);
  const managerKc = await prepareEmbeddedPlane({ kc, source: 'embedded', plane }, config);
  // The manager's own identity (its service account), for `KUBECONFIG=... npm start`.
  const managerKubeconfig = join(plane.dir, 'manager.kubeconfig');
  writeFileSync(managerKubeconfig, managerKc.exportConfig(), { mode: 0o600 });

  process.stdout.write(
    [
      '',
      'A local control plane (etcd, kube-apiserver, kube-controller-manager) is running.',
      `  you:         export KUBECONFIG=${plane.kubeconfigPath}`,
      `  the manager: KUBECONFIG=${managerKubeconfig} npm start -- --break-glass-users=admin`,
      '               (as its service account; --break-glass-users lets your kubectl edit',
      '               children, to watch them being put back)',
      `  a restart:   pkill -f 'kube-apiserver.*${plane.dir}'   (the plane starts it again)`,
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
