import { findDrift } from '../../src/controller/drift.ts';
import type { KubeObject } from '../../src/kube/api.ts';

const MANAGER = 'nats-manager';

function configMap(
  extra: Partial<KubeObject> = {},
  labels: Record<string, string> = {},
): KubeObject {
  return {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: { name: 'c', namespace: 'n', labels: { app: 'nats', ...labels } },
    data: { 'nats.conf': 'port: 4222' },
    ...extra,
  };
}

/** A live object as the API server returns it after our apply of `applied`. */
function live(
  applied: KubeObject,
  fieldsV1: unknown,
  changes: Partial<KubeObject> = {},
): KubeObject {
  return {
    ...applied,
    metadata: {
      ...applied.metadata,
      uid: 'u',
      resourceVersion: '7',
      managedFields: [
        { manager: 'kubectl-edit', operation: 'Update', fieldsV1: { 'f:data': { 'f:other': {} } } },
        { manager: MANAGER, operation: 'Apply', fieldsV1 },
      ],
    },
    ...changes,
  };
}

const OWNED = {
  'f:metadata': { 'f:labels': { 'f:app': {}, 'f:team': {} } },
  'f:data': { 'f:nats.conf': {} },
};

test('no drift when every rendered field is live and we own nothing more', () => {
  const desired = configMap({}, { team: 'x' });
  expect(findDrift(desired, live(desired, OWNED), MANAGER)).toBeUndefined();
});

test('fields the server or other managers added are not drift', () => {
  const desired = configMap({}, { team: 'x' });
  const current = live(desired, OWNED, { data: { 'nats.conf': 'port: 4222', other: 'y' } });
  expect(findDrift(desired, current, MANAGER)).toBeUndefined();
});

test('a changed value is drift, named by its path', () => {
  const desired = configMap({}, { team: 'x' });
  const current = live(desired, OWNED, { data: { 'nats.conf': 'port: 1' } });
  expect(findDrift(desired, current, MANAGER)).toBe('data.nats.conf');
});

test('a field we applied before and no longer render is drift (the apply removes it)', () => {
  const desired = configMap();
  const applied = configMap({}, { team: 'x' });
  expect(findDrift(desired, live(applied, OWNED), MANAGER)).toBe('metadata.labels.team');
});

test('an object we never applied is drift, so that one apply takes ownership', () => {
  const desired = configMap();
  const current: KubeObject = { ...desired, metadata: { ...desired.metadata, managedFields: [] } };
  expect(findDrift(desired, current, MANAGER)).toBe('metadata.managedFields');
});

test('lists compare element by element; keyed elements are matched by key', () => {
  const port = { name: 'client', port: 4222 };
  const desired: KubeObject = {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: 's' },
    spec: { ports: [port] },
  };
  const owned = {
    'f:spec': {
      'f:ports': { 'k:{"port":4222,"protocol":"TCP"}': { '.': {}, 'f:name': {}, 'f:port': {} } },
    },
  };
  const served = { ...port, protocol: 'TCP', targetPort: 4222 };
  expect(findDrift(desired, live(desired, owned, { spec: { ports: [served] } }), MANAGER)).toBe(
    undefined,
  );
  expect(
    findDrift(desired, live(desired, owned, { spec: { ports: [served, { port: 1 }] } }), MANAGER),
  ).toBe('spec.ports');
  const moved = { ...desired, spec: { ports: [{ name: 'client', port: 4223 }] } };
  expect(
    findDrift(moved, live(moved, owned, { spec: { ports: [{ ...served, port: 4223 }] } }), MANAGER),
  ).toBe('spec.ports[{"port":4222,"protocol":"TCP"}]');
});

test('set elements (finalizers, args) are matched by value', () => {
  const desired: KubeObject = { apiVersion: 'v1', kind: 'X', metadata: { finalizers: ['a'] } };
  const owned = { 'f:metadata': { 'f:finalizers': { 'v:"a"': {}, 'v:"b"': {} } } };
  const current = live(desired, owned, {});
  expect(findDrift(desired, current, MANAGER)).toBe('metadata.finalizers["b"]');
});

test('only our Apply entry counts, not our status or Update entries', () => {
  const desired = configMap();
  const current: KubeObject = {
    ...desired,
    metadata: {
      ...desired.metadata,
      managedFields: [
        {
          manager: MANAGER,
          operation: 'Update',
          subresource: 'status',
          fieldsV1: { 'f:status': {} },
        },
        { manager: MANAGER, operation: 'Apply', fieldsV1: { 'f:data': { 'f:nats.conf': {} } } },
      ],
    },
  };
  expect(findDrift(desired, current, MANAGER)).toBeUndefined();
});
