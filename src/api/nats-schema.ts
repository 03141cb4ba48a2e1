// The single source of truth for the NATS API (operator.kyma-project.io/v1alpha1): the CRD, the
// TypeScript types and the ajv validator are all derived from `natsSchema`. Keep it a structural
// OpenAPI v3 schema (see test/unit/api-schema.test.ts): every field typed and described, no
// keyword that apiextensions.k8s.io/v1 JSONSchemaProps does not know.

/** resource.Quantity's pattern, exactly as controller-gen emits it. */
export const QUANTITY_PATTERN =
  '^(\\+|-)?(([0-9]+(\\.[0-9]*)?)|(\\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\\+|-)?(([0-9]+(\\.[0-9]*)?)|(\\.[0-9]+))))?$';

// Quantities are int-or-string in the API: `1Gi` and `1073741824` are both accepted.
const quantity = {
  'x-kubernetes-int-or-string': true,
  anyOf: [{ type: 'integer' }, { type: 'string' }],
  pattern: QUANTITY_PATTERN,
} as const;

export const NATS_STATES = ['Ready', 'Processing', 'Error', 'Deleting', 'Warning'] as const;

// In CEL an int-or-string value is dyn; string() accepts both, and the guards leave invalid
// strings to the `pattern` check instead of failing the rule with an evaluation error.
const MEM_STORAGE_SIZE_POSITIVE =
  '!has(self.enabled) || !self.enabled || !has(self.size)' +
  ' || !isQuantity(string(self.size)) || quantity(string(self.size)).isGreaterThan(quantity("0"))';
const QUANTITY_UNCHANGED =
  '!isQuantity(string(self)) || !isQuantity(string(oldSelf))' +
  ' || quantity(string(self)).compareTo(quantity(string(oldSelf))) == 0';

const clusterSchema = {
  type: 'object',
  description: 'Settings of the NATS cluster.',
  // Parents default to {} so that the nested defaults also apply when the parent is absent:
  // Kubernetes applies a default only where the enclosing object exists.
  default: {},
  properties: {
    size: {
      type: 'integer',
      description:
        'Number of NATS servers (pods). Must be odd so that JetStream keeps a quorum; ' +
        'a cluster of more than one server cannot be reduced to a single server.',
      default: 3,
      minimum: 1,
      'x-kubernetes-validations': [
        { rule: 'self % 2 != 0', message: 'size only accepts odd numbers' },
        {
          rule: '!(oldSelf > 1 && self == 1)',
          message: 'size cannot be set to 1 once it was greater than 1',
        },
      ],
    },
  },
} as const;

const memStorageSchema = {
  type: 'object',
  description: 'JetStream memory storage.',
  default: {},
  properties: {
    enabled: {
      type: 'boolean',
      description: 'Whether JetStream may keep streams in memory.',
      default: true,
    },
    size: {
      ...quantity,
      description: 'Upper bound of the memory JetStream may use per server (max_memory_store).',
      default: '1Gi',
    },
  },
  'x-kubernetes-validations': [
    {
      rule: MEM_STORAGE_SIZE_POSITIVE,
      message: 'memStorage can only be enabled with a size greater than 0',
      fieldPath: '.size',
    },
  ],
} as const;

const fileStorageSchema = {
  type: 'object',
  description:
    'JetStream file storage: one PersistentVolumeClaim per server. Both fields are immutable ' +
    'once set because the StatefulSet volume claim templates cannot change.',
  default: {},
  properties: {
    storageClassName: {
      type: 'string',
      description:
        'Storage class of the volume claims; "default" leaves the class unset so that the ' +
        "cluster's default storage class is used.",
      default: 'default',
      'x-kubernetes-validations': [
        { rule: 'self == oldSelf', message: 'storageClassName is immutable once set' },
      ],
    },
    size: {
      ...quantity,
      // No schema default: the controller uses 1Gi when it is absent, and a CR created without
      // it may set it later (a transition rule only runs when the old value exists).
      description:
        'Size of each volume claim (max_file_store). When absent the controller uses 1Gi; ' +
        'it may be set later, but not changed or removed once set.',
      'x-kubernetes-validations': [
        { rule: QUANTITY_UNCHANGED, message: 'fileStorage.size is immutable once set' },
      ],
    },
  },
  'x-kubernetes-validations': [
    {
      // Removing size would silently change the effective size to the controller's 1Gi.
      rule: '!has(oldSelf.size) || has(self.size)',
      message: 'fileStorage.size cannot be removed once set',
      fieldPath: '.size',
    },
  ],
} as const;

const jetStreamSchema = {
  type: 'object',
  description: 'JetStream storage settings.',
  default: {},
  properties: {
    memStorage: memStorageSchema,
    fileStorage: fileStorageSchema,
  },
} as const;

const loggingSchema = {
  type: 'object',
  description: 'Logging of the NATS servers.',
  default: {},
  properties: {
    debug: { type: 'boolean', description: 'Enables debug logging.', default: false },
    trace: {
      type: 'boolean',
      description: 'Enables protocol trace logging (very verbose).',
      default: false,
    },
  },
} as const;

const resourcesSchema = {
  type: 'object',
  description:
    'Compute resources of the nats container; only cpu and memory are used. The default ' +
    'applies only when resources is absent as a whole, so that a user-given limit is never ' +
    'paired with a default request above it.',
  default: {
    limits: { cpu: '500m', memory: '1Gi' },
    requests: { cpu: '40m', memory: '64Mi' },
  },
  properties: {
    limits: {
      type: 'object',
      description: 'Maximum compute resources, by resource name.',
      additionalProperties: quantity,
    },
    requests: {
      type: 'object',
      description: 'Guaranteed compute resources, by resource name.',
      additionalProperties: quantity,
    },
  },
} as const;

export const natsSpecSchema = {
  type: 'object',
  description: 'Desired state of the NATS cluster. Every field is optional.',
  default: {},
  properties: {
    cluster: clusterSchema,
    jetStream: jetStreamSchema,
    logging: loggingSchema,
    resources: resourcesSchema,
    labels: {
      type: 'object',
      description: 'Labels added to every object the operator creates for this NATS.',
      additionalProperties: { type: 'string' },
    },
    annotations: {
      type: 'object',
      description: 'Annotations added to every object the operator creates for this NATS.',
      additionalProperties: { type: 'string' },
    },
  },
} as const;

// The shape of metav1.Condition, as Kubernetes validates it.
const conditionSchema = {
  type: 'object',
  description: 'One aspect of the observed state.',
  required: ['type', 'status', 'lastTransitionTime', 'reason', 'message'],
  properties: {
    type: {
      type: 'string',
      description: 'Condition type, in CamelCase.',
      maxLength: 316,
      pattern:
        '^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$',
    },
    status: {
      type: 'string',
      description: 'True, False or Unknown.',
      enum: ['True', 'False', 'Unknown'],
    },
    observedGeneration: {
      type: 'integer',
      format: 'int64',
      minimum: 0,
      description: 'metadata.generation the condition was computed from.',
    },
    lastTransitionTime: {
      type: 'string',
      format: 'date-time',
      description: 'When the status last changed.',
    },
    reason: {
      type: 'string',
      description: 'Machine-readable CamelCase reason for the last transition.',
      minLength: 1,
      maxLength: 1024,
      pattern: '^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$',
    },
    message: {
      type: 'string',
      description: 'Human-readable details of the last transition; may be empty.',
      maxLength: 32768,
    },
  },
} as const;

export const natsStatusSchema = {
  type: 'object',
  description: 'Observed state of the NATS cluster, written by the operator.',
  properties: {
    state: {
      type: 'string',
      description: 'Summary of the conditions.',
      enum: NATS_STATES,
    },
    url: {
      type: 'string',
      description: 'Client URL of the NATS service, set once the cluster is ready.',
    },
    availabilityZonesUsed: {
      type: 'integer',
      description: 'Number of availability zones the NATS pods run in.',
      minimum: 0,
    },
    observedGeneration: {
      type: 'integer',
      format: 'int64',
      minimum: 0,
      description: 'metadata.generation this status was computed from.',
    },
    conditions: {
      type: 'array',
      description: 'Conditions of the NATS cluster, at most one per type.',
      items: conditionSchema,
      'x-kubernetes-list-type': 'map',
      'x-kubernetes-list-map-keys': ['type'],
    },
  },
} as const;

/** The openAPIV3Schema of the NATS resource. */
export const natsSchema = {
  type: 'object',
  description: 'A NATS JetStream cluster managed by the NATS Manager.',
  properties: {
    apiVersion: {
      type: 'string',
      description: 'Versioned schema of this representation of the object.',
    },
    kind: { type: 'string', description: 'REST resource kind of this object.' },
    // Kubernetes forbids anything but `type` here (even a description); it owns metadata.
    metadata: { type: 'object' },
    spec: natsSpecSchema,
    status: natsStatusSchema,
  },
} as const;
