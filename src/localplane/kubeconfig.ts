import { dump } from 'js-yaml';
import type { KeyPair } from '../../certs/x509.ts';

const base64 = (pem: string): string => Buffer.from(pem).toString('base64');

/** A self-contained kubeconfig (certificates inlined) for one client-certificate user. */
export function kubeconfigYaml(
  server: string,
  caPem: string,
  user: string,
  client: KeyPair,
): string {
  const name = 'nats-manager-local';
  return dump({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name, cluster: { server, 'certificate-authority-data': base64(caPem) } }],
    users: [
      {
        name: user,
        user: {
          'client-certificate-data': base64(client.certPem),
          'client-key-data': base64(client.keyPem),
        },
      },
    ],
    contexts: [{ name, context: { cluster: name, user } }],
    'current-context': name,
  });
}
