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
