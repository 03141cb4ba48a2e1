// Jest global setup of the integration project: one real control plane for the whole run.
import { startLocalPlane, type LocalPlane } from '../../src/localplane/plane.ts';
import { TEST_KUBECONFIG_ENV } from '../support/kube.ts';

declare global {
  var localPlane: LocalPlane | undefined;
}

export default async function startControlPlane(): Promise<void> {
  const started = Date.now();
  const plane = await startLocalPlane();
  globalThis.localPlane = plane;
  // Workers are forked after global setup, so they inherit this.
  process.env[TEST_KUBECONFIG_ENV] = plane.kubeconfigPath;
  process.stderr.write(
    `\n[localplane] up in ${String(Date.now() - started)} ms at ${plane.server} (kubeconfig ${plane.kubeconfigPath})\n`,
  );
}
