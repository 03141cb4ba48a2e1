// The serving certificate kept in a Secret that every replica shares, so all of them present
// certificates from one CA. Each replica reads the Secret, plans with certs/plan.ts, and writes
// with optimistic concurrency; a replica that loses a race re-reads and takes what the winner
// wrote, so replicas starting together converge on one CA.
//
// One loop both renews in time and picks up a rotation another replica made: it re-reads and
// re-plans every minute. Polling rather than a watch: a silent watch would be a certificate that
// quietly expires, and a GET a minute costs nothing.
import type { KubeClient } from '../src/kube/client.ts';
import { isApiStatus } from '../src/kube/transport.ts';
import type { Logger } from '../src/base/log.ts';
import {
  type CertificatePlan,
  type Decision,
  decide,
  planCertificates,
  type PlanInput,
  type SecretData,
  type ServingNames,
  type Validity,
} from './plan.ts';
import { certificateListeners, type CertificateSource, type ServingCertificate } from './source.ts';
import { newRsaKeyPem } from './keys.ts';

export interface SecretSourceOptions {
  readonly client: KubeClient;
  readonly namespace: string;
  readonly secretName: string;
  readonly names: ServingNames;
  readonly validity?: Validity;
  /** How often to re-read and re-plan; one minute by default. */
  readonly resyncIntervalMs?: number;
  /** Tests move time with it. */
  readonly clock?: () => Date;
  readonly log?: Logger;
}

export interface SecretCertificateSource extends CertificateSource {
  /** Re-reads the Secret, writes it if the plan says so, and calls listeners on any change. */
  resync(): Promise<void>;
  /** Stops the loop, after a resync in flight has finished. */
  close(): Promise<void>;
}

const DEFAULT_RESYNC_MS = 60_000;
const SECRET_LABELS = {
  'app.kubernetes.io/name': 'nats-manager',
  'app.kubernetes.io/component': 'webhook-certificate',
};
/** Each conflict means another replica wrote; after a few, something else is wrong. */
const MAX_WRITE_ATTEMPTS = 5;

interface SecretObject {
  apiVersion: 'v1';
  kind: 'Secret';
  metadata: { name: string; namespace: string; resourceVersion?: string; [key: string]: unknown };
  type?: string;
  data?: Record<string, unknown> | null;
  [key: string]: unknown;
}

function decode(secret: SecretObject): SecretData {
  const entries = Object.entries(secret.data ?? {}).filter(
    (entry): entry is [string, string] => typeof entry[1] === 'string',
  );
  return Object.fromEntries(
    entries.map(([key, value]) => [key, Buffer.from(value, 'base64').toString('utf8')]),
  );
}

function encode(data: SecretData): Record<string, string> {
  return Object.fromEntries(
    Object.entries(data).map(([key, value]) => [
      key,
      Buffer.from(value, 'utf8').toString('base64'),
    ]),
  );
}

function sameCertificate(a: ServingCertificate, b: ServingCertificate): boolean {
  return a.certPem === b.certPem && a.keyPem === b.keyPem && a.caPem === b.caPem;
}

/** Reads, plans and writes the Secret; resolves to the plan whose data is now stored. */
async function converge(options: SecretSourceOptions): Promise<CertificatePlan> {
  const { client, namespace, secretName: name } = options;
  for (let attempt = 1; ; attempt++) {
    const secret = await client.get<SecretObject>({
      apiVersion: 'v1',
      kind: 'Secret',
      namespace,
      name,
    });
    const input = {
      data: secret && decode(secret),
      names: options.names,
      now: (options.clock ?? (() => new Date()))(),
      validity: options.validity,
    };
    const plan = planCertificates({ ...input, ...(await makings(decide(input))) });
    if (plan.action === 'keep') return plan;
    try {
      await write(options, secret, plan);
      options.log?.info('webhook certificate Secret written', {
        secret: `${namespace}/${name}`,
        action: plan.action,
        reasons: plan.reasons,
      });
      return plan;
    } catch (error) {
      // 409: AlreadyExists on create, Conflict on update. Another replica wrote first.
      if (!isApiStatus(error, 409) || attempt >= MAX_WRITE_ATTEMPTS) throw error;
      options.log?.info('another replica wrote the certificate Secret first: re-reading', {
        secret: `${namespace}/${name}`,
      });
    }
  }
}

/** What a decision needs to make its new certificates; nothing when it keeps them all. */
async function makings(decision: Decision): Promise<Pick<PlanInput, 'keys' | 'issuer'>> {
  if (decision.ca !== undefined && decision.serving !== undefined) return {};
  // The keys are made off the event loop, which keeps serving meanwhile. node-forge, about 2 MB
  // of heap for good once loaded, is imported only now.
  const [ca, serving, issuer] = await Promise.all([
    decision.ca === undefined ? newRsaKeyPem() : undefined,
    decision.serving === undefined ? newRsaKeyPem() : undefined,
    import('./x509.ts'),
  ]);
  return {
    keys: { ...(ca === undefined ? {} : { ca }), ...(serving === undefined ? {} : { serving }) },
    issuer,
  };
}

async function write(
  options: SecretSourceOptions,
  existing: SecretObject | undefined,
  plan: CertificatePlan,
): Promise<void> {
  const { client, namespace, secretName: name } = options;
  if (existing === undefined) {
    const secret: SecretObject = {
      apiVersion: 'v1',
      kind: 'Secret',
      // Not the managed-by label: that marks children of a NATS resource, which the protect
      // webhook locks to the NATS resource. This Secret belongs to the manager itself.
      metadata: { name, namespace, labels: SECRET_LABELS },
      type: 'kubernetes.io/tls',
      data: encode(plan.data),
    };
    await client.create(secret);
    return;
  }
  // The read resourceVersion rides along, so a concurrent write makes this one fail with 409.
  await client.update({ ...existing, data: encode(plan.data) });
}

export async function startSecretCertificateSource(
  options: SecretSourceOptions,
): Promise<SecretCertificateSource> {
  const listeners = certificateListeners((error) => {
    options.log?.error('certificate listener failed', { error });
  });
  let current = (await converge(options)).serving;
  let closed = false;
  let timer: NodeJS.Timeout | undefined;
  let queue = Promise.resolve();

  const adopt = (next: ServingCertificate): void => {
    if (sameCertificate(current, next)) return;
    current = next;
    listeners.emit(next);
  };

  // Serialized, so the loop and a caller's resync never plan from the same read twice.
  const resync = (): Promise<void> => {
    const run = queue.then(async () => {
      if (!closed) adopt((await converge(options)).serving);
    });
    queue = run.catch(() => undefined);
    return run;
  };

  const schedule = (): void => {
    timer = setTimeout(() => {
      resync()
        .catch((error: unknown) => {
          // Keep serving what we have; the certificate has weeks left when renewal starts.
          options.log?.error('webhook certificate resync failed', { error });
        })
        .finally(() => {
          if (!closed) schedule();
        });
    }, options.resyncIntervalMs ?? DEFAULT_RESYNC_MS);
    timer.unref();
  };
  schedule();

  return {
    current: () => current,
    onChange: listeners.onChange,
    resync,
    close: async () => {
      closed = true;
      clearTimeout(timer);
      await queue;
    },
  };
}
