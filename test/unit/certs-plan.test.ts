// Every renewal rule with a fake clock. Signing runs forge's pure-JS RSA, which is many times
// slower under jest than in the manager, so the branches are checked on `decide` with a few
// certificates made once, and only the flows that must produce new ones call planCertificates.
import { createPrivateKey, X509Certificate } from 'node:crypto';
import fc from 'fast-check';
import {
  CA_PROPAGATION_MS,
  type CertificatePlan,
  type Decision,
  decide,
  planCertificates,
  SECRET_KEYS,
  type SecretData,
  servingNames,
} from '../../certs/plan.ts';
import { newRsaKeyPem } from '../../certs/keys.ts';
import * as x509 from '../../certs/x509.ts';

type KeyPair = x509.KeyPair;

const DAY = 86_400_000;
const T0 = new Date('2030-01-01T00:00:00Z');
const at = (days: number, extraMs = 0): Date => new Date(T0.getTime() + days * DAY + extraMs);

const names = servingNames('nats-manager-webhook', 'kyma-system');
const SANS = [
  'DNS:nats-manager-webhook',
  'DNS:nats-manager-webhook.kyma-system',
  'DNS:nats-manager-webhook.kyma-system.svc',
  'DNS:nats-manager-webhook.kyma-system.svc.cluster.local',
  'IP Address:127.0.0.1',
];
const plan = (data: SecretData | undefined, now: Date): CertificatePlan =>
  planCertificates({ data, names, now, issuer: x509 });
const decideAt = (data: SecretData | undefined, now: Date): Decision =>
  decide({ data, names, now });

function bundleCertificates(bundle: string): X509Certificate[] {
  const blocks = bundle.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g);
  return (blocks ?? []).map((pem) => new X509Certificate(pem));
}

function signedBy(certPem: string, caPem: string): boolean {
  const cert = new X509Certificate(certPem);
  const ca = new X509Certificate(caPem);
  return cert.checkIssued(ca) && cert.verify(ca.publicKey);
}

function validAt(cert: X509Certificate, now: Date): boolean {
  return cert.validFromDate <= now && now < cert.validToDate;
}

function expectMatchingPair(pair: KeyPair): void {
  expect(new X509Certificate(pair.certPem).checkPrivateKey(createPrivateKey(pair.keyPem))).toBe(
    true,
  );
}

/** What the HTTPS server and the API servers rely on, whatever the plan decided. */
function expectUsable(result: CertificatePlan, now: Date): void {
  const cert = new X509Certificate(result.serving.certPem);
  const trusted = bundleCertificates(result.caBundle);
  expect(trusted.some((ca) => cert.checkIssued(ca) && cert.verify(ca.publicKey))).toBe(true);
  expect(validAt(cert, now)).toBe(true);
  expect(cert.subjectAltName?.split(', ').sort()).toEqual(SANS);
  expectMatchingPair(result.serving);
  expect(result.serving.caPem).toBe(result.caBundle);
  expect(result.data[SECRET_KEYS.cert]).toBe(result.serving.certPem);
  expect(result.data[SECRET_KEYS.key]).toBe(result.serving.keyPem);
}

/** Whatever the Secret held, what a decision keeps is sound: only the missing parts get made. */
function expectSound(decision: Decision, now: Date): void {
  expect(decision.action === 'keep').toBe(decision.reasons.length === 0);
  if (decision.ca !== undefined) {
    expectMatchingPair(decision.ca);
    const ca = new X509Certificate(decision.ca.certPem);
    expect(ca.ca && validAt(ca, now)).toBe(true);
  }
  if (decision.serving === undefined) return;
  expectMatchingPair(decision.serving);
  const cert = new X509Certificate(decision.serving.certPem);
  expect(validAt(cert, now)).toBe(true);
  expect(cert.subjectAltName?.split(', ').sort()).toEqual(SANS);
  const signers = [decision.ca?.certPem, decision.previousCa?.certPem].filter(
    (p) => p !== undefined,
  );
  expect(signers.some((caPem) => signedBy(decision.serving?.certPem ?? '', caPem))).toBe(true);
}

function servingFrom(ca: KeyPair, notBefore: Date): KeyPair {
  return x509.issueCertificate(ca, {
    commonName: names.commonName,
    dnsNames: names.dnsNames,
    ipAddresses: names.ipAddresses,
    usage: 'server',
    validDays: 90,
    notBefore,
  });
}

const caOf = (data: SecretData): KeyPair => ({
  certPem: data[SECRET_KEYS.caCert] ?? '',
  keyPem: data[SECRET_KEYS.caKey] ?? '',
});
const servingOf = (data: SecretData): KeyPair => ({
  certPem: data[SECRET_KEYS.cert] ?? '',
  keyPem: data[SECRET_KEYS.key] ?? '',
});
const withServing = (data: SecretData, pair: KeyPair): SecretData => ({
  ...data,
  [SECRET_KEYS.cert]: pair.certPem,
  [SECRET_KEYS.key]: pair.keyPem,
});

describe('certificate plan', () => {
  /** Made at T0 from nothing. */
  let fresh: CertificatePlan;
  /** Another Secret made at T0: a foreign CA and a serving pair it signed. */
  let other: CertificatePlan;
  /** A CA rotated on day 2440 while the serving certificate, from day 2400, is not yet due. */
  let midRotation: SecretData;

  beforeAll(() => {
    fresh = plan(undefined, T0);
    other = plan(undefined, T0);
    const serving = servingFrom(caOf(fresh.data), at(2400));
    midRotation = plan(withServing(fresh.data, serving), at(2440)).data;
  });

  it('creates a CA and a serving certificate for the Service names when there is no Secret', () => {
    expect(fresh.action).toBe('create-ca');
    expect(fresh.reasons[0]).toBe('no Secret yet');
    expect(Object.keys(fresh.data).sort()).toEqual(['ca.crt', 'ca.key', 'tls.crt', 'tls.key']);
    expect(fresh.caBundle).toBe(fresh.data['ca.crt']);
    expectUsable(fresh, T0);
    const ca = new X509Certificate(fresh.caBundle);
    expect(ca.ca).toBe(true);
    expect(ca.subject).toMatch(/^CN=nats-manager-webhook-ca@\d+$/);
    expect(ca.validToDate).toEqual(at(3650));
    expect(new X509Certificate(fresh.serving.certPem).validToDate).toEqual(at(90));
  });

  it('builds on keys made beforehand, off the event loop, when it is given them', async () => {
    const [caKey, servingKey] = await Promise.all([newRsaKeyPem(), newRsaKeyPem()]);
    const given = planCertificates({
      data: undefined,
      names,
      now: T0,
      keys: { ca: caKey, serving: servingKey },
      issuer: x509,
    });
    expect(given.data[SECRET_KEYS.caKey]).toBe(caKey);
    expect(given.serving.keyPem).toBe(servingKey);
    expectUsable(given, T0);
  });

  it('keeps everything on day 59 of the serving certificate', () => {
    const result = plan(fresh.data, at(59));
    expect(result.action).toBe('keep');
    expect(result.reasons).toEqual([]);
    expect(result.data).toEqual(fresh.data);
    expect(result.serving).toEqual(fresh.serving);
  });

  it('keeps a Secret without an issuer, and says so when one is needed and missing', () => {
    expect(planCertificates({ data: fresh.data, names, now: at(59) }).data).toEqual(fresh.data);
    expect(() => planCertificates({ data: fresh.data, names, now: at(61) })).toThrow(
      'a certificate must be made, and no issuer was given',
    );
  });

  it('renews the serving certificate from the same CA once less than a third is left', () => {
    const result = plan(fresh.data, at(61));
    expect(result.action).toBe('issue-serving');
    expect(result.reasons).toEqual([expect.stringMatching(/expires at .*: renewing$/)]);
    expect(result.data['ca.crt']).toBe(fresh.data['ca.crt']);
    expect(result.data['ca.key']).toBe(fresh.data['ca.key']);
    expect(result.serving.certPem).not.toBe(fresh.serving.certPem);
    expect(new X509Certificate(result.serving.certPem).validToDate).toEqual(at(61 + 90));
    expectUsable(result, at(61));
  });

  it('takes validity overrides, and refuses a serving validity that could outlive its CA', () => {
    const validity = { caDays: 30, servingDays: 1 };
    const short = planCertificates({ data: undefined, names, now: T0, validity, issuer: x509 });
    expect(new X509Certificate(short.caBundle).validToDate).toEqual(at(30));
    expect(new X509Certificate(short.serving.certPem).validToDate).toEqual(at(1));
    expect(() =>
      decide({ data: undefined, names, now: T0, validity: { caDays: 30, servingDays: 10 } }),
    ).toThrow('must be positive and under a third of the CA validity');
  });

  describe('reissues the serving certificate from the same CA when', () => {
    it.each<[string, () => SecretData, number, RegExp]>([
      ['it has expired', () => fresh.data, 120, /^serving certificate expired at /],
      [
        'its key belongs to another certificate',
        () => ({ ...fresh.data, [SECRET_KEYS.key]: other.serving.keyPem }),
        1,
        /^serving private key does not match the certificate$/,
      ],
      [
        'a foreign CA signed it',
        () => withServing(fresh.data, servingOf(other.data)),
        1,
        /^serving certificate is not signed by a trusted CA$/,
      ],
      [
        'it is missing',
        () => ({ ...fresh.data, [SECRET_KEYS.cert]: '' }),
        1,
        /^serving certificate is missing$/,
      ],
      [
        'it is not PEM',
        () => ({ ...fresh.data, [SECRET_KEYS.cert]: 'garbage' }),
        1,
        /^serving certificate is not a PEM certificate$/,
      ],
    ])('%s', (_, data, day, reason) => {
      const decision = decideAt(data(), at(day));
      expect(decision.action).toBe('issue-serving');
      expect(decision.reasons).toEqual([expect.stringMatching(reason)]);
      expect(decision.ca?.certPem).toBe(fresh.data['ca.crt']);
      expect(decision.serving).toBeUndefined();
    });

    it('the Service names change', () => {
      const renamed = servingNames('other-webhook', 'kyma-system');
      const decision = decide({ data: fresh.data, names: renamed, now: at(1) });
      expect(decision.action).toBe('issue-serving');
      expect(decision.reasons).toEqual([
        expect.stringMatching(/^serving names differ: has "DNS:.*", needs "DNS:other-webhook,/),
      ]);
    });
  });

  describe('creates a new CA, and says why, when', () => {
    it.each<[string, () => SecretData, number, string]>([
      [
        'the CA key is corrupt',
        () => ({ ...fresh.data, [SECRET_KEYS.caKey]: 'not a key' }),
        1,
        'CA private key is not a PEM key',
      ],
      [
        'the CA key belongs to another CA',
        () => ({ ...fresh.data, [SECRET_KEYS.caKey]: other.data['ca.key'] ?? '' }),
        1,
        'CA private key does not match the certificate',
      ],
      [
        'the CA slot holds a serving certificate',
        () => ({ ...fresh.data, 'ca.crt': fresh.serving.certPem, 'ca.key': fresh.serving.keyPem }),
        1,
        'CA certificate is not a CA',
      ],
      ['the Secret is empty', () => ({}), 1, 'CA certificate is missing'],
      [
        'the CA has expired',
        () => fresh.data,
        3651,
        'CA certificate expired at 2039-12-30T00:00:00.000Z',
      ],
      [
        'a skewed clock issued it in the future',
        () => fresh.data,
        -1,
        'CA certificate is not valid before 2029-12-31T23:59:00.000Z',
      ],
    ])('%s', (_, data, day, reason) => {
      const decision = decideAt(data(), at(day));
      expect(decision.action).toBe('create-ca');
      expect(decision.reasons[0]).toBe(reason);
      expect(decision.ca).toBeUndefined();
      expect(decision.previousCa).toBeUndefined();
      expect(decision.serving).toBeUndefined();
    });
  });

  describe('CA rotation', () => {
    // Less than a third of the CA's ten years is left after day 2433.
    const rotation = at(2440);
    const afterPropagation = new Date(rotation.getTime() + CA_PROPAGATION_MS + 60_000);
    let oldServing: KeyPair;
    let rotated: CertificatePlan;
    let renewed: CertificatePlan;

    beforeAll(() => {
      // The serving certificate is itself due (day 61 of 90): the case that has to wait.
      oldServing = servingFrom(caOf(fresh.data), new Date(rotation.getTime() - 61 * DAY));
      rotated = plan(withServing(fresh.data, oldServing), rotation);
      renewed = plan(rotated.data, afterPropagation);
    });

    it('first adds a new CA to the bundle and keeps serving the old certificate', () => {
      expect(rotated.action).toBe('rotate-ca');
      expect(rotated.reasons).toEqual([expect.stringMatching(/^CA expires at .*: rotating$/)]);
      expect(rotated.serving.certPem).toBe(oldServing.certPem);
      const [signing, previous] = bundleCertificates(rotated.caBundle);
      expect(signing?.toString()).toBe(
        new X509Certificate(rotated.data['ca.crt'] ?? '').toString(),
      );
      expect(previous?.toString()).toBe(new X509Certificate(fresh.caBundle).toString());
      expect(rotated.data[SECRET_KEYS.previousCaTrustedUntil]).toBe(
        new X509Certificate(oldServing.certPem).validToDate.toISOString(),
      );
      expectUsable(rotated, rotation);
    });

    it('waits for the new CA to reach the API servers before it signs', () => {
      const decision = decideAt(rotated.data, new Date(rotation.getTime() + CA_PROPAGATION_MS / 2));
      expect(decision.action).toBe('keep');
    });

    it('then renews the serving certificate from the new CA, still trusting the old one', () => {
      expect(renewed.action).toBe('issue-serving');
      expect(signedBy(renewed.serving.certPem, rotated.data['ca.crt'] ?? '')).toBe(true);
      expect(renewed.caBundle).toBe(rotated.caBundle);
      expectUsable(renewed, afterPropagation);
    });

    it('drops the old CA once the last certificate it signed has expired', () => {
      const expiry = new X509Certificate(oldServing.certPem).validToDate;
      expect(decideAt(renewed.data, new Date(expiry.getTime() - 1000)).action).toBe('keep');
      const retired = plan(renewed.data, expiry);
      expect(retired.action).toBe('retire-previous-ca');
      expect(retired.reasons).toEqual([
        'every certificate the previous CA signed has expired: dropped',
      ]);
      expect(retired.caBundle).toBe(rotated.data['ca.crt']);
      expect(Object.keys(retired.data).sort()).toEqual(['ca.crt', 'ca.key', 'tls.crt', 'tls.key']);
      expect(retired.serving.certPem).toBe(renewed.serving.certPem);
    });

    it('keeps an old serving certificate that is not due until it is', () => {
      expect(decideAt(midRotation, at(2440, 2 * CA_PROPAGATION_MS)).action).toBe('keep');
      const due = decideAt(midRotation, at(2461));
      expect(due.action).toBe('issue-serving');
      expect(due.previousCa).toBeDefined();
    });

    it('issues from the new CA at once when the old serving certificate is unusable', () => {
      const decision = decideAt({ ...fresh.data, [SECRET_KEYS.cert]: 'garbage' }, rotation);
      expect(decision.action).toBe('rotate-ca');
      expect(decision.reasons).toHaveLength(2);
      expect(decision.ca).toBeUndefined();
      expect(decision.previousCa).toBeUndefined();
      expect(decision.serving).toBeUndefined();
    });

    it('drops an unreadable previous CA, and reissues what only it could vouch for', () => {
      const data = { ...rotated.data, [SECRET_KEYS.previousCaTrustedUntil]: 'soon' };
      const decision = decideAt(data, new Date(rotation.getTime() + 60_000));
      expect(decision.action).toBe('issue-serving');
      expect(decision.reasons).toEqual([
        'previous CA is unreadable: dropped from the bundle',
        'serving certificate is not signed by a trusted CA',
      ]);
      expect(decision.previousCa).toBeUndefined();
    });
  });

  describe('corrupt Secret content', () => {
    const keys = Object.values(SECRET_KEYS);
    // Each key is dropped, truncated, replaced by noise, or taken from another key or from
    // another Secret: the ways a Secret is edited by hand or half-written.
    const corruption = fc.constantFrom('drop', 'truncate', 'noise', 'swap', 'foreign');
    const damage = fc.record({
      rotating: fc.boolean(),
      edits: fc.array(fc.tuple(fc.constantFrom(...keys), corruption, fc.nat()), { maxLength: 4 }),
      noise: fc.oneof(fc.string({ maxLength: 80 }), fc.constant('-----BEGIN CERTIFICATE-----\n')),
      day: fc.integer({ min: -2, max: 4000 }),
    });

    function corrupt(data: SecretData, edits: readonly [string, string, number][], noise: string) {
      const out: Record<string, string> = { ...data };
      for (const [key, how, n] of edits) {
        const value = out[key] ?? '';
        if (how === 'drop') Reflect.deleteProperty(out, key);
        if (how === 'truncate') out[key] = value.slice(0, n % (value.length + 1));
        if (how === 'noise') out[key] = noise;
        if (how === 'swap') out[key] = data[keys[n % keys.length] ?? ''] ?? '';
        if (how === 'foreign') out[key] = other.data[key] ?? noise;
      }
      return out;
    }

    it('never throws, and keeps only what is sound', () => {
      fc.assert(
        fc.property(damage, (input) => {
          const now = at(input.day);
          const data = corrupt(input.rotating ? midRotation : fresh.data, input.edits, input.noise);
          expectSound(decideAt(data, now), now);
        }),
        { numRuns: 300 },
      );
    });

    it('replaces it with a usable pair that the next pass keeps', () => {
      fc.assert(
        fc.property(damage, (input) => {
          const now = at(input.day);
          const result = plan(corrupt(fresh.data, input.edits, input.noise), now);
          expectUsable(result, now);
          expect(decideAt(result.data, now).action).toBe('keep');
        }),
        { numRuns: 3 },
      );
    });
  });
});
