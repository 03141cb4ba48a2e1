// Helpers for tests that talk to the run's local control plane (see test/setup).
import { randomBytes } from 'node:crypto';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import * as k8s from '@kubernetes/client-node';

export const TEST_KUBECONFIG_ENV = 'NATS_MANAGER_TEST_KUBECONFIG';

export function testKubeconfigPath(): string {
  const path = process.env[TEST_KUBECONFIG_ENV];
  if (path === undefined) {
    throw new Error(`${TEST_KUBECONFIG_ENV} is not set: run this suite in the integration project`);
  }
  return path;
}

export function testKubeConfig(): k8s.KubeConfig {
  const kc = new k8s.KubeConfig();
  kc.loadFromFile(testKubeconfigPath());
  return kc;
}

/** A fresh namespace per suite keeps suites independent on the shared plane. */
export async function createTestNamespace(kc: k8s.KubeConfig, prefix: string): Promise<string> {
  const name = `${prefix}-${randomBytes(3).toString('hex')}`;
  await kc.makeApiClient(k8s.CoreV1Api).createNamespace({ body: { metadata: { name } } });
  return name;
}

export async function deleteTestNamespace(kc: k8s.KubeConfig, name: string): Promise<void> {
  await kc.makeApiClient(k8s.CoreV1Api).deleteNamespace({ name });
}

const execFileAsync = promisify(execFile);

/** Runs kubectl from the PATH against the test plane, as a user would. */
export async function kubectl(
  args: readonly string[],
  options: { input?: string } = {},
): Promise<{ stdout: string; stderr: string }> {
  const child = execFileAsync('kubectl', ['--kubeconfig', testKubeconfigPath(), ...args], {
    encoding: 'utf8',
  });
  if (options.input !== undefined) {
    child.child.stdin?.end(options.input);
  }
  return child;
}

export async function eventually<T>(
  what: string,
  probe: () => Promise<T | undefined> | T | undefined,
  timeoutMs = 30_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline)
      throw new Error(`timed out after ${String(timeoutMs)} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}
