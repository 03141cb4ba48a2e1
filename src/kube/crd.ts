import type { KubeConfig } from '@kubernetes/client-node';
import { setTimeout as sleep } from 'node:timers/promises';
import { applyObject, requestJson, resourcePath, type KubeObject } from './api.ts';

interface CrdStatus {
  status?: { conditions?: { type: string; status: string; message?: string }[] };
}

/**
 * Server-side applies a CRD and waits until it is Established, i.e. its kind is served. Objects
 * of the kind cannot be created before that.
 */
export async function ensureCrd(
  kc: KubeConfig,
  crd: KubeObject,
  fieldManager: string,
  timeoutMs = 30_000,
): Promise<void> {
  await applyObject(kc, crd, { fieldManager });
  const path = resourcePath(crd.apiVersion, crd.kind, undefined, crd.metadata.name);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { status } = (await requestJson(kc, { method: 'GET', path })) as CrdStatus;
    const established = status?.conditions?.find((c) => c.type === 'Established');
    if (established?.status === 'True') return;
    if (Date.now() > deadline) {
      throw new Error(
        `CRD ${String(crd.metadata.name)} not Established after ${String(timeoutMs)} ms: ${established?.message ?? 'no condition'}`,
      );
    }
    await sleep(100);
  }
}
