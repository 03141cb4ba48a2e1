// A real Kubernetes control plane on loopback: etcd, kube-apiserver and kube-controller-manager
// as local processes (the way envtest does it). Used by `npm start` when no cluster is
// configured, and by the integration and end-to-end tests. Pods are created but never run:
// there is no kubelet.
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import {
  createCertificateAuthority,
  createSigningKeyPair,
  issueCertificate,
  type KeyPair,
} from '../../certs/x509.ts';
import { ensureBinaries, type Log } from './binaries.ts';
import { kubeconfigYaml } from './kubeconfig.ts';
import { logTail, startProcess, stopProcess, type PlaneProcess } from './processes.ts';
import { signalGroup } from './reaper.ts';

export interface LocalPlane {
  readonly dir: string;
  /** Admin kubeconfig (client certificate in system:masters). */
  readonly kubeconfigPath: string;
  readonly server: string;
  /** The CA that signs the serving and client certificates, for clients outside kubeconfig. */
  readonly ca: KeyPair;
  readonly admin: KeyPair;
  /**
   * Stops kube-apiserver (SIGTERM) and starts it again on the same port and etcd, resolving once
   * it is ready: what a watch meets when a real cluster's API server is upgraded or crashes.
   */
  restartApiServer(): Promise<void>;
  /** Ends every process of the plane and removes its directory. Safe to call twice. */
  stop(): Promise<void>;
}

export interface LocalPlaneOptions {
  /** Controllers for kube-controller-manager; none means it is not started. */
  readonly controllers?: readonly string[];
  readonly log?: Log;
  /** Keep the directory after stop (logs for a post-mortem). */
  readonly keepDir?: boolean;
  /**
   * Start a process of the plane again when it exits on its own (killed, crashed), as a kubelet
   * restarts a control plane's static pods: for a plane people use by hand, where killing the
   * API server to see what the manager makes of it is fair game.
   */
  readonly restartOnExit?: boolean;
}

const RESTART_DELAY_MS = 1_000;

export const DEFAULT_CONTROLLERS = [
  'garbagecollector',
  'statefulset',
  'namespace',
  'serviceaccount',
  'serviceaccount-token',
] as const;

const READY_TIMEOUT_MS = 90_000;

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => {
        if (address !== null && typeof address === 'object') resolve(address.port);
        else reject(new Error('no port'));
      });
    });
  });
}

interface TlsClient {
  readonly ca?: string;
  readonly cert?: string;
  readonly key?: string;
}

async function httpsGet(url: string, tls: TlsClient): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      { ...tls, rejectUnauthorized: tls.ca !== undefined, timeout: 2_000 },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (body += chunk));
        res.on('end', () => {
          resolve({ status: res.statusCode ?? 0, body });
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end();
  });
}

async function waitFor(
  proc: PlaneProcess,
  what: string,
  check: () => Promise<boolean>,
): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  let lastError = '';
  while (Date.now() < deadline) {
    if (proc.exited()) {
      throw new Error(`${proc.name} exited before ${what}; its log ends with:\n${logTail(proc)}`);
    }
    try {
      if (await check()) return;
    } catch (error) {
      lastError = error instanceof Error ? error.message : String(error);
    }
    await sleep(200);
  }
  throw new Error(
    `timed out waiting for ${what} (${lastError}); ${proc.name} log:\n${logTail(proc)}`,
  );
}

function writePki(dir: string): { ca: KeyPair; admin: KeyPair; kcm: KeyPair } {
  const ca = createCertificateAuthority('nats-manager-localplane-ca', 365);
  const serving = issueCertificate(ca, {
    commonName: 'kube-apiserver',
    dnsNames: ['localhost', 'kubernetes', 'kubernetes.default', 'kubernetes.default.svc'],
    ipAddresses: ['127.0.0.1', '10.0.0.1'],
    usage: 'server',
    validDays: 365,
  });
  const admin = issueCertificate(ca, {
    commonName: 'admin',
    organizations: ['system:masters'],
    usage: 'client',
    validDays: 365,
  });
  // The bootstrap RBAC policy binds this user name to the controller manager's roles.
  const kcm = issueCertificate(ca, {
    commonName: 'system:kube-controller-manager',
    usage: 'client',
    validDays: 365,
  });
  const sa = createSigningKeyPair();
  const files: Record<string, string> = {
    'ca.crt': ca.certPem,
    'ca.key': ca.keyPem,
    'apiserver.crt': serving.certPem,
    'apiserver.key': serving.keyPem,
    'sa.key': sa.privateKeyPem,
    'sa.pub': sa.publicKeyPem,
  };
  for (const [name, content] of Object.entries(files)) {
    writeFileSync(join(dir, 'pki', name), content, { mode: 0o600 });
  }
  return { ca, admin, kcm };
}

function startReaper(dir: string): void {
  const script = join(dirname(fileURLToPath(import.meta.url)), 'reaper.ts');
  const reaper = spawn(process.execPath, ['--no-warnings', script, String(process.pid), dir], {
    detached: true,
    stdio: 'ignore',
  });
  reaper.unref();
}

export async function startLocalPlane(options: LocalPlaneOptions = {}): Promise<LocalPlane> {
  const log = options.log ?? ((line: string) => process.stderr.write(`[localplane] ${line}\n`));
  const controllers = options.controllers ?? DEFAULT_CONTROLLERS;
  const bins = await ensureBinaries(['etcd', 'kube-apiserver', 'kube-controller-manager'], log);

  const dir = mkdtempSync(join(tmpdir(), 'nats-manager-plane-'));
  for (const sub of ['pki', 'logs', 'etcd']) mkdirSync(join(dir, sub));
  startReaper(dir);
  const processes: PlaneProcess[] = [];
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    process.off('exit', killOnExit);
    for (const proc of [...processes].reverse()) {
      stoppedOnPurpose.add(proc);
      await stopProcess(proc, 10_000);
    }
    if (options.keepDir !== true) rmSync(dir, { recursive: true, force: true });
  };
  // Last resort when the owner exits without stop(); the reaper covers kill -9.
  const killOnExit = (): void => {
    for (const proc of processes)
      if (proc.child.pid !== undefined) signalGroup(proc.child.pid, 'SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  };
  process.on('exit', killOnExit);

  // Processes stopped on purpose (stop(), restartApiServer()) are not started again.
  const stoppedOnPurpose = new WeakSet<PlaneProcess>();
  const supervise = (proc: PlaneProcess, restart: () => Promise<void>): void => {
    if (options.restartOnExit !== true) return;
    proc.child.once('exit', (code, signal) => {
      if (stopped || stoppedOnPurpose.has(proc)) return;
      log(`${proc.name} exited (${signal ?? String(code)}); starting it again`);
      setTimeout(() => {
        if (stopped) return;
        restart().then(
          () => {
            log(`${proc.name} is back`);
          },
          (error: unknown) => {
            log(`${proc.name} did not come back: ${String(error)}`);
          },
        );
      }, RESTART_DELAY_MS).unref();
    });
  };
  /** Starts a process into its slot of `processes` (stop order) and supervises it. */
  const replace = (old: PlaneProcess, next: PlaneProcess, restart: () => Promise<void>): void => {
    const slot = processes.indexOf(old);
    if (slot >= 0) processes[slot] = next;
    else processes.push(next);
    supervise(next, restart);
  };

  /** Starts a process into its slot, waits until it is ready; supervised if asked. */
  const run = async (
    start: () => PlaneProcess,
    ready: (proc: PlaneProcess) => Promise<void>,
  ): Promise<{ current: () => PlaneProcess; startAgain: () => Promise<void> }> => {
    let proc = start();
    const startAgain = async (): Promise<void> => {
      const next = start();
      replace(proc, next, startAgain);
      proc = next;
      await ready(next);
    };
    replace(proc, proc, startAgain);
    await ready(proc);
    return { current: () => proc, startAgain };
  };

  try {
    const pki = writePki(dir);
    const [etcdPort, etcdPeerPort, apiPort, kcmPort] = await Promise.all([
      freePort(),
      freePort(),
      freePort(),
      freePort(),
    ]);
    const etcdUrl = `http://127.0.0.1:${String(etcdPort)}`;
    const startEtcd = (): PlaneProcess =>
      startProcess(dir, 'etcd', bins.etcd, [
        `--data-dir=${join(dir, 'etcd')}`,
        `--listen-client-urls=${etcdUrl}`,
        `--advertise-client-urls=${etcdUrl}`,
        `--listen-peer-urls=http://127.0.0.1:${String(etcdPeerPort)}`,
        `--initial-advertise-peer-urls=http://127.0.0.1:${String(etcdPeerPort)}`,
        `--initial-cluster=default=http://127.0.0.1:${String(etcdPeerPort)}`,
        '--unsafe-no-fsync',
        '--log-level=warn',
      ]);
    const waitForEtcd = (proc: PlaneProcess): Promise<void> =>
      waitFor(proc, 'etcd health', async () => {
        const res = await fetch(`${etcdUrl}/health`);
        return res.ok && (await res.text()).includes('"health":"true"');
      });
    await run(startEtcd, waitForEtcd);

    const pkiPath = (name: string): string => join(dir, 'pki', name);
    const server = `https://127.0.0.1:${String(apiPort)}`;
    const apiserverArgs = [
      `--etcd-servers=${etcdUrl}`,
      '--bind-address=127.0.0.1',
      '--advertise-address=127.0.0.1',
      `--secure-port=${String(apiPort)}`,
      `--cert-dir=${join(dir, 'pki')}`,
      `--tls-cert-file=${pkiPath('apiserver.crt')}`,
      `--tls-private-key-file=${pkiPath('apiserver.key')}`,
      `--client-ca-file=${pkiPath('ca.crt')}`,
      '--service-cluster-ip-range=10.0.0.0/24',
      '--service-account-issuer=https://kubernetes.default.svc.cluster.local',
      `--service-account-key-file=${pkiPath('sa.pub')}`,
      `--service-account-signing-key-file=${pkiPath('sa.key')}`,
      '--authorization-mode=RBAC',
      '--allow-privileged=true',
      '--endpoint-reconciler-type=none',
      '--v=1',
    ];
    const adminTls = { ca: pki.ca.certPem, cert: pki.admin.certPem, key: pki.admin.keyPem };
    const startApiServer = (): PlaneProcess =>
      startProcess(dir, 'kube-apiserver', bins['kube-apiserver'], apiserverArgs);
    const waitForApiServer = (proc: PlaneProcess): Promise<void> =>
      waitFor(proc, 'kube-apiserver /readyz', async () => {
        return (await httpsGet(`${server}/readyz`, adminTls)).status === 200;
      });
    const apiserver = await run(startApiServer, waitForApiServer);
    const restartApiServer = async (): Promise<void> => {
      if (stopped) throw new Error('the local plane is stopped');
      stoppedOnPurpose.add(apiserver.current());
      await stopProcess(apiserver.current(), 10_000);
      // Same slot, so stop() still ends the controller manager before the API server.
      await apiserver.startAgain();
    };

    const kubeconfigPath = join(dir, 'kubeconfig');
    writeFileSync(kubeconfigPath, kubeconfigYaml(server, pki.ca.certPem, 'admin', pki.admin), {
      mode: 0o600,
    });

    if (controllers.length > 0) {
      const kcmKubeconfig = join(dir, 'kube-controller-manager.kubeconfig');
      writeFileSync(
        kcmKubeconfig,
        kubeconfigYaml(server, pki.ca.certPem, 'kube-controller-manager', pki.kcm),
        {
          mode: 0o600,
        },
      );
      const startKcm = (): PlaneProcess =>
        startProcess(dir, 'kube-controller-manager', bins['kube-controller-manager'], [
          `--kubeconfig=${kcmKubeconfig}`,
          '--leader-elect=false',
          '--bind-address=127.0.0.1',
          `--secure-port=${String(kcmPort)}`,
          `--cert-dir=${join(dir, 'pki')}`,
          `--controllers=${controllers.join(',')}`,
          // Each controller acts as its own service account, as in a real cluster: admission
          // webhooks that tell identities apart can only be tested truthfully this way.
          '--use-service-account-credentials',
          `--service-account-private-key-file=${pkiPath('sa.key')}`,
          `--root-ca-file=${pkiPath('ca.crt')}`,
          '--v=1',
        ]);
      const waitForKcm = (proc: PlaneProcess): Promise<void> =>
        waitFor(proc, 'kube-controller-manager /healthz', async () => {
          return (
            (await httpsGet(`https://127.0.0.1:${String(kcmPort)}/healthz`, {})).status === 200
          );
        });
      const kcm = await run(startKcm, waitForKcm);
      if (controllers.includes('serviceaccount')) {
        // The default service account in `default` shows the controllers are really working.
        await waitFor(kcm.current(), 'the default service account', async () => {
          const res = await httpsGet(
            `${server}/api/v1/namespaces/default/serviceaccounts/default`,
            adminTls,
          );
          return res.status === 200;
        });
      }
    }
    return {
      dir,
      kubeconfigPath,
      server,
      ca: pki.ca,
      admin: pki.admin,
      restartApiServer,
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}
