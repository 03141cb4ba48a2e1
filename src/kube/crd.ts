import { setTimeout as sleep } from 'node:timers/promises';
import type { KubeObject } from '../base/object.ts';
import type { KubeClient } from './client.ts';

interface CrdStatus extends KubeObject {
  status?: { conditions?: { type: string; status: string; message?: string }[] };
}

/**
 * Server-side applies a CRD and waits until it is Established, i.e. its kind is served. Objects
 * of the kind cannot be created before that.
 */
export async function ensureCrd(
  client: KubeClient,
  crd: KubeObject,
  fieldManager: string,
  timeoutMs = 30_000,
): Promise<void> {
  await client.apply(crd, { fieldManager });
  const ref = { apiVersion: crd.apiVersion, kind: crd.kind, name: crd.metadata.name ?? '' };
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const current = await client.get<CrdStatus>(ref, { timeoutMs });
    const established = current?.status?.conditions?.find((c) => c.type === 'Established');
    if (established?.status === 'True') return;
    if (Date.now() > deadline) {
      throw new Error(
        `CRD ${String(crd.metadata.name)} not Established after ${String(timeoutMs)} ms: ${established?.message ?? 'no condition'}`,
      );
    }
    await sleep(100);
  }
}
