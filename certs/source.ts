// The contract between whoever owns the webhook serving certificate (a Secret-backed CA kept by
// the manager, or files mounted by cert-manager) and the HTTPS server that presents it.

export interface ServingCertificate {
  readonly certPem: string;
  readonly keyPem: string;
  /** The CA that API servers must trust: goes into the webhook configurations' caBundle. */
  readonly caPem: string;
}

export interface CertificateSource {
  current(): ServingCertificate;
  /** Called after every rotation; returns the unsubscribe function. */
  onChange(listener: (certificate: ServingCertificate) => void): () => void;
}

/** The onChange side of a CertificateSource: subscribers, and telling them all of a change. */
export interface CertificateListeners {
  readonly onChange: CertificateSource['onChange'];
  /** Calls every listener; one that throws is reported and does not stop the others. */
  emit(certificate: ServingCertificate): void;
}

export function certificateListeners(onError: (error: unknown) => void): CertificateListeners {
  const listeners = new Set<(certificate: ServingCertificate) => void>();
  return {
    onChange: (listener) => {
      listeners.add(listener);
      return () => {
        listeners.delete(listener);
      };
    },
    emit: (certificate) => {
      for (const listener of listeners) {
        try {
          listener(certificate);
        } catch (error) {
          onError(error);
        }
      }
    },
  };
}
