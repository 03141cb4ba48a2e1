// Owns a local plane with a worker node: starts it, prints one JSON line (its directory, admin
// kubeconfig and node), then waits to be killed. Tests use it as the run's cluster and, at the
// end, kill it with SIGKILL to prove the reaper puts the host back.
import { startLocalPlane } from '../../src/localplane/plane.ts';

const plane = await startLocalPlane({
  node: true,
  log: (line) => process.stderr.write(`[localplane] ${line}\n`),
});
process.stdout.write(
  `${JSON.stringify({ dir: plane.dir, kubeconfig: plane.kubeconfigPath, node: plane.node })}\n`,
);
process.on('SIGTERM', () => {
  void plane.stop().then(() => process.exit(0));
});
setInterval(() => undefined, 60_000);
