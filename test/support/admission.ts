// The configuration admission tests judge against: the default served NATS and the manager's
// service account, no break-glass identities.
import type { AdmissionRequest } from '../../webhooks/review.ts';
import type { AdmissionConfig } from '../../webhooks/server.ts';

export const TEST_ADMISSION_CONFIG: AdmissionConfig = {
  natsName: 'eventing-nats',
  natsNamespace: 'kyma-system',
  managerUsername: 'system:serviceaccount:kyma-system:nats-manager',
  breakGlassUsers: [],
  breakGlassGroups: [],
};

/** The uid of every NATS admission request these helpers build. */
export const NATS_REQUEST_UID = '7f0c1d2e-2222-4a4a-8c8c-0123456789ab';

/** A NATS resource as an admission request carries it; no spec key when `spec` is undefined. */
export function natsObject(spec?: unknown, name = 'eventing-nats'): Record<string, unknown> {
  return {
    apiVersion: 'operator.kyma-project.io/v1alpha1',
    kind: 'NATS',
    metadata: { name, namespace: 'kyma-system' },
    ...(spec === undefined ? {} : { spec }),
  };
}

/** A CREATE of the served NATS with an empty spec by an ordinary user, as overridden. */
export function natsRequest(overrides: Partial<AdmissionRequest> = {}): AdmissionRequest {
  return {
    uid: NATS_REQUEST_UID,
    kind: { group: 'operator.kyma-project.io', version: 'v1alpha1', kind: 'NATS' },
    resource: { group: 'operator.kyma-project.io', version: 'v1alpha1', resource: 'nats' },
    subResource: '',
    name: 'eventing-nats',
    namespace: 'kyma-system',
    operation: 'CREATE',
    userInfo: { username: 'alice', groups: ['system:authenticated'] },
    object: natsObject({}),
    oldObject: null,
    dryRun: false,
    ...overrides,
  };
}
