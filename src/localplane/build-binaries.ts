// `npm run build:binaries`: build (or find in the cache) every pinned binary the tests use, so
// that the first test run spends its time testing.
import { ensureBinaries } from './binaries.ts';

const paths = await ensureBinaries([
  'etcd',
  'kube-apiserver',
  'kube-controller-manager',
  'nats-server',
]);
for (const [name, path] of Object.entries(paths)) process.stdout.write(`${name}: ${path}\n`);
