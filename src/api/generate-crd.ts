// Writes the NATS CRD manifest from crd.ts: `npm run generate`.
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { NATS_CRD_FILE, renderNatsCrdYaml } from './crd.ts';

const target = fileURLToPath(new URL(`../../${NATS_CRD_FILE}`, import.meta.url));
await mkdir(dirname(target), { recursive: true });
await writeFile(target, renderNatsCrdYaml());
console.log(`wrote ${NATS_CRD_FILE}`);
