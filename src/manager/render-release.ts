// `npm run release`: the release files, rendered from deploy/ and the default NATS resource.
//   nats-manager.yaml     `kubectl kustomize deploy/overlays/default`: everything but a namespace
//   nats-default-cr.yaml  config/samples/nats.yaml, the NATS resource the manager serves by default
// Committed under release/ and checked against kustomize by test/integration/deploy-manifests.test.ts.
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const RELEASE_MANAGER_FILE = 'release/nats-manager.yaml';
export const RELEASE_CR_FILE = 'release/nats-default-cr.yaml';
export const DEFAULT_OVERLAY = 'deploy/overlays/default';
export const DEFAULT_CR_SOURCE = 'config/samples/nats.yaml';

const HEADER =
  '# Rendered by `npm run release` from deploy/overlays/default (kubectl kustomize); do not edit.\n' +
  '# kubectl apply --server-side -f nats-manager.yaml   (the kyma-system namespace must exist)\n';

/** The release files and their content; `kustomize` renders an overlay directory. */
export function renderRelease(kustomize: (dir: string) => string): Record<string, string> {
  return {
    [RELEASE_MANAGER_FILE]: HEADER + kustomize(DEFAULT_OVERLAY),
    [RELEASE_CR_FILE]: readFileSync(`${ROOT}${DEFAULT_CR_SOURCE}`, 'utf8'),
  };
}

export function kubectlKustomize(dir: string): string {
  return execFileSync('kubectl', ['kustomize', `${ROOT}${dir}`], {
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
  });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  mkdirSync(`${ROOT}release`, { recursive: true });
  for (const [file, content] of Object.entries(renderRelease(kubectlKustomize))) {
    writeFileSync(`${ROOT}${file}`, content);
    console.log(`wrote ${file}`);
  }
}
