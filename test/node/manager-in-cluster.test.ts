// The manager as a pod: its image (npm run build:image, imported into the node's containerd) on a
// local plane with a worker node, installed with `kubectl apply -k` of the default overlay with
// only the image swapped. The API server calls the webhooks through their Service, the pods reach
// the API server through the `kubernetes` Service, and the manager runs under its own service
// account token. End to end with kubectl, then uninstalled: kyma-system and what else is in it stay.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { dump, load } from 'js-yaml';
import { buildManagerImage, LOCAL_MANAGER_IMAGE } from '../../src/localplane/manager-image.ts';
import { startLocalPlane, type LocalPlane } from '../../src/localplane/plane.ts';
import { eventually } from '../support/kube.ts';
import { isReady, NAME, NodeKube, NS, type Pod } from '../support/node-cluster.ts';

const ROOT = new URL('../../', import.meta.url).pathname;
const RELEASE_IMAGE = 'europe-docker.pkg.dev/kyma-project/prod/nats-manager';
const BREAK_GLASS = [
  '--as=admin',
  '--as-group=system:masters',
  '--as-group=nats-manager:break-glass',
];

let plane: LocalPlane | undefined;
let kube: NodeKube;
let workDir: string;
const logs: string[] = [];

function figure(line: string): void {
  process.stdout.write(`[manager-in-cluster] ${line}\n`);
}

async function refusal(args: readonly string[], input?: string): Promise<string> {
  return kube.kubectl(args, input).then(
    (stdout) => `accepted: ${stdout}`,
    (error: unknown) => String((error as { stderr?: string }).stderr ?? error),
  );
}

async function managerPods(): Promise<Pod[]> {
  const list = await kube.getJson<{ items: Pod[] }>([
    'pods',
    '-n',
    NS,
    '-l',
    'app.kubernetes.io/name=nats-manager',
  ]);
  return list?.items ?? [];
}

async function leaseHolder(): Promise<string> {
  const lease = await kube.getJson<{ spec: { holderIdentity?: string } }>([
    'lease',
    'nats-manager.operator.kyma-project.io',
    '-n',
    NS,
  ]);
  return lease?.spec.holderIdentity ?? '';
}

async function collectLogs(): Promise<void> {
  for (const pod of await managerPods()) {
    logs.push(await kube.kubectl(['logs', '-n', NS, pod.metadata.name]).catch(() => ''));
  }
}

async function childUid(kind: string, name: string): Promise<string | undefined> {
  const object = await kube.getJson<{ metadata: { uid: string; deletionTimestamp?: string } }>([
    kind,
    name,
    '-n',
    NS,
  ]);
  return object?.metadata.deletionTimestamp === undefined ? object?.metadata.uid : undefined;
}

describe('the manager as a pod on the node', () => {
  beforeAll(async () => {
    workDir = mkdtempSync(join(tmpdir(), 'nats-manager-in-cluster-'));
    const started = Date.now();
    const image = await buildManagerImage(join(workDir, 'manager-image.tar'));
    figure(
      `image ${image.name}: ${String(Math.round(image.archiveBytes / 1e6))} MB, built in ${String(Date.now() - started)} ms`,
    );
    plane = await startLocalPlane({
      node: true,
      extraImages: [{ name: image.name, archive: image.archive }],
      log: (line) => process.stderr.write(`[localplane] ${line}\n`),
    });
    kube = new NodeKube(plane.kubeconfigPath);
    // The default overlay with only its image swapped for the one just built.
    writeFileSync(
      join(workDir, 'kustomization.yaml'),
      dump({
        apiVersion: 'kustomize.config.k8s.io/v1beta1',
        kind: 'Kustomization',
        // Relative: kustomize refuses an absolute path.
        resources: [relative(workDir, join(ROOT, 'deploy/overlays/default'))],
        images: [
          {
            name: RELEASE_IMAGE,
            newName: LOCAL_MANAGER_IMAGE.slice(0, LOCAL_MANAGER_IMAGE.lastIndexOf(':')),
            newTag: LOCAL_MANAGER_IMAGE.slice(LOCAL_MANAGER_IMAGE.lastIndexOf(':') + 1),
          },
        ],
      }),
    );
    // kyma-system exists before the module, with other modules' objects in it.
    await kube.kubectl(['create', 'namespace', NS]);
    await kube.kubectl(['create', 'configmap', 'another-module', '-n', NS, '--from-literal=a=b']);
  }, 600_000);

  afterAll(async () => {
    await plane?.stop();
    rmSync(workDir, { recursive: true, force: true });
  }, 120_000);

  it('installs with kubectl apply -k: 2 ready replicas, one leading, webhooks by Service', async () => {
    const started = Date.now();
    await kube.kubectl(['apply', '--server-side', '-k', workDir]);
    await kube.kubectl([
      'rollout',
      'status',
      '-n',
      NS,
      'deployment/nats-manager',
      '--timeout=240s',
    ]);
    const pods = await eventually('2 ready manager pods', async () => {
      const list = (await managerPods()).filter(isReady);
      return list.length === 2 ? list : undefined;
    });
    const holder = await eventually('a leader', async () => {
      const identity = await leaseHolder();
      return identity === '' ? undefined : identity;
    });
    expect(pods.map((pod) => pod.metadata.name)).toContainEqual(
      holder.slice(0, holder.indexOf('_')),
    );
    figure(`apply -k -> 2 replicas ready in ${String(Date.now() - started)} ms; leader ${holder}`);

    // The service clientConfig of deploy/webhooks, no url, with the CA of the certificate Secret.
    const secret = await kube.getJson<{ data: Record<string, string> }>([
      'secret',
      'nats-manager-webhook-certs',
      '-n',
      NS,
    ]);
    const ca = Buffer.from(secret?.data['ca.crt'] ?? '', 'base64')
      .toString()
      .trim();
    expect(ca).toContain('BEGIN CERTIFICATE');
    for (const kind of ['mutating', 'validating']) {
      const configuration = await kube.getJson<{
        webhooks: {
          clientConfig: { url?: string; service?: { name: string }; caBundle?: string };
        }[];
      }>([`${kind}webhookconfiguration`, `nats-manager-${kind}`]);
      for (const webhook of configuration?.webhooks ?? []) {
        expect(webhook.clientConfig.url).toBeUndefined();
        expect(webhook.clientConfig.service?.name).toBe('nats-manager-webhook');
        expect(Buffer.from(webhook.clientConfig.caBundle ?? '', 'base64').toString()).toContain(ca);
      }
    }
  }, 300_000);

  it('refuses a bad NATS resource at admission, through the Service', async () => {
    const cr = load(readFileSync(join(ROOT, 'release/nats-default-cr.yaml'), 'utf8')) as {
      metadata: { name: string };
    };
    // Only the validating webhook knows that one NATS is served: the CRD cannot say it. A
    // server-side dry run, so that nothing is created while the API server's first calls to the
    // new Service may still fail (failurePolicy Ignore admits then).
    const second = { ...cr, metadata: { ...cr.metadata, name: 'second' } };
    const started = Date.now();
    // The last answer stays, so that a failure shows what the API server said. The webhook
    // answers with field causes, which kubectl prints as "is invalid: metadata.name: Forbidden".
    const WEBHOOK_WORDS =
      'the NATS Manager serves only one NATS resource, kyma-system/eventing-nats';
    let answer = '';
    while (Date.now() - started < 60_000 && !answer.includes(WEBHOOK_WORDS)) {
      answer = await refusal(['create', '--dry-run=server', '-f', '-'], JSON.stringify(second));
      if (!answer.includes(WEBHOOK_WORDS)) await new Promise((r) => setTimeout(r, 500));
    }
    figure(
      `first refusal through the webhook Service ${String(Date.now() - started)} ms after install`,
    );
    expect(answer).toContain(
      `The NATS "second" is invalid: metadata.name: Forbidden: ${WEBHOOK_WORDS}`,
    );
    expect(await kube.getJson(['nats', 'second', '-n', NS])).toBeUndefined();
  }, 120_000);

  it('creates a NATS whose pods become Ready', async () => {
    const cr = load(readFileSync(join(ROOT, 'release/nats-default-cr.yaml'), 'utf8')) as {
      spec: { cluster: { size: number } };
    };
    // One server keeps the node's share of the run small; the cycle is the same.
    cr.spec.cluster.size = 1;
    const started = Date.now();
    await kube.kubectl(['apply', '-f', '-'], JSON.stringify(cr));
    await eventually(
      'the NATS Ready',
      async () => {
        const nats = await kube.getJson<{ status?: { state?: string } }>(['nats', NAME, '-n', NS]);
        return nats?.status?.state === 'Ready' ? true : undefined;
      },
      180_000,
    );
    await kube.kubectl([
      'wait',
      '-n',
      NS,
      '--for=condition=Ready',
      'pod',
      '-l',
      'nats_cluster=eventing-nats',
      '--timeout=60s',
    ]);
    figure(`NATS created -> Ready in ${String(Date.now() - started)} ms`);
  }, 240_000);

  it('updates the children when the NATS resource is edited', async () => {
    const started = Date.now();
    await kube.patchNatsSpec({ logging: { debug: true } });
    await eventually(
      'debug logging in nats.conf',
      async () => {
        const configMap = await kube.getJson<{ data?: Record<string, string> }>([
          'configmap',
          `${NAME}-config`,
          '-n',
          NS,
        ]);
        return Object.values(configMap?.data ?? {}).some((conf) => conf.includes('debug: true'))
          ? true
          : undefined;
      },
      60_000,
    );
    figure(`NATS edited -> ConfigMap updated in ${String(Date.now() - started)} ms`);
  }, 120_000);

  it("refuses a user's edit of a child; a child deleted with break-glass comes back", async () => {
    const child = `${NAME}-config`;
    expect(await refusal(['annotate', 'configmap', child, '-n', NS, 'edited=by-hand'])).toContain(
      'denied',
    );
    const uid = await childUid('configmap', child);
    expect(uid).toBeDefined();
    await kube.kubectl(['delete', 'configmap', child, '-n', NS, ...BREAK_GLASS]);
    const started = Date.now();
    const back = await eventually('the ConfigMap back', async () => {
      const now = await childUid('configmap', child);
      return now !== undefined && now !== uid ? now : undefined;
    });
    expect(back).not.toBe(uid);
    figure(`break-glass delete -> ConfigMap back in ${String(Date.now() - started)} ms`);
  }, 120_000);

  it('hands over to another replica when the leader pod is deleted, within the lease', async () => {
    await collectLogs();
    const holder = await leaseHolder();
    const leader = holder.slice(0, holder.indexOf('_'));
    const standby = (await managerPods()).find((pod) => pod.metadata.name !== leader);
    expect(standby).toBeDefined();
    const started = Date.now();
    await kube.kubectl(['delete', 'pod', leader, '-n', NS, '--wait=false']);
    const next = await eventually(
      'another leader',
      async () => {
        const identity = await leaseHolder();
        return identity !== '' && identity !== holder ? identity : undefined;
      },
      60_000,
    );
    const took = Date.now() - started;
    // The leader releases the Lease as it stops: the standby takes it at its next retry, or the
    // Deployment's replacement pod does if it starts first. Either is another replica.
    const newLeader = next.slice(0, next.indexOf('_'));
    const byStandby = newLeader === standby?.metadata.name;
    figure(
      `leader pod deleted -> ${byStandby ? 'the standby' : 'the replacement pod'} leading in ${String(took)} ms (lease 15 s)`,
    );
    expect(newLeader).not.toBe(leader);
    expect((await managerPods()).map((pod) => pod.metadata.name)).toContain(newLeader);
    // The new leader reconciles: a child deleted now comes back too.
    const uid = await childUid('service', NAME);
    await kube.kubectl(['delete', 'service', NAME, '-n', NS, ...BREAK_GLASS]);
    await eventually('the Service back', async () => {
      const now = await childUid('service', NAME);
      return now !== undefined && now !== uid ? now : undefined;
    });
  }, 120_000);

  it('deletes the NATS, with no Forbidden in any manager log', async () => {
    await kube.kubectl(['delete', 'nats', NAME, '-n', NS, '--timeout=120s']);
    await eventually('the StatefulSet gone', async () =>
      (await childUid('statefulset', NAME)) === undefined ? true : undefined,
    );
    await collectLogs();
    const all = logs.join('\n');
    expect(all).toContain('watch caches synced');
    expect(all).not.toMatch(/forbidden|"status":403/i);
  }, 180_000);

  it('uninstalls with kubectl delete -k: everything it installed, never the namespace', async () => {
    await kube.kubectl(['delete', '-k', workDir, '--timeout=120s']);
    for (const args of [
      ['deployment', 'nats-manager', '-n', NS],
      ['crd', 'nats.operator.kyma-project.io'],
      ['clusterrole', 'nats-manager'],
      ['validatingwebhookconfiguration', 'nats-manager-validating'],
      ['mutatingwebhookconfiguration', 'nats-manager-mutating'],
      ['role', 'nats-manager-shoot-info', '-n', 'kube-system'],
      ['priorityclass', 'nats-manager-priority-class'],
    ]) {
      expect(await kube.getJson(args)).toBeUndefined();
    }
    const namespace = await kube.getJson<{ status: { phase: string } }>(['namespace', NS]);
    expect(namespace?.status.phase).toBe('Active');
    expect(await kube.getJson(['configmap', 'another-module', '-n', NS])).toBeDefined();
  }, 180_000);
});
