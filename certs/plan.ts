// What the webhook certificate Secret should hold, decided from what it holds now and the time.
// No I/O: the Secret source reads and writes, this module only parses PEM and issues keys, so
// every renewal rule is unit-tested with a fake clock.
//
// CA rotation runs in two steps so that no API server ever sees a certificate it does not trust:
// first the new CA joins the bundle while the old serving certificate stays in use; only once the
// new CA has had time to reach every webhook configuration does it sign a serving certificate.
// The old CA stays in the bundle until the last certificate it signed has expired.
import { createPrivateKey, X509Certificate } from 'node:crypto';
import type { ServingCertificate } from './source.ts';
import type { createCertificateAuthority, issueCertificate, KeyPair } from './x509.ts';

/** The Secret's keys: `tls.crt`/`tls.key`/`ca.crt` as cert-manager and controller-runtime name them. */
export const SECRET_KEYS = {
  caCert: 'ca.crt',
  caKey: 'ca.key',
  cert: 'tls.crt',
  key: 'tls.key',
  previousCaCert: 'previous-ca.crt',
  /** RFC 3339: when the last certificate signed by the previous CA expires. */
  previousCaTrustedUntil: 'previous-ca.trusted-until',
} as const;

/** Secret data as text (already base64-decoded). */
export type SecretData = Readonly<Record<string, string>>;

export interface ServingNames {
  readonly commonName: string;
  readonly dnsNames: readonly string[];
  readonly ipAddresses: readonly string[];
}

/** The names an API server (through the Service) and a local client (over loopback) dial. */
export function servingNames(
  service: string,
  namespace: string,
  clusterDomain = 'cluster.local',
): ServingNames {
  const svc = `${service}.${namespace}.svc`;
  return {
    commonName: svc,
    dnsNames: [service, `${service}.${namespace}`, svc, `${svc}.${clusterDomain}`],
    ipAddresses: ['127.0.0.1'],
  };
}

export interface Validity {
  readonly caDays: number;
  readonly servingDays: number;
}

/** Serving certificates renew from day 60, the CA after 6 years and 8 months. */
export const DEFAULT_VALIDITY: Validity = { caDays: 3650, servingDays: 90 };

/** Renew when less than this share of a certificate's lifetime is left. */
const RENEW_WHEN_LEFT = 1 / 3;

/**
 * How long a new CA sits in the bundle before it signs a serving certificate: time for every
 * replica to see the Secret and write the bundle into the webhook configurations.
 */
export const CA_PROPAGATION_MS = 3_600_000;

const CA_COMMON_NAME = 'nats-manager-webhook-ca';

/** Most significant last: a plan reports the biggest change it makes. */
const ACTIONS = ['keep', 'retire-previous-ca', 'issue-serving', 'rotate-ca', 'create-ca'] as const;
export type PlanAction = (typeof ACTIONS)[number];

export interface CertificatePlan {
  readonly action: PlanAction;
  /** Why anything changes, for the log; empty when the Secret is kept as it is. */
  readonly reasons: readonly string[];
  /** The Secret's complete data: write it unless the action is `keep`. */
  readonly data: SecretData;
  /** Every CA the API servers must trust, PEM, signing CA first. */
  readonly caBundle: string;
  readonly serving: ServingCertificate;
}

export interface PlanInput {
  /** `undefined` when there is no Secret yet. */
  readonly data: SecretData | undefined;
  readonly names: ServingNames;
  readonly now: Date;
  readonly validity?: Validity;
  /**
   * Keys generated beforehand for what the decision creates (see keys.ts, newRsaKeyPem), so that
   * the caller can make them off the event loop; those missing are generated here.
   */
  readonly keys?: { readonly ca?: string; readonly serving?: string };
  /**
   * What makes new certificates (x509.ts), needed only when the decision creates one: passed in,
   * so that a Secret kept as it is never loads node-forge.
   */
  readonly issuer?: CertificateIssuer;
}

export interface CertificateIssuer {
  readonly createCertificateAuthority: typeof createCertificateAuthority;
  readonly issueCertificate: typeof issueCertificate;
}

function issuerOf(input: PlanInput): CertificateIssuer {
  if (input.issuer === undefined)
    throw new Error('a certificate must be made, and no issuer was given');
  return input.issuer;
}

export type Checked<T> = { readonly value: T } | { readonly problem: string };

export interface ParsedCertificate {
  readonly certPem: string;
  readonly cert: X509Certificate;
}
export type ParsedPair = ParsedCertificate & { readonly keyPem: string };
type PreviousCa = ParsedCertificate & { readonly trustedUntil: Date };

function parseCertificate(pem: string | undefined): Checked<ParsedCertificate> {
  if (pem === undefined || pem.trim() === '') return { problem: 'is missing' };
  try {
    return { value: { certPem: pem, cert: new X509Certificate(pem) } };
  } catch {
    return { problem: 'is not a PEM certificate' };
  }
}

/** A certificate and its private key, parsed and checked to belong together. */
export function checkKeyPair(
  certPem: string | undefined,
  keyPem: string | undefined,
): Checked<ParsedPair> {
  const parsed = parseCertificate(certPem);
  if ('problem' in parsed) return { problem: `certificate ${parsed.problem}` };
  if (keyPem === undefined || keyPem.trim() === '') return { problem: 'private key is missing' };
  try {
    if (!parsed.value.cert.checkPrivateKey(createPrivateKey(keyPem))) {
      return { problem: 'private key does not match the certificate' };
    }
  } catch {
    return { problem: 'private key is not a PEM key' };
  }
  return { value: { ...parsed.value, keyPem } };
}

function lifetimeProblem(cert: X509Certificate, now: Date): string | undefined {
  if (now < cert.validFromDate) return `is not valid before ${cert.validFromDate.toISOString()}`;
  if (now >= cert.validToDate) return `expired at ${cert.validToDate.toISOString()}`;
  return undefined;
}

function renewalDue(cert: X509Certificate, now: Date): boolean {
  const lifetime = cert.validToDate.getTime() - cert.validFromDate.getTime();
  return cert.validToDate.getTime() - now.getTime() < lifetime * RENEW_WHEN_LEFT;
}

function readCa(data: SecretData, now: Date): Checked<ParsedPair> {
  const pair = checkKeyPair(data[SECRET_KEYS.caCert], data[SECRET_KEYS.caKey]);
  if ('problem' in pair) return pair;
  if (!pair.value.cert.ca) return { problem: 'certificate is not a CA' };
  const lifetime = lifetimeProblem(pair.value.cert, now);
  return lifetime === undefined ? pair : { problem: `certificate ${lifetime}` };
}

function readPreviousCa(data: SecretData, now: Date): Checked<PreviousCa | undefined> {
  const pem = data[SECRET_KEYS.previousCaCert];
  if (pem === undefined) return { value: undefined };
  const parsed = parseCertificate(pem);
  const trustedUntil = new Date(data[SECRET_KEYS.previousCaTrustedUntil] ?? '');
  if ('problem' in parsed || Number.isNaN(trustedUntil.getTime())) {
    return { problem: 'previous CA is unreadable: dropped from the bundle' };
  }
  if (now >= trustedUntil) {
    return { problem: 'every certificate the previous CA signed has expired: dropped' };
  }
  return { value: { ...parsed.value, trustedUntil } };
}

function subjectAltNames(names: ServingNames): string {
  return [
    ...names.dnsNames.map((name) => `DNS:${name}`),
    ...names.ipAddresses.map((ip) => `IP Address:${ip}`),
  ]
    .sort()
    .join(', ');
}

function issuedBy(cert: X509Certificate, ca: X509Certificate): boolean {
  try {
    return cert.checkIssued(ca) && cert.verify(ca.publicKey);
  } catch {
    return false;
  }
}

/** The serving pair and which of the trusted CAs signed it. */
function readServing(
  data: SecretData,
  trusted: readonly ParsedCertificate[],
  names: ServingNames,
  now: Date,
): Checked<ParsedPair & { readonly signer: ParsedCertificate }> {
  const pair = checkKeyPair(data[SECRET_KEYS.cert], data[SECRET_KEYS.key]);
  if ('problem' in pair) return pair;
  const { cert } = pair.value;
  const lifetime = lifetimeProblem(cert, now);
  if (lifetime !== undefined) return { problem: `certificate ${lifetime}` };
  const actual = (cert.subjectAltName ?? '').split(', ').sort().join(', ');
  if (actual !== subjectAltNames(names)) {
    return { problem: `names differ: has "${actual}", needs "${subjectAltNames(names)}"` };
  }
  const signer = trusted.find((ca) => issuedBy(cert, ca.cert));
  if (signer === undefined) return { problem: 'certificate is not signed by a trusted CA' };
  return { value: { ...pair.value, signer } };
}

function newCa(input: PlanInput, validity: Validity): KeyPair {
  const { now } = input;
  const commonName = `${CA_COMMON_NAME}@${String(Math.floor(now.getTime() / 1000))}`;
  return issuerOf(input).createCertificateAuthority(
    commonName,
    validity.caDays,
    now,
    input.keys?.ca,
  );
}

function newServing(ca: KeyPair, input: PlanInput, validity: Validity): KeyPair {
  const { names, now } = input;
  const keyPem = input.keys?.serving;
  return issuerOf(input).issueCertificate(ca, {
    ...(keyPem === undefined ? {} : { keyPem }),
    commonName: names.commonName,
    dnsNames: names.dnsNames,
    ipAddresses: names.ipAddresses,
    usage: 'server',
    validDays: validity.servingDays,
    notBefore: now,
  });
}

function checkValidity(validity: Validity): void {
  // A serving certificate issued just before its CA rotates must expire before that CA does.
  if (!(validity.servingDays > 0 && validity.servingDays < validity.caDays * RENEW_WHEN_LEFT)) {
    throw new Error(
      `serving validity (${String(validity.servingDays)} days) must be positive and under ` +
        `a third of the CA validity (${String(validity.caDays)} days)`,
    );
  }
}

function pemBundle(pems: readonly string[]): string {
  return pems.map((pem) => (pem.endsWith('\n') ? pem : `${pem}\n`)).join('');
}

/**
 * What to do, before any key is generated: `undefined` for the CA or the serving pair means a new
 * one. Deciding is fast and never throws on Secret content, so it is checked against any input.
 */
export interface Decision {
  readonly action: PlanAction;
  /** Why anything changes, for the log; empty when the Secret is kept as it is. */
  readonly reasons: readonly string[];
  readonly ca: KeyPair | undefined;
  /** The outgoing CA, trusted until the last certificate it signed has expired. */
  readonly previousCa: { readonly certPem: string; readonly trustedUntil: Date } | undefined;
  readonly serving: KeyPair | undefined;
}

/** The decision while it is made, in a small record so the steps stay short. */
interface Draft {
  action: PlanAction;
  readonly reasons: string[];
  /** `undefined`: a new CA, created now. */
  readonly ca: ParsedPair | undefined;
  previous: PreviousCa | undefined;
}

function escalate(draft: Draft, action: PlanAction, reason: string): void {
  if (ACTIONS.indexOf(action) > ACTIONS.indexOf(draft.action)) draft.action = action;
  draft.reasons.push(reason);
}

function decideCa(input: PlanInput, data: SecretData): Draft {
  const { now } = input;
  const existing = readCa(data, now);
  if ('problem' in existing) {
    const reason = input.data === undefined ? 'no Secret yet' : `CA ${existing.problem}`;
    return { action: 'create-ca', reasons: [reason], ca: undefined, previous: undefined };
  }
  const ca = existing.value;
  if (renewalDue(ca.cert, now)) {
    const reason = `CA expires at ${ca.cert.validToDate.toISOString()}: rotating`;
    // The old CA stays trusted while the serving certificate it signed may still be presented.
    const serving = readServing(data, [ca], input.names, now);
    const previous =
      'value' in serving ? { ...ca, trustedUntil: serving.value.cert.validToDate } : undefined;
    return { action: 'rotate-ca', reasons: [reason], ca: undefined, previous };
  }
  const draft: Draft = { action: 'keep', reasons: [], ca, previous: undefined };
  const previous = readPreviousCa(data, now);
  if ('problem' in previous) escalate(draft, 'retire-previous-ca', previous.problem);
  else draft.previous = previous.value;
  return draft;
}

function servingDecision(
  draft: Draft,
  serving: Checked<ParsedPair & { readonly signer: ParsedCertificate }>,
  now: Date,
): { readonly keep: ParsedPair } | { readonly reissue: string } {
  if ('problem' in serving) return { reissue: `serving ${serving.problem}` };
  const { cert, signer } = serving.value;
  if (!renewalDue(cert, now)) return { keep: serving.value };
  // Still signed by the outgoing CA: wait until the new CA has reached every API server.
  const caAge = draft.ca === undefined ? 0 : now.getTime() - draft.ca.cert.validFromDate.getTime();
  if (signer.certPem !== draft.ca?.certPem && caAge < CA_PROPAGATION_MS) {
    return { keep: serving.value };
  }
  return { reissue: `serving certificate expires at ${cert.validToDate.toISOString()}: renewing` };
}

export function decide(input: PlanInput): Decision {
  checkValidity(input.validity ?? DEFAULT_VALIDITY);
  const data = input.data ?? {};
  const draft = decideCa(input, data);
  const trusted = [draft.ca, draft.previous].filter((ca) => ca !== undefined);
  const existing = readServing(data, trusted, input.names, input.now);
  const serving = servingDecision(draft, existing, input.now);
  if ('reissue' in serving) escalate(draft, 'issue-serving', serving.reissue);
  const { action, reasons, ca, previous } = draft;
  return {
    action,
    reasons,
    ca: ca && { certPem: ca.certPem, keyPem: ca.keyPem },
    previousCa: previous && { certPem: previous.certPem, trustedUntil: previous.trustedUntil },
    serving: 'keep' in serving ? serving.keep : undefined,
  };
}

/** Decides, then creates what the decision asks for. */
export function planCertificates(input: PlanInput): CertificatePlan {
  const decision = decide(input);
  const validity = input.validity ?? DEFAULT_VALIDITY;
  const ca = decision.ca ?? newCa(input, validity);
  const serving = decision.serving ?? newServing(ca, input, validity);
  const { previousCa } = decision;
  const caBundle = pemBundle(
    previousCa === undefined ? [ca.certPem] : [ca.certPem, previousCa.certPem],
  );
  const data: Record<string, string> = {
    [SECRET_KEYS.caCert]: ca.certPem,
    [SECRET_KEYS.caKey]: ca.keyPem,
    [SECRET_KEYS.cert]: serving.certPem,
    [SECRET_KEYS.key]: serving.keyPem,
  };
  if (previousCa !== undefined) {
    data[SECRET_KEYS.previousCaCert] = previousCa.certPem;
    data[SECRET_KEYS.previousCaTrustedUntil] = previousCa.trustedUntil.toISOString();
  }
  return {
    action: decision.action,
    reasons: decision.reasons,
    data,
    caBundle,
    serving: { certPem: serving.certPem, keyPem: serving.keyPem, caPem: caBundle },
  };
}
