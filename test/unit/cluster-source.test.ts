import { clusterSource, NotInClusterError } from '../../src/manager/cluster.ts';

describe('which cluster the manager uses', () => {
  it('is KUBECONFIG when set, even inside a pod', () => {
    expect(clusterSource({ KUBECONFIG: '/k', KUBERNETES_SERVICE_HOST: '10.0.0.1' }, true)).toBe(
      'kubeconfig',
    );
  });

  it('is the pod service account in a pod', () => {
    expect(clusterSource({ KUBERNETES_SERVICE_HOST: '10.0.0.1' }, true)).toBe('in-cluster');
  });

  it('is the embedded plane otherwise, never ~/.kube/config implicitly', () => {
    expect(clusterSource({}, false)).toBe('embedded');
    expect(clusterSource({ KUBECONFIG: '' }, false)).toBe('embedded');
    expect(clusterSource({ KUBERNETES_SERVICE_HOST: '10.0.0.1' }, false)).toBe('embedded');
  });

  it('with --in-cluster is the service account or an error, never the embedded plane', () => {
    expect(clusterSource({ KUBERNETES_SERVICE_HOST: '10.96.0.1' }, true, true)).toBe('in-cluster');
    expect(
      clusterSource({ KUBECONFIG: '/k', KUBERNETES_SERVICE_HOST: '10.96.0.1' }, true, true),
    ).toBe('in-cluster');
    expect(() => clusterSource({ KUBERNETES_SERVICE_HOST: '10.96.0.1' }, false, true)).toThrow(
      NotInClusterError,
    );
    expect(() => clusterSource({ KUBERNETES_SERVICE_HOST: '10.96.0.1' }, false, true)).toThrow(
      'there is no service account token',
    );
    expect(() => clusterSource({}, true, true)).toThrow('KUBERNETES_SERVICE_HOST is not set');
  });
});
