// X.509 building blocks: a CA and certificates it signs. Used for the webhook serving
// certificate and for the local control plane's PKI. node-forge is loaded with this module, so the
// manager imports it only when it has a certificate to make (certs/secret-source.ts).
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import forge from 'node-forge';

export interface KeyPair {
  /** PKCS#8 PEM */
  readonly keyPem: string;
  readonly certPem: string;
}

export interface CertificateRequest {
  readonly commonName: string;
  readonly organizations?: readonly string[];
  readonly dnsNames?: readonly string[];
  readonly ipAddresses?: readonly string[];
  readonly usage: 'server' | 'client' | 'both';
  readonly validDays: number;
  /** Defaults to now; tests move it to exercise expiry. */
  readonly notBefore?: Date;
  /** A PKCS#8 RSA key generated beforehand (see keys.ts, newRsaKeyPem); a new one otherwise. */
  readonly keyPem?: string;
}

const MS_PER_DAY = 86_400_000;

// forge writes names as PrintableString by default, which has no '@', '_' or '*'; Go's x509
// (the API server) then refuses the whole certificate. UTF8String takes any name. (forge reads
// valueTagClass as the value's ASN.1 type; its typings call it a Class.)
const UTF8_STRING = forge.asn1.Type.UTF8 as unknown as forge.asn1.Class;

function utf8Attribute(name: string, value: string): forge.pki.CertificateField {
  return { name, value, valueTagClass: UTF8_STRING };
}

// node:crypto generates RSA keys natively; forge's pure-JS generator takes seconds per key.
function newRsaKey(given?: string): { forgeKey: forge.pki.rsa.PrivateKey; keyPem: string } {
  const keyPem =
    given ??
    generateKeyPairSync('rsa', { modulusLength: 2048 })
      .privateKey.export({ type: 'pkcs8', format: 'pem' })
      .toString();
  return { forgeKey: forge.pki.privateKeyFromPem(keyPem), keyPem };
}

function publicKeyOf(key: forge.pki.rsa.PrivateKey): forge.pki.rsa.PublicKey {
  return forge.pki.setRsaPublicKey(key.n, key.e);
}

function newCertificate(
  key: forge.pki.rsa.PrivateKey,
  notBefore: Date,
  validDays: number,
): forge.pki.Certificate {
  const cert = forge.pki.createCertificate();
  cert.publicKey = publicKeyOf(key);
  // Positive 128-bit serial: the high bit cleared keeps the DER integer positive.
  const serial = randomBytes(16);
  serial[0] = (serial[0] ?? 0) & 0x7f;
  cert.serialNumber = serial.toString('hex');
  // Back-date a minute so that a peer with a slightly slow clock accepts a fresh certificate.
  cert.validity.notBefore = new Date(notBefore.getTime() - 60_000);
  cert.validity.notAfter = new Date(notBefore.getTime() + validDays * MS_PER_DAY);
  return cert;
}

export function createCertificateAuthority(
  commonName: string,
  validDays: number,
  notBefore = new Date(),
  givenKeyPem?: string,
): KeyPair {
  const { forgeKey, keyPem } = newRsaKey(givenKeyPem);
  const cert = newCertificate(forgeKey, notBefore, validDays);
  const subject = [utf8Attribute('commonName', commonName)];
  cert.setSubject(subject);
  cert.setIssuer(subject);
  cert.setExtensions([
    { name: 'basicConstraints', cA: true, critical: true },
    { name: 'keyUsage', keyCertSign: true, cRLSign: true, digitalSignature: true, critical: true },
    { name: 'subjectKeyIdentifier' },
  ]);
  cert.sign(forgeKey, forge.md.sha256.create());
  return { keyPem, certPem: forge.pki.certificateToPem(cert) };
}

export function issueCertificate(ca: KeyPair, request: CertificateRequest): KeyPair {
  const caCert = forge.pki.certificateFromPem(ca.certPem);
  const caKey = forge.pki.privateKeyFromPem(ca.keyPem);
  const { forgeKey, keyPem } = newRsaKey(request.keyPem);
  const cert = newCertificate(forgeKey, request.notBefore ?? new Date(), request.validDays);
  cert.setSubject([
    utf8Attribute('commonName', request.commonName),
    ...(request.organizations ?? []).map((o) => utf8Attribute('organizationName', o)),
  ]);
  cert.setIssuer(caCert.subject.attributes);
  const altNames = [
    ...(request.dnsNames ?? []).map((value) => ({ type: 2, value })),
    ...(request.ipAddresses ?? []).map((ip) => ({ type: 7, ip })),
  ];
  cert.setExtensions([
    { name: 'basicConstraints', cA: false },
    { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
    {
      name: 'extKeyUsage',
      serverAuth: request.usage !== 'client',
      clientAuth: request.usage !== 'server',
    },
    ...(altNames.length > 0 ? [{ name: 'subjectAltName', altNames }] : []),
    {
      name: 'authorityKeyIdentifier',
      keyIdentifier: caCert.generateSubjectKeyIdentifier().getBytes(),
    },
  ]);
  cert.sign(caKey, forge.md.sha256.create());
  return { keyPem, certPem: forge.pki.certificateToPem(cert) };
}
