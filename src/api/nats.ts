// TypeScript view of the NATS API, derived from the schema in nats-schema.ts, and the names the
// operator shares with the cluster (group, kind, conditions, finalizer, labels).
import type { V1ObjectMeta } from '@kubernetes/client-node';
import type { FromSchema } from 'json-schema-to-ts';
import type { NATS_STATES, natsSpecSchema, natsStatusSchema } from './nats-schema.ts';

export const NATS_GROUP = 'operator.kyma-project.io';
export const NATS_VERSION = 'v1alpha1';
export const NATS_API_VERSION = `${NATS_GROUP}/${NATS_VERSION}` as const;
export const NATS_KIND = 'NATS';
export const NATS_LIST_KIND = 'NATSList';
export const NATS_PLURAL = 'nats';
export const NATS_SINGULAR = 'nats';

export const NATS_FINALIZER = 'nats.operator.kyma-project.io/finalizer';
export const MANAGED_BY_LABEL = 'app.kubernetes.io/managed-by';
export const MANAGED_BY_VALUE = 'nats-manager';

// Kubernetes prunes fields a structural schema does not declare, so objects that declare
// properties are closed in the types; without this FromSchema adds `[key: string]: unknown`.
type Closed<S> = S extends { readonly properties: infer P }
  ? Omit<S, 'properties'> & {
      readonly additionalProperties: false;
      readonly properties: { readonly [K in keyof P]: Closed<P[K]> };
    }
  : S extends { readonly items: infer I }
    ? Omit<S, 'items'> & { readonly items: Closed<I> }
    : S;

/** A Kubernetes quantity: `1Gi`, `500m` or a plain number. */
export type Quantity = string | number;

/** A spec as users write it: every field optional. */
export type NatsSpec = FromSchema<
  Closed<typeof natsSpecSchema>,
  { keepDefaultedPropertiesOptional: true }
>;

/** Schema defaults make their fields required; the file-storage size stays optional. */
export type DefaultedNatsSpec = FromSchema<Closed<typeof natsSpecSchema>>;

export type NatsStatus = FromSchema<Closed<typeof natsStatusSchema>>;
export type NatsCondition = NonNullable<NatsStatus['conditions']>[number];

export interface Nats {
  apiVersion: typeof NATS_API_VERSION;
  kind: typeof NATS_KIND;
  metadata?: V1ObjectMeta;
  spec?: NatsSpec;
  status?: NatsStatus;
}

type NatsStateName = (typeof NATS_STATES)[number];
export const NatsState = {
  Ready: 'Ready',
  Processing: 'Processing',
  Error: 'Error',
  Deleting: 'Deleting',
  Warning: 'Warning',
} as const satisfies Record<NatsStateName, NatsStateName>;
export type NatsState = (typeof NatsState)[keyof typeof NatsState];

export const ConditionType = {
  StatefulSet: 'StatefulSet',
  Available: 'Available',
  AvailabilityZones: 'AvailabilityZones',
  Deleted: 'Deleted',
} as const;
export type ConditionType = (typeof ConditionType)[keyof typeof ConditionType];

export const ConditionReason = {
  // StatefulSet
  StatefulSetAvailable: 'Available',
  Processing: 'Processing',
  Pending: 'Pending',
  FailedToSyncResources: 'FailedToSyncResources',
  Forbidden: 'Forbidden',
  // Available and AvailabilityZones
  Deployed: 'Deployed',
  Deploying: 'Deploying',
  FailedProcessing: 'FailedProcessing',
  NotConfigured: 'NotConfigured',
  Unknown: 'Unknown',
  // Deleted
  DeletionError: 'DeletionError',
} as const;
export type ConditionReason = (typeof ConditionReason)[keyof typeof ConditionReason];

/** Which reasons each condition type uses with status True and False. */
export const CONDITION_REASONS = {
  StatefulSet: {
    True: ['Available'],
    False: ['Processing', 'Pending', 'FailedToSyncResources', 'Forbidden'],
  },
  Available: {
    True: ['Deployed'],
    False: ['Processing', 'Deploying', 'FailedProcessing', 'Forbidden'],
  },
  AvailabilityZones: {
    True: ['Deployed'],
    False: ['Pending', 'NotConfigured', 'Unknown', 'FailedProcessing'],
  },
  Deleted: { True: [], False: ['DeletionError'] },
} as const satisfies Record<
  ConditionType,
  { True: readonly ConditionReason[]; False: readonly ConditionReason[] }
>;
