// `npm run install:packages` (and before `npm start` and `npm test`): the local node's Debian
// packages, installed when missing and this is root; silent when there is nothing to do.
import { installNodePackages } from './debian-packages.ts';

const missing = installNodePackages((line) => process.stderr.write(`[localplane] ${line}\n`));
if (missing.length > 0 && process.getuid?.() === 0) {
  process.stderr.write(`[localplane] still missing: ${missing.join(' ')}\n`);
}
