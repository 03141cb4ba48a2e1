// `npm run build:image`: the manager's image as an OCI archive, without a container engine.
// `npm run bundle` writes the bundle alone; `--rootfs DIR` writes the image's files into DIR with
// the Node that runs this script (what the Dockerfile's build stage does).
import { fileURLToPath } from 'node:url';
import {
  buildManagerImage,
  bundleManager,
  LOCAL_MANAGER_IMAGE,
  writeRootfs,
} from './manager-image.ts';

const dist = (file: string): string =>
  fileURLToPath(new URL(`../../dist/${file}`, import.meta.url));

const rootfsAt = process.argv.indexOf('--rootfs');
if (rootfsAt >= 0) {
  const dir = process.argv[rootfsAt + 1] ?? '';
  if (dir === '') throw new Error('--rootfs needs a directory');
  await writeRootfs(dir, process.execPath);
  console.log(`wrote the image's files into ${dir}`);
} else if (process.argv.includes('--bundle-only')) {
  const bundle = await bundleManager(dist('manager/main.mjs'));
  console.log(`bundled ${bundle.file} (${String(bundle.bytes)} bytes)`);
} else {
  const name = process.argv[2] ?? LOCAL_MANAGER_IMAGE;
  const image = await buildManagerImage(dist('nats-manager-image.tar'), name);
  console.log(
    `packed ${image.name} -> ${image.archive} (${String(image.archiveBytes)} bytes; bundle ` +
      `${String(image.bundleBytes)} bytes; libraries: ${image.libraries.join(', ')})`,
  );
}
