// Jest global setup of the integration project: one real control plane for the whole run.
import { readFileSync } from 'node:fs';
import * as k8s from '@kubernetes/client-node';
import { load } from 'js-yaml';
import { buildNatsCrd } from '../../src/api/crd.ts';
import { clientFor, type KubeObject } from '../../src/kube/api.ts';
import { ensureCrd } from '../../src/kube/crd.ts';
import { startLocalPlane, type LocalPlane } from '../../src/localplane/plane.ts';
import { TEST_KUBECONFIG_ENV } from '../support/kube.ts';

declare global {
  var localPlane: LocalPlane | undefined;
}

export default async function startControlPlane(): Promise<void> {
  const started = Date.now();
  // `npm start` in these suites runs without a worker node: the node project owns the host's one.
  process.env.NATS_MANAGER_LOCAL_NODE = 'off';
  const plane = await startLocalPlane();
  globalThis.localPlane = plane;
  // Workers are forked after global setup, so they inherit this.
  process.env[TEST_KUBECONFIG_ENV] = plane.kubeconfigPath;
  // Installed once, early: the garbage collector only learns of new kinds on its 30 s discovery
  // resync, so suites that rely on NATS-owned children being collected start with it known.
  const kc = new k8s.KubeConfig();
  kc.loadFromFile(plane.kubeconfigPath);
  await ensureCrd(clientFor(kc), buildNatsCrd(), 'nats-manager-tests');
  // Istio's DestinationRule too: suites that install it again find it known already.
  await ensureCrd(
    clientFor(kc),
    load(
      readFileSync(new URL('../fixtures/destinationrule-crd.yaml', import.meta.url), 'utf8'),
    ) as KubeObject,
    'nats-manager-tests',
  );
  process.stderr.write(
    `\n[localplane] up in ${String(Date.now() - started)} ms at ${plane.server} (kubeconfig ${plane.kubeconfigPath})\n`,
  );
}
