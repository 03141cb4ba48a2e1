// `npm run build:binaries`: build (or find in the cache) every pinned binary the tests use, and
// pack the local node's images, so that the first test run spends its time testing. One Go build
// at a time: they are heavy, and the machines are small.
import { ensureBinaries, NODE_BINARIES } from './binaries.ts';
import { ensureImages } from './images.ts';

const paths = await ensureBinaries([
  'etcd',
  'kube-apiserver',
  'kube-controller-manager',
  'nats-server',
  ...NODE_BINARIES,
]);
for (const [name, path] of Object.entries(paths)) process.stdout.write(`${name}: ${path}\n`);
for (const image of await ensureImages((line) => process.stderr.write(`[localplane] ${line}\n`))) {
  process.stdout.write(`image ${image.name}: ${image.archive}\n`);
}
