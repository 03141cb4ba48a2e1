// The webhook and RBAC rules in deploy/ derive from the child table: committed exactly as
// generated, and covering every child kind.
import { readFileSync } from 'node:fs';
import { load, loadAll } from 'js-yaml';
import { CHILD_KINDS } from '../../src/render/children.ts';
import {
  CLUSTER_ROLE_FILE,
  renderManifests,
  ROLES_FILE,
  VALIDATING_WEBHOOK_FILE,
} from '../../src/manager/manifests.ts';

const committed = (file: string): string =>
  readFileSync(new URL(`../../${file}`, import.meta.url), 'utf8');

interface Rule {
  apiGroups: string[];
  resources: string[];
  operations?: string[];
  verbs?: string[];
  resourceNames?: string[];
}

describe('generated deploy/ manifests', () => {
  it.each(Object.entries(renderManifests()))(
    '%s is committed exactly as generated (run `npm run generate` after changing the child table)',
    (file, content) => {
      expect(committed(file)).toBe(content);
    },
  );

  it('protect and guard every child kind, and let the manager write each of them', () => {
    const configuration = load(committed(VALIDATING_WEBHOOK_FILE)) as {
      webhooks: { name: string; rules: Rule[] }[];
    };
    const [role] = loadAll(committed(ROLES_FILE)) as { rules: Rule[] }[];
    const covers = (rules: Rule[], group: string, resource: string, action: string): boolean =>
      rules.some(
        (r) =>
          r.apiGroups.includes(group) &&
          r.resources.includes(resource) &&
          [...(r.operations ?? []), ...(r.verbs ?? [])].includes(action),
      );
    const [, protect, guard] = configuration.webhooks;
    for (const child of CHILD_KINDS) {
      for (const operation of ['CREATE', 'UPDATE', 'DELETE']) {
        expect(covers(protect?.rules ?? [], child.group, child.resource, operation)).toBe(true);
      }
      expect(covers(guard?.rules ?? [], child.group, child.resource, 'CREATE')).toBe(true);
      for (const verb of ['get', 'list', 'watch', 'create', 'update', 'patch', 'delete']) {
        expect(covers(role?.rules ?? [], child.group, child.resource, verb)).toBe(true);
      }
    }
  });

  it('reserves child names whatever labels an object carries: no label, or another value', () => {
    const configuration = load(committed(VALIDATING_WEBHOOK_FILE)) as {
      webhooks: { objectSelector?: unknown }[];
    };
    expect(configuration.webhooks[2]?.objectSelector).toEqual({
      matchExpressions: [
        { key: 'app.kubernetes.io/managed-by', operator: 'NotIn', values: ['nats-manager'] },
      ],
    });
  });

  it('let the manager create its webhook configurations, and read or change only its own', () => {
    const [role] = loadAll(committed(CLUSTER_ROLE_FILE)) as { rules: Rule[] }[];
    const rules = (role?.rules ?? []).filter((rule) =>
      rule.apiGroups.includes('admissionregistration.k8s.io'),
    );
    const kinds = ['mutatingwebhookconfigurations', 'validatingwebhookconfigurations'];
    for (const rule of rules) {
      expect([...rule.resources].sort()).toEqual(kinds);
      // RBAC cannot name what is created; every other verb is limited to the two names.
      if (rule.resourceNames === undefined) expect(rule.verbs).toEqual(['create']);
      else expect(rule.resourceNames).toEqual(['nats-manager-mutating', 'nats-manager-validating']);
    }
    const verbs = rules.flatMap((rule) => rule.verbs ?? []).sort();
    expect(verbs).toEqual(['create', 'get', 'patch', 'update']);
  });

  interface RbacObject {
    kind: string;
    metadata: { name: string; namespace?: string };
    rules?: Rule[];
  }
  const rbacObjects = (): RbacObject[] =>
    [CLUSTER_ROLE_FILE, ROLES_FILE].flatMap((file) => loadAll(committed(file)) as RbacObject[]);

  it('grant no wildcard anywhere: every rule, listed', () => {
    const listed: string[] = [];
    for (const object of rbacObjects()) {
      for (const rule of object.rules ?? []) {
        const names = rule.resourceNames === undefined ? '' : ` (${rule.resourceNames.join(',')})`;
        listed.push(
          `${object.kind}/${object.metadata.name}: ${rule.apiGroups.join(',')} ${rule.resources.join(',')}${names}: ${(rule.verbs ?? []).join(',')}`,
        );
        for (const value of [
          ...rule.apiGroups,
          ...rule.resources,
          ...(rule.verbs ?? []),
          ...(rule.resourceNames ?? []),
        ]) {
          expect(value).not.toContain('*');
        }
      }
    }
    // The list a security review reads; printed, and at least one rule per role.
    process.stdout.write(`${listed.join('\n')}\n`);
    expect(listed.length).toBeGreaterThan(10);
  });

  it('keep cluster scope to NATS resources, nodes, StorageClasses, named CRDs and the two webhook configurations', () => {
    const [clusterRole] = loadAll(committed(CLUSTER_ROLE_FILE)) as RbacObject[];
    expect(clusterRole?.kind).toBe('ClusterRole');
    const resources = (clusterRole?.rules ?? []).flatMap((rule) => rule.resources).sort();
    expect([...new Set(resources)]).toEqual([
      'customresourcedefinitions',
      'mutatingwebhookconfigurations',
      'nats',
      'nats/finalizers',
      'nats/status',
      'nodes',
      'storageclasses',
      'validatingwebhookconfigurations',
    ]);
    for (const rule of clusterRole?.rules ?? []) {
      // Read-only for nodes; CRDs only by name; no Secret, no child kind cluster-wide.
      if (rule.resources.includes('nodes')) expect(rule.verbs).toEqual(['get', 'list', 'watch']);
      // Read once per update that raises the file-storage size, never written.
      if (rule.resources.includes('storageclasses')) expect(rule.verbs).toEqual(['get', 'list']);
      if (rule.resources.includes('customresourcedefinitions')) {
        expect(rule.resourceNames).toEqual(['destinationrules.networking.istio.io']);
        expect(rule.verbs).toEqual(['get', 'list', 'watch']);
      }
    }
  });

  it('write Secrets only in the NATS namespace, and elsewhere only the certificate Secret by name', () => {
    const roles = rbacObjects().filter((object) => object.kind === 'Role');
    const secretRules = roles.flatMap((role) =>
      (role.rules ?? [])
        .filter((rule) => rule.resources.includes('secrets'))
        .map((rule) => ({ role: role.metadata.name, rule })),
    );
    for (const { role, rule } of secretRules) {
      if (role === 'nats-manager-children') continue;
      expect(role).toBe('nats-manager');
      // create cannot be limited by name; everything else is.
      if (rule.resourceNames === undefined) expect(rule.verbs).toEqual(['create']);
      else expect(rule.resourceNames).toEqual(['nats-manager-webhook-certs']);
    }
    expect(secretRules.map(({ role }) => role).sort()).toEqual([
      'nats-manager',
      'nats-manager',
      'nats-manager-children',
    ]);
  });
});
