// The configuration admission tests judge against: the default served NATS and the manager's
// service account, no break-glass identities.
import type { AdmissionConfig } from '../../webhooks/server.ts';

export const TEST_ADMISSION_CONFIG: AdmissionConfig = {
  natsName: 'eventing-nats',
  natsNamespace: 'kyma-system',
  managerUsername: 'system:serviceaccount:kyma-system:nats-manager',
  breakGlassUsers: [],
  breakGlassGroups: [],
};
