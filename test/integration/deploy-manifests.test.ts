// What operators apply from deploy/ must be accepted by a real apiserver as it is.
import { kubectl } from '../support/kube.ts';

describe('deploy/ manifests', () => {
  beforeAll(async () => {
    // Namespaced objects are only dry-run checked when their namespace exists.
    await kubectl(['create', 'namespace', 'kyma-system']).catch((error: unknown) => {
      if (!String(error).includes('AlreadyExists')) throw error;
    });
  });

  it('pass server-side dry-run as a kustomization', async () => {
    const { stdout } = await kubectl(['apply', '--dry-run=server', '-k', 'deploy/']);
    const applied = stdout.trim().split('\n');
    const names = applied.map((line) => line.split(' ')[0]);
    expect(names).toEqual(
      expect.arrayContaining([
        'customresourcedefinition.apiextensions.k8s.io/nats.operator.kyma-project.io',
        'deployment.apps/nats-manager',
        'service/nats-manager-webhook',
        'validatingwebhookconfiguration.admissionregistration.k8s.io/nats-manager-validating',
        'mutatingwebhookconfiguration.admissionregistration.k8s.io/nats-manager-mutating',
        'priorityclass.scheduling.k8s.io/nats-manager-priority-class',
        'clusterrole.rbac.authorization.k8s.io/nats-manager',
      ]),
    );
    expect(applied.every((line) => line.endsWith('(server dry run)'))).toBe(true);
    expect(applied).toHaveLength(15);
  });
});
