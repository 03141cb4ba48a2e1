// The serving certificate from files mounted into the pod, as cert-manager writes them:
// `tls.crt`, `tls.key` and `ca.crt` in one directory. Used instead of the Secret-backed CA when
// the configuration says `files`.
//
// Kubernetes updates a mounted Secret by swapping the `..data` symlink, which a watch on the files
// themselves never sees, so the directory is watched; a poll backs the watch up, for file systems
// that deliver no events. A reader can land between two writes: the old pair is kept until the
// new certificate, key and CA all parse and the key matches the certificate.
import { X509Certificate } from 'node:crypto';
import { type FSWatcher, watch } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../src/base/log.ts';
import { type Checked, checkKeyPair } from './plan.ts';
import { certificateListeners, type CertificateSource, type ServingCertificate } from './source.ts';

export const CERTIFICATE_FILES = { cert: 'tls.crt', key: 'tls.key', ca: 'ca.crt' } as const;

export interface FileSourceOptions {
  readonly dir: string;
  /** How often to re-read without a change event; ten seconds by default. */
  readonly pollIntervalMs?: number;
  readonly log?: Logger;
}

export interface FileCertificateSource extends CertificateSource {
  /** Re-reads the files and calls listeners if they hold a new, complete set. */
  reload(): Promise<void>;
  close(): Promise<void>;
}

const DEFAULT_POLL_MS = 10_000;
/** Lets the rest of a burst of writes land before reading. */
const SETTLE_MS = 50;
const START_ATTEMPTS = 3;

async function readText(dir: string, file: string): Promise<Checked<string>> {
  try {
    return { value: await readFile(join(dir, file), 'utf8') };
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? String(error);
    return { problem: `cannot read ${file}: ${code}` };
  }
}

/** The three files as one certificate, or what is wrong with them. */
export async function readCertificateFiles(dir: string): Promise<Checked<ServingCertificate>> {
  const [cert, key, ca] = await Promise.all([
    readText(dir, CERTIFICATE_FILES.cert),
    readText(dir, CERTIFICATE_FILES.key),
    readText(dir, CERTIFICATE_FILES.ca),
  ]);
  if ('problem' in cert) return cert;
  if ('problem' in key) return key;
  if ('problem' in ca) return ca;
  const [certPem, keyPem, caPem] = [cert.value, key.value, ca.value];
  const pair = checkKeyPair(certPem, keyPem);
  if ('problem' in pair) return { problem: `${CERTIFICATE_FILES.cert}: ${pair.problem}` };
  try {
    new X509Certificate(caPem);
  } catch {
    return { problem: `${CERTIFICATE_FILES.ca} is not a PEM certificate` };
  }
  return { value: { certPem, keyPem, caPem } };
}

async function readAtStart(dir: string): Promise<ServingCertificate> {
  let problem = '';
  // A swap between reading the certificate and the key leaves a mismatched pair for an instant.
  for (let attempt = 1; attempt <= START_ATTEMPTS; attempt++) {
    const files = await readCertificateFiles(dir);
    if ('value' in files) return files.value;
    problem = files.problem;
    await new Promise((resolve) => setTimeout(resolve, SETTLE_MS * attempt));
  }
  throw new Error(`no usable serving certificate in ${dir}: ${problem}`);
}

function sameCertificate(a: ServingCertificate, b: ServingCertificate): boolean {
  return a.certPem === b.certPem && a.keyPem === b.keyPem && a.caPem === b.caPem;
}

export async function startFileCertificateSource(
  options: FileSourceOptions,
): Promise<FileCertificateSource> {
  const { dir, log } = options;
  const listeners = certificateListeners((error) => {
    log?.error('certificate listener failed', { error });
  });
  let current = await readAtStart(dir);
  let lastProblem: string | undefined;
  let queue = Promise.resolve();
  let closed = false;

  const apply = (files: Checked<ServingCertificate>): void => {
    if ('problem' in files) {
      // Logged once per distinct problem: a poll every few seconds must not flood the log.
      if (files.problem !== lastProblem) {
        log?.error('keeping the current serving certificate', { dir, problem: files.problem });
      }
      lastProblem = files.problem;
      return;
    }
    lastProblem = undefined;
    if (sameCertificate(current, files.value)) return;
    current = files.value;
    log?.info('serving certificate reloaded', { dir });
    listeners.emit(current);
  };

  const reload = (): Promise<void> => {
    const run = queue.then(async () => {
      if (!closed) apply(await readCertificateFiles(dir));
    });
    queue = run.catch(() => undefined);
    return run;
  };

  let settling: NodeJS.Timeout | undefined;
  const onEvent = (): void => {
    if (settling !== undefined || closed) return;
    settling = setTimeout(() => {
      settling = undefined;
      void reload();
    }, SETTLE_MS);
  };

  let watcher: FSWatcher | undefined;
  try {
    watcher = watch(dir, onEvent);
    watcher.on('error', (error) => {
      log?.error('watching the certificate directory failed: polling only', { dir, error });
      watcher?.close();
    });
  } catch (error) {
    log?.error('cannot watch the certificate directory: polling only', { dir, error });
  }
  const poll = setInterval(onEvent, options.pollIntervalMs ?? DEFAULT_POLL_MS);
  poll.unref();

  return {
    current: () => current,
    onChange: listeners.onChange,
    reload,
    close: async () => {
      closed = true;
      watcher?.close();
      clearInterval(poll);
      clearTimeout(settling);
      await queue;
    },
  };
}
