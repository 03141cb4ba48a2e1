// Owns a local plane with a worker node: starts it, prints one JSON line (its directory, admin
// kubeconfig and node), then waits to be killed. Tests use it as the run's cluster and, at the
// end, kill it with SIGKILL to prove the reaper puts the host back. A line on stdin restarts one
// of its worker nodes.
import { createInterface } from 'node:readline';
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
// Commands, one JSON line each on stdin, answered with one JSON line on stdout.
for await (const line of createInterface({ input: process.stdin })) {
  const { restartWorker } = JSON.parse(line) as { restartWorker?: string };
  if (restartWorker === undefined) continue;
  const answer = await plane.restartWorker(restartWorker).then(
    (restarted) => ({ restarted }),
    (error: unknown) => ({ error: error instanceof Error ? error.message : String(error) }),
  );
  process.stdout.write(`${JSON.stringify(answer)}\n`);
}
