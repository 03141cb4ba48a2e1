// The single source of truth for the NATS API (operator.kyma-project.io/v1alpha1): the CRD, the
// TypeScript types and the ajv validator are all derived from `natsSchema`. Keep it a structural
// OpenAPI v3 schema (see test/unit/api-schema.test.ts): every field typed and described, no
// keyword that apiextensions.k8s.io/v1 JSONSchemaProps does not know.

/**
 * The quantities the API accepts: resource.Quantity's grammar with bounded parts, no sign but an
 * optional `+`, and whole exponents of at most two digits. Every value it admits parses in
 * microseconds, in our webhook and in the apiserver's CEL `quantity()`; controller-gen's pattern
 * (`[eE](\+|-)?[0-9]+...`) admits `1e2147483647`, whose comparison keeps kube-apiserver at a full
 * core for minutes. Sizes and resources are never negative, so the sign is refused here rather
 * than after the object is stored. At most 19 integer digits (int64) and 9 fraction digits
 * (nano, the finest unit Kubernetes keeps).
 */
export const QUANTITY_PATTERN =
  '^\\+?(([0-9]{1,19}(\\.[0-9]{0,9})?)|(\\.[0-9]{1,9}))(([KMGTPE]i)|[numkMGTPE]|([eE][+-]?[0-9]{1,2}))?$';

/** Longer than any string QUANTITY_PATTERN admits (33); bounds the CEL cost estimate. */
export const QUANTITY_MAX_LENGTH = 40;

// Quantities are int-or-string in the API: `1Gi` and `1073741824` are both accepted. The
// pattern and maxLength apply to strings; integers are int64 by the schema itself.
const quantity = {
  'x-kubernetes-int-or-string': true,
  anyOf: [{ type: 'integer' }, { type: 'string' }],
  pattern: QUANTITY_PATTERN,
  maxLength: QUANTITY_MAX_LENGTH,
} as const;

export const NATS_STATES = ['Ready', 'Processing', 'Error', 'Deleting', 'Warning'] as const;

/** nats-server reads store sizes into an int64 of bytes. */
export const MAX_STORE_BYTES = '9223372036854775807';

// CEL rules that parse quantities. The apiserver runs CEL even on a value that failed `pattern`
// (only type, required, enum and length failures stop it), so every `quantity()` call is
// guarded by the same bounded pattern: no rule ever parses a string the pattern refused. In CEL
// an int-or-string value is dyn; string() accepts both.
const celPattern = `r'${QUANTITY_PATTERN}'`;
const bounded = (value: string): string => `string(${value}).matches(${celPattern})`;
const q = (value: string): string => `quantity(string(${value}))`;
const CEL_MAX_STORE = `quantity('${MAX_STORE_BYTES}')`;

/** A size that is no larger than nats-server can store (unparseable ones are left to `pattern`). */
const SIZE_WITHIN_MAX = `!${bounded('self')} || !${q('self')}.isGreaterThan(${CEL_MAX_STORE})`;

/**
 * A stored file-storage size that a claim could have been made with: parseable, above zero and
 * within the maximum. A zero size means "unset" (the Go manager's clients send unset quantities
 * as "0"), and a value stored before these rules existed may be unparseable: neither fixes the
 * claims' size, so either may still be changed to a real size.
 */
const oldSizeIsReal = (old: string): string =>
  `(${bounded(old)} && sign(${q(old)}) > 0 && !${q(old)}.isGreaterThan(${CEL_MAX_STORE}))`;

/** A real size may grow (the manager grows the claims), never shrink: a claim cannot. */
const FILE_SIZE_NOT_LOWERED =
  `!${oldSizeIsReal('oldSelf')} || !${bounded('self')}` +
  ` || !${q('self')}.isLessThan(${q('oldSelf')})`;
const FILE_SIZE_KEPT = `!has(oldSelf.size) || has(self.size) || !${oldSizeIsReal('oldSelf.size')}`;

/** Largest spec.cluster.size: see the maximum in clusterSchema. */
export const MAX_CLUSTER_SIZE = 999;

/** A label value (validation.IsValidLabelValue): empty, or a name part of at most 63. */
export const LABEL_VALUE_PATTERN = '^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$';

/** A storage class name is a DNS subdomain; "" (no class) is allowed as in a claim. */
export const STORAGE_CLASS_PATTERN =
  '^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*)?$';

/**
 * Label and annotation keys are qualified names (validation.IsQualifiedName): an optional DNS
 * subdomain prefix of at most 253 and `/`, then a name part of at most 63. Every child would be
 * refused for another key, so the CRD refuses it too; the count bound keeps the rule's cost low.
 */
export const MAX_METADATA_ENTRIES = 256;
const QUALIFIED_KEYS = {
  rule:
    "self.all(k, k.matches(r'^([^/]{1,253}/)?[^/]{1,63}$') && " +
    "k.matches(r'^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?" +
    "[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$'))",
  message:
    'keys must be qualified names: an optional DNS subdomain prefix (at most 253) and "/", ' +
    "then a name part of at most 63 alphanumeric characters, '-', '_' or '.', starting and " +
    'ending with an alphanumeric character',
} as const;

/** Messages the Go manager's users and tests rely on come first; ours add the detail. */
export const MESSAGES = {
  sizeOdd: 'size only accepts odd numbers',
  sizeNotToOne: 'size cannot be set to 1 if size was greater than 1',
  memStorageSize: 'memStorage can only be enabled if size is not 0',
  fileStorageImmutable: 'fileStorage is immutable once it was set',
  fileStorageShrink:
    'fileStorage is immutable once it was set: its size can grow, but not be lowered, as a volume claim cannot shrink',
  storeTooLarge: `must be at most ${MAX_STORE_BYTES} bytes, the largest store nats-server accepts`,
} as const;

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
      // Every server is a route in every nats.conf: beyond this the ConfigMap outgrows what
      // etcd stores (test/unit/render-limits.test.ts renders it with the longest names).
      maximum: MAX_CLUSTER_SIZE,
      'x-kubernetes-validations': [
        { rule: 'self % 2 != 0', message: MESSAGES.sizeOdd },
        { rule: '!(oldSelf > 1 && self == 1)', message: MESSAGES.sizeNotToOne },
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
      description:
        'Upper bound of the memory JetStream may use per server (max_memory_store). A zero ' +
        'quantity string ("0") means unset: the servers get 1Gi.',
      default: '1Gi',
      'x-kubernetes-validations': [{ rule: SIZE_WITHIN_MAX, message: MESSAGES.storeTooLarge }],
    },
  },
  'x-kubernetes-validations': [
    {
      // The Go manager's rule: it compares with the integer 0, so the string "0" its clients
      // send for an unset size passes (and means the default). The has() guards are for the
      // apiserver's check of the `{}` default, which it validates without nested defaults.
      rule: '!has(self.enabled) || !self.enabled || !has(self.size) || self.size != 0',
      message: MESSAGES.memStorageSize,
      fieldPath: '.size',
    },
  ],
} as const;

const fileStorageSchema = {
  type: 'object',
  description:
    'JetStream file storage: one PersistentVolumeClaim per server. The storage class is ' +
    'immutable once set; the size may only grow, and only where the storage class allows ' +
    'volume expansion (the manager grows the claims and re-creates the StatefulSet around its ' +
    'running pods).',
  default: {},
  properties: {
    storageClassName: {
      type: 'string',
      description:
        'Storage class of the volume claims; "default" leaves the class unset so that the ' +
        "cluster's default storage class is used.",
      default: 'default',
      // A volume claim refuses any other class name, and the name cannot change afterwards.
      maxLength: 253,
      pattern: STORAGE_CLASS_PATTERN,
      'x-kubernetes-validations': [
        {
          rule: 'self == oldSelf',
          message: `${MESSAGES.fileStorageImmutable}: storageClassName cannot change`,
        },
      ],
    },
    size: {
      ...quantity,
      // No schema default: the controller uses the default size when it is absent, and a CR
      // created without it may set it later (a transition rule only runs with an old value).
      description:
        'Size of each volume claim; JetStream may fill it less headroom (max_file_store: 10%, ' +
        'at least 256Mi, at most 25%). When absent or zero ("0") the manager ' +
        'uses 1Gi (20Gi on Alibaba Cloud); a size may be set later, and once above zero raised ' +
        '(where the storage class allows volume expansion) but not lowered or removed.',
      'x-kubernetes-validations': [
        { rule: SIZE_WITHIN_MAX, message: MESSAGES.storeTooLarge },
        {
          rule: FILE_SIZE_NOT_LOWERED,
          message: MESSAGES.fileStorageShrink,
        },
      ],
    },
  },
  'x-kubernetes-validations': [
    {
      // Removing size would silently change the effective size to the default.
      rule: FILE_SIZE_KEPT,
      message: `${MESSAGES.fileStorageImmutable}: size cannot be removed`,
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
      maxProperties: MAX_METADATA_ENTRIES,
      additionalProperties: { type: 'string', maxLength: 63, pattern: LABEL_VALUE_PATTERN },
      'x-kubernetes-validations': [QUALIFIED_KEYS],
    },
    annotations: {
      type: 'object',
      description:
        'Annotations added to every object the operator creates for this NATS (at most 256KiB ' +
        "in all with the operator's own, checked by the webhook).",
      maxProperties: MAX_METADATA_ENTRIES,
      additionalProperties: { type: 'string' },
      'x-kubernetes-validations': [QUALIFIED_KEYS],
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
