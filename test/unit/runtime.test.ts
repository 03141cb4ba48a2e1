import * as k8s from '@kubernetes/client-node';

describe('runtime', () => {
  it('runs on the pinned Node LTS', () => {
    expect(process.versions.node.split('.')[0]).toBe('24');
  });

  it('loads the ESM-only Kubernetes client as it is', () => {
    const kc = new k8s.KubeConfig();
    kc.loadFromOptions({
      clusters: [{ name: 'c', server: 'https://127.0.0.1:1' }],
      users: [{ name: 'u' }],
      contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
      currentContext: 'x',
    });
    expect(kc.makeApiClient(k8s.CoreV1Api)).toBeInstanceOf(k8s.CoreV1Api);
  });
});
