// Writes the generated files of deploy/ from manifests.ts: `npm run generate`.
import { writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { renderManifests } from './manifests.ts';

for (const [file, content] of Object.entries(renderManifests())) {
  await writeFile(fileURLToPath(new URL(`../../${file}`, import.meta.url)), content);
  console.log(`wrote ${file}`);
}
