// RSA keys, from node:crypto alone: what the manager needs at every start is kept apart from
// x509.ts, which loads node-forge.
import { generateKeyPair, generateKeyPairSync } from 'node:crypto';
import { promisify } from 'node:util';

const generateKeyPairAsync = promisify(generateKeyPair);

/**
 * A new RSA key as PKCS#8 PEM, generated on libuv's thread pool: 50-600 ms of prime search that
 * would otherwise stop the event loop, and with it the webhook server, during a rotation.
 */
export async function newRsaKeyPem(): Promise<string> {
  const { privateKey } = await generateKeyPairAsync('rsa', {
    modulusLength: 2048,
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
    publicKeyEncoding: { type: 'spki', format: 'pem' },
  });
  return privateKey;
}

/** An RSA key pair as PEM, for service-account token signing. */
export function createSigningKeyPair(): { privateKeyPem: string; publicKeyPem: string } {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return {
    privateKeyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
  };
}
