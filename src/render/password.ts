// The one impure part of rendering: the $SYS password, generated once when the Secret is missing.
import { randomBytes as cryptoRandomBytes } from 'node:crypto';

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
const LENGTH = 60;
// Bytes at or above the largest multiple of 62 are skipped, so every character is equally likely.
const UNBIASED_LIMIT = 256 - (256 % ALPHABET.length);

/** 60 characters of [A-Za-z0-9] from a cryptographic random source (replaceable for tests). */
export function generateSystemAccountPassword(
  randomBytes: (size: number) => Uint8Array = cryptoRandomBytes,
): string {
  let password = '';
  while (password.length < LENGTH) {
    for (const byte of randomBytes(LENGTH)) {
      if (byte < UNBIASED_LIMIT && password.length < LENGTH) {
        password += ALPHABET.charAt(byte % ALPHABET.length);
      }
    }
  }
  return password;
}
