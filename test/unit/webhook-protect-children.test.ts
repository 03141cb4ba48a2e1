import request from 'supertest';
import {
  GARBAGE_COLLECTOR,
  KUBE_CONTROLLER_MANAGER,
  NAMESPACE_CONTROLLER,
  decideChildAdmission,
} from '../../webhooks/protect-children.ts';
import type {
  AdmissionOperation,
  AdmissionRequest,
  AdmissionResponse,
  GroupVersionResource,
} from '../../webhooks/review.ts';
import { createAdmissionApp } from '../../webhooks/server.ts';

const MANAGER = 'system:serviceaccount:kyma-system:nats-manager';
const config = {
  natsName: 'eventing-nats',
  natsNamespace: 'kyma-system',
  managerUsername: MANAGER,
  breakGlassUsers: ['ops@example.com'],
  breakGlassGroups: ['nats-oncall'],
};
const app = createAdmissionApp(config);
const UID = '3c2b1a00-3333-4b4b-9d9d-abcdefabcdef';

const RESOURCES = {
  configmaps: { group: '', version: 'v1', resource: 'configmaps' },
  secrets: { group: '', version: 'v1', resource: 'secrets' },
  services: { group: '', version: 'v1', resource: 'services' },
  statefulsets: { group: 'apps', version: 'v1', resource: 'statefulsets' },
  poddisruptionbudgets: { group: 'policy', version: 'v1', resource: 'poddisruptionbudgets' },
  destinationrules: { group: 'networking.istio.io', version: 'v1', resource: 'destinationrules' },
} satisfies Record<string, GroupVersionResource>;

const ownerReference = {
  apiVersion: 'operator.kyma-project.io/v1alpha1',
  kind: 'NATS',
  name: 'eventing-nats',
  uid: 'owner-uid',
  controller: true,
  blockOwnerDeletion: true,
};

function child(name: string, labelled = true, extra: Record<string, unknown> = {}) {
  return {
    metadata: {
      name,
      namespace: 'kyma-system',
      resourceVersion: '41',
      ...(labelled ? { labels: { 'app.kubernetes.io/managed-by': 'nats-manager' } } : {}),
      ownerReferences: [ownerReference],
    },
    spec: { replicas: 3 },
    ...extra,
  };
}

interface Change {
  readonly operation: AdmissionOperation;
  readonly resource?: GroupVersionResource;
  readonly name?: string;
  readonly namespace?: string;
  readonly username?: string;
  readonly groups?: string[];
  readonly object?: unknown;
  readonly oldObject?: unknown;
  readonly subResource?: string;
}

function childRequest(change: Change): AdmissionRequest {
  const name = change.name ?? 'eventing-nats';
  const labelled = child(name);
  const object = change.operation === 'DELETE' ? null : labelled;
  const oldObject = change.operation === 'CREATE' ? null : labelled;
  return {
    uid: UID,
    kind: { group: 'apps', version: 'v1', kind: 'StatefulSet' },
    resource: change.resource ?? RESOURCES.statefulsets,
    subResource: change.subResource ?? '',
    name,
    namespace: change.namespace ?? 'kyma-system',
    operation: change.operation,
    userInfo: {
      username: change.username ?? 'alice',
      groups: change.groups ?? ['system:authenticated'],
    },
    object: change.object === undefined ? object : change.object,
    oldObject: change.oldObject === undefined ? oldObject : change.oldObject,
    dryRun: false,
  };
}

const decide = (change: Change) => decideChildAdmission(childRequest(change), config);

describe('decideChildAdmission', () => {
  it.each(['UPDATE', 'DELETE'] as const)(
    'refuses %s of a managed child by anyone else, pointing at the NATS resource',
    (operation) => {
      expect(decide({ operation })).toEqual({
        allowed: false,
        message:
          'statefulsets "eventing-nats" is managed by NATS kyma-system/eventing-nats: edit the ' +
          'NATS resource instead (kubectl edit nats -n kyma-system eventing-nats)',
      });
    },
  );

  it.each(Object.values(RESOURCES))('protects $resource', (resource) => {
    expect(decide({ operation: 'UPDATE', resource }).allowed).toBe(false);
  });

  it('lets the manager write anything', () => {
    for (const operation of ['CREATE', 'UPDATE', 'DELETE'] as const) {
      expect(decide({ operation, username: MANAGER }).allowed).toBe(true);
    }
  });

  it('lets the manager write as the kubeconfig user it runs with off-cluster, without a warning', () => {
    const offCluster = { ...config, extraManagerUsernames: ['kubernetes-admin'] };
    const request = childRequest({ operation: 'UPDATE', username: 'kubernetes-admin' });
    expect(decideChildAdmission(request, offCluster)).toEqual({
      allowed: true,
      reason: 'the manager',
      warnings: [],
    });
    expect(decide({ operation: 'UPDATE', username: 'kubernetes-admin' }).allowed).toBe(false);
  });

  it('lets break-glass users and groups through, with a warning', () => {
    const byUser = decide({ operation: 'UPDATE', username: 'ops@example.com' });
    expect(byUser).toEqual({
      allowed: true,
      reason: 'break-glass',
      warnings: [
        'break-glass UPDATE of statefulsets "eventing-nats", managed by NATS ' +
          'kyma-system/eventing-nats: the NATS Manager may undo it on its next reconcile',
      ],
    });
    expect(
      decide({ operation: 'DELETE', groups: ['system:authenticated', 'nats-oncall'] }),
    ).toMatchObject({ allowed: true, reason: 'break-glass' });
  });

  it.each([GARBAGE_COLLECTOR, NAMESPACE_CONTROLLER, KUBE_CONTROLLER_MANAGER])(
    'lets %s delete a child',
    (username) => {
      expect(decide({ operation: 'DELETE', username })).toMatchObject({ allowed: true });
    },
  );

  describe('garbage collector updates', () => {
    const orphaned = {
      ...child('eventing-nats'),
      metadata: { ...child('eventing-nats').metadata, ownerReferences: [] },
    };

    it('may remove ownerReferences (orphaning) and finalizers (foreground deletion)', () => {
      expect(
        decide({ operation: 'UPDATE', username: GARBAGE_COLLECTOR, object: orphaned }).allowed,
      ).toBe(true);
      const withFinalizer = {
        ...child('eventing-nats'),
        metadata: { ...child('eventing-nats').metadata, finalizers: ['foregroundDeletion'] },
      };
      expect(
        decide({
          operation: 'UPDATE',
          username: GARBAGE_COLLECTOR,
          object: child('eventing-nats'),
          oldObject: withFinalizer,
        }).allowed,
      ).toBe(true);
    });

    it('may change nothing else', () => {
      const scaled = { ...child('eventing-nats'), spec: { replicas: 5 } };
      expect(
        decide({ operation: 'UPDATE', username: GARBAGE_COLLECTOR, object: scaled }).allowed,
      ).toBe(false);
      const unlabelled = child('eventing-nats', false);
      expect(
        decide({ operation: 'UPDATE', username: GARBAGE_COLLECTOR, object: unlabelled }).allowed,
      ).toBe(false);
    });

    it('is the only controller that may update: the namespace controller only deletes', () => {
      expect(
        decide({ operation: 'UPDATE', username: NAMESPACE_CONTROLLER, object: orphaned }).allowed,
      ).toBe(false);
    });
  });

  it('refuses removing the managed-by label', () => {
    const decision = decide({ operation: 'UPDATE', object: child('eventing-nats', false) });
    expect(decision).toEqual({
      allowed: false,
      message:
        'statefulsets "eventing-nats" is managed by NATS kyma-system/eventing-nats: its ' +
        'app.kubernetes.io/managed-by label cannot be removed; edit the NATS resource instead ' +
        '(kubectl edit nats -n kyma-system eventing-nats)',
    });
  });

  it('refuses creating an object labelled as managed', () => {
    const decision = decide({ operation: 'CREATE', resource: RESOURCES.secrets, name: 'fake' });
    expect(decision).toEqual({
      allowed: false,
      message:
        'secrets "fake": only the NATS Manager may label objects ' +
        'app.kubernetes.io/managed-by=nats-manager',
    });
  });

  it('refuses labelling an object as managed', () => {
    const decision = decide({
      operation: 'UPDATE',
      resource: RESOURCES.configmaps,
      name: 'mine',
      oldObject: child('mine', false),
      object: child('mine'),
    });
    expect(decision).toEqual({
      allowed: false,
      message:
        'configmaps "mine": only the NATS Manager may label objects ' +
        'app.kubernetes.io/managed-by=nats-manager',
    });
  });

  // However the change was sent (update, merge/strategic/JSON patch, apply), the apiserver
  // hands the webhook the resulting object, and the decision only reads old and new objects.
  it('judges a patch by the object it produces', () => {
    const patched = { ...child('eventing-nats'), spec: { replicas: 9 } };
    expect(decide({ operation: 'UPDATE', object: patched }).allowed).toBe(false);
    expect(decide({ operation: 'UPDATE', object: patched, username: MANAGER }).allowed).toBe(true);
  });

  describe('squatting a child name before the manager creates it', () => {
    const names = {
      configmaps: 'eventing-nats-config',
      secrets: 'eventing-nats-secret',
      services: 'eventing-nats',
      statefulsets: 'eventing-nats',
      poddisruptionbudgets: 'eventing-nats',
      destinationrules: 'eventing-nats',
    } as const;

    it.each(Object.entries(names))('refuses creating %s %s', (resource, name) => {
      const decision = decide({
        operation: 'CREATE',
        resource: RESOURCES[resource as keyof typeof RESOURCES],
        name,
        object: child(name, false),
      });
      expect(decision).toEqual({
        allowed: false,
        message:
          `${resource} ${JSON.stringify(name)} is reserved for NATS kyma-system/eventing-nats: ` +
          'the NATS Manager creates it; choose another name',
      });
    });

    it('allows other names, other namespaces and the manager itself', () => {
      const configMap = (name: string, namespace = 'kyma-system', username = 'alice') =>
        decide({
          operation: 'CREATE',
          resource: RESOURCES.configmaps,
          name,
          namespace,
          username,
          object: child(name, false),
        }).allowed;
      expect(configMap('eventing-nats')).toBe(true);
      expect(configMap('eventing-nats-config', 'default')).toBe(true);
      expect(configMap('eventing-nats-config', 'kyma-system', MANAGER)).toBe(true);
    });

    it('follows the configured NATS name', () => {
      const decision = decideChildAdmission(
        childRequest({
          operation: 'CREATE',
          resource: RESOURCES.secrets,
          name: 'events-nats-secret',
          object: child('events-nats-secret', false),
        }),
        { ...config, natsName: 'events' },
      );
      expect(decision.allowed).toBe(false);
    });
  });

  describe('the scale subresource', () => {
    const scale = {
      apiVersion: 'autoscaling/v1',
      kind: 'Scale',
      metadata: { name: 'eventing-nats', namespace: 'kyma-system' },
      spec: { replicas: 5 },
    };
    const scaleChange = (change: Partial<Change> = {}): Change => ({
      operation: 'UPDATE',
      subResource: 'scale',
      object: scale,
      oldObject: { ...scale, spec: { replicas: 3 } },
      ...change,
    });

    it('refuses scaling the managed StatefulSet, though a Scale has no labels', () => {
      expect(decide(scaleChange())).toEqual({
        allowed: false,
        message:
          'statefulsets "eventing-nats" is managed by NATS kyma-system/eventing-nats: set ' +
          'spec.cluster.size of the NATS resource instead ' +
          '(kubectl edit nats -n kyma-system eventing-nats)',
      });
    });

    it('allows other StatefulSets and the manager', () => {
      expect(decide(scaleChange({ name: 'other' })).allowed).toBe(true);
      expect(decide(scaleChange({ namespace: 'default' })).allowed).toBe(true);
      expect(decide(scaleChange({ username: MANAGER })).allowed).toBe(true);
    });
  });

  it('leaves the status subresource to the controllers', () => {
    expect(
      decide({
        operation: 'UPDATE',
        subResource: 'status',
        username: 'system:serviceaccount:kube-system:statefulset-controller',
      }).allowed,
    ).toBe(true);
  });

  it('ignores objects that are not managed', () => {
    const mine = child('mine', false);
    expect(
      decide({ operation: 'UPDATE', name: 'mine', object: mine, oldObject: mine }).allowed,
    ).toBe(true);
  });

  it('names the owning NATS resource from the ownerReference', () => {
    const owned = child('other-nats');
    owned.metadata.ownerReferences = [{ ...ownerReference, name: 'other' }];
    const decision = decide({ operation: 'DELETE', name: 'other-nats', oldObject: owned });
    expect(decision).toMatchObject({
      allowed: false,
      message: expect.stringContaining('managed by NATS kyma-system/other: ') as unknown,
    });
  });
});

describe('POST /protect-children', () => {
  const send = async (change: Change): Promise<AdmissionResponse> => {
    const res = await request(app)
      .post('/protect-children')
      .send({
        apiVersion: 'admission.k8s.io/v1',
        kind: 'AdmissionReview',
        request: childRequest(change),
      })
      .expect(200);
    return (res.body as { response: AdmissionResponse }).response;
  };

  it('denies with 403 Forbidden and the message', async () => {
    expect(await send({ operation: 'DELETE' })).toEqual({
      uid: UID,
      allowed: false,
      status: {
        apiVersion: 'v1',
        kind: 'Status',
        status: 'Failure',
        code: 403,
        reason: 'Forbidden',
        message:
          'statefulsets "eventing-nats" is managed by NATS kyma-system/eventing-nats: edit the ' +
          'NATS resource instead (kubectl edit nats -n kyma-system eventing-nats)',
        details: { name: 'eventing-nats', group: 'apps', kind: 'statefulsets' },
      },
    });
  });

  it('allows the garbage collector to delete', async () => {
    expect(await send({ operation: 'DELETE', username: GARBAGE_COLLECTOR })).toEqual({
      uid: UID,
      allowed: true,
    });
  });

  it('passes the break-glass warning on', async () => {
    const response = await send({ operation: 'UPDATE', username: 'ops@example.com' });
    expect(response.allowed).toBe(true);
    expect(response.warnings).toHaveLength(1);
  });
});
