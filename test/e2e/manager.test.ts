// The manager as operators run it: a process (src/manager/main.ts) against a real kube-apiserver
// with kube-controller-manager, used through kubectl. Probes and metrics, convergence to
// Available, an idle manager writing nothing, kill -9 in the middle of a reconcile, graceful
// SIGTERM, and leader election between two replicas.
//
// A private plane: the manager installs its webhooks, which would change what other suites see.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { promisify } from 'node:util';
import * as k8s from '@kubernetes/client-node';
import { buildNatsCrd } from '../../src/api/crd.ts';
import { clientFor, requestJson, type KubeObject } from '../../src/kube/api.ts';
import { ensureCrd } from '../../src/kube/crd.ts';
import { createInformer } from '../../src/controller/informer.ts';
import {
  DEFAULT_CONTROLLERS,
  startLocalPlane,
  type LocalPlane,
} from '../../src/localplane/plane.ts';
import { eventually } from '../support/kube.ts';
import { createZoneNodes, runPods } from '../support/pods.ts';
import { metricTotal } from '../support/prometheus.ts';

const run = promisify(execFile);
const MAIN = new URL('../../src/manager/main.ts', import.meta.url).pathname;
const SAMPLE = new URL('../../config/samples/nats.yaml', import.meta.url).pathname;
const PRIORITY_CLASS = new URL('../../deploy/manager/priority-class.yaml', import.meta.url)
  .pathname;
const DESTINATION_RULE_CRD = new URL('../fixtures/destinationrule-crd.yaml', import.meta.url)
  .pathname;
const NS = 'kyma-system';
const MANAGED = 'app.kubernetes.io/managed-by=nats-manager';
const CHILD_KINDS = 'configmaps,secrets,services,statefulsets,poddisruptionbudgets';

interface Manager {
  readonly child: ChildProcess;
  readonly output: () => string;
  readonly metricsPort: number;
  readonly probePort: number;
}

let plane: LocalPlane;
let kc: k8s.KubeConfig;
const started: Manager[] = [];

async function kubectl(args: readonly string[]): Promise<string> {
  const { stdout } = await run('kubectl', ['--kubeconfig', plane.kubeconfigPath, ...args], {
    encoding: 'utf8',
  });
  return stdout;
}

async function startManager(args: readonly string[] = []): Promise<Manager> {
  const env: NodeJS.ProcessEnv = { ...process.env, KUBECONFIG: plane.kubeconfigPath };
  delete env.KUBERNETES_SERVICE_HOST;
  const child = spawn(
    process.execPath,
    [
      '--no-warnings',
      MAIN,
      '--webhook-port=0',
      '--metrics-bind-address=127.0.0.1:0',
      '--health-probe-bind-address=127.0.0.1:0',
      ...args,
    ],
    { env, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const ports = await eventually(
    'the manager to serve its probes',
    () => {
      const match =
        /"msg":"serving metrics and probes".*"metricsPort":(\d+),"probePort":(\d+)/.exec(output);
      return match === null ? undefined : { metrics: Number(match[1]), probe: Number(match[2]) };
    },
    60_000,
  );
  const manager = {
    child,
    output: () => output,
    metricsPort: ports.metrics,
    probePort: ports.probe,
  };
  started.push(manager);
  return manager;
}

async function exited(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
  return new Promise((resolve) => {
    child.once('exit', (code) => {
      resolve(code);
    });
  });
}

async function httpGet(port: number, path: string): Promise<{ status: number; body: string }> {
  const response = await fetch(`http://127.0.0.1:${String(port)}${path}`);
  return { status: response.status, body: await response.text() };
}

/** The lines of a metric, from a /metrics scrape. */
async function metricLines(manager: Manager, name: string): Promise<string[]> {
  const { body } = await httpGet(manager.metricsPort, '/metrics');
  return body
    .split('\n')
    .filter((line) => line.startsWith(`${name}{`) || line.startsWith(`${name} `));
}

/** The sum of a counter over all its label sets, from a /metrics scrape. */
async function counter(manager: Manager, name: string): Promise<number> {
  const { body } = await httpGet(manager.metricsPort, '/metrics');
  return metricTotal(body, name);
}

async function gauge(manager: Manager, name: string): Promise<number | undefined> {
  const { body } = await httpGet(manager.metricsPort, '/metrics');
  const line = body.split('\n').find((l) => l.startsWith(`${name} `));
  return line === undefined ? undefined : Number(line.slice(name.length + 1));
}

async function managedChildren(): Promise<string[]> {
  const out = await kubectl(['get', CHILD_KINDS, '-n', NS, '-l', MANAGED, '-o', 'name']);
  return out
    .split('\n')
    .filter((line) => line !== '')
    .sort();
}

/**
 * Edits the PodDisruptionBudget past the webhook (the kubeconfig's user is the manager's own
 * identity here) and waits for the manager to put it back. Not the StatefulSet: with no
 * kubelet, pods removed by a scale-down would stay terminating and the status with them.
 */
async function editAndAwaitRestore(what: string): Promise<number> {
  const edited = Date.now();
  await kubectl([
    'patch',
    'pdb',
    'eventing-nats',
    '-n',
    NS,
    '--type=merge',
    '-p',
    '{"spec":{"maxUnavailable":2}}',
  ]);
  await eventually(what, async () =>
    (await kubectl([
      'get',
      'pdb',
      'eventing-nats',
      '-n',
      NS,
      '-o',
      'jsonpath={.spec.maxUnavailable}',
    ])) === '1'
      ? true
      : undefined,
  );
  return Date.now() - edited;
}

/** The resourceVersions of the children and the NATS resource: unchanged means unwritten. */
async function resourceVersions(): Promise<string> {
  return kubectl([
    'get',
    `${CHILD_KINDS},nats`,
    '-n',
    NS,
    '-o',
    'jsonpath={.items[*].metadata.resourceVersion}',
  ]);
}

const EXPECTED_CHILDREN = [
  'configmap/eventing-nats-config',
  'poddisruptionbudget.policy/eventing-nats',
  'secret/eventing-nats-secret',
  'service/eventing-nats',
  'statefulset.apps/eventing-nats',
].sort();

async function getNats(): Promise<
  | { metadata: { finalizers?: string[]; generation?: number }; status?: { state?: string } }
  | undefined
> {
  try {
    return (await requestJson(kc, {
      method: 'GET',
      path: `/apis/operator.kyma-project.io/v1alpha1/namespaces/${NS}/nats/eventing-nats`,
    })) as { metadata: { finalizers?: string[] }; status?: { state?: string } };
  } catch {
    return undefined;
  }
}

beforeAll(async () => {
  plane = await startLocalPlane({ controllers: DEFAULT_CONTROLLERS, log: () => undefined });
  kc = new k8s.KubeConfig();
  kc.loadFromFile(plane.kubeconfigPath);
  await ensureCrd(clientFor(kc), buildNatsCrd(), 'nats-manager-tests');
  await kubectl(['create', 'namespace', NS]);
  // The pods' PriorityClass comes with deploy/; without it the StatefulSet gets no pods.
  await kubectl(['apply', '-f', PRIORITY_CLASS]);
}, 120_000);

afterAll(async () => {
  for (const manager of started) manager.child.kill('SIGKILL');
  await Promise.all(started.map((m) => exited(m.child)));
  await plane.stop();
});

describe('one manager', () => {
  let manager: Manager;

  it('killed with SIGKILL in the middle of its first reconcile, a new one converges with nothing duplicated', async () => {
    const first = await startManager();
    await eventually('ready', async () =>
      (await httpGet(first.probePort, '/readyz')).status === 200 ? true : undefined,
    );
    // Kill the moment the first child (the ConfigMap) is seen on a watch, while the manager is
    // still creating the others.
    let killed = false;
    const watch = createInformer<KubeObject>(
      clientFor(kc),
      { path: `/api/v1/namespaces/${NS}/configmaps`, labelSelector: MANAGED },
      {
        add: () => {
          if (killed) return;
          killed = true;
          first.child.kill('SIGKILL');
        },
      },
    );
    await watch.start();
    await kubectl(['apply', '-f', SAMPLE]);
    await eventually('the kill', () => (killed ? true : undefined));
    await exited(first.child);
    watch.stop();
    const atKill = await managedChildren();
    process.stdout.write(`[manager] killed with ${String(atKill.length)}/5 children created\n`);

    manager = await startManager();
    await eventually('every child', async () => {
      const children = await managedChildren();
      return JSON.stringify(children) === JSON.stringify(EXPECTED_CHILDREN) ? true : undefined;
    });
    const nats = await eventually('status written', async () => {
      const n = await getNats();
      return n?.status?.state === 'Processing' ? n : undefined;
    });
    expect(nats.metadata.finalizers).toEqual(['nats.operator.kyma-project.io/finalizer']);
    for (const name of EXPECTED_CHILDREN) {
      const object = JSON.parse(await kubectl(['get', name, '-n', NS, '-o', 'json'])) as KubeObject;
      expect(object.metadata.ownerReferences).toHaveLength(1);
    }
    // Each child was created once: one Created event per child at most, across both managers.
    const events = JSON.parse(
      await kubectl([
        'get',
        'events',
        '-n',
        NS,
        '--field-selector',
        'reason=Created',
        '-o',
        'json',
      ]),
    ) as { items: { message: string }[] };
    const messages = events.items.map((e) => e.message);
    expect(new Set(messages).size).toBe(messages.length);
  }, 120_000);

  it('answers /healthz, /readyz and /metrics', async () => {
    expect(await httpGet(manager.probePort, '/healthz')).toMatchObject({ status: 200 });
    expect(await httpGet(manager.probePort, '/readyz')).toMatchObject({ status: 200 });
    expect((await httpGet(manager.probePort, '/nope')).status).toBe(404);
    const { body } = await httpGet(manager.metricsPort, '/metrics');
    for (const name of [
      'nats_manager_reconcile_total',
      'nats_manager_reconcile_duration_seconds_bucket',
      'nats_manager_workqueue_depth',
      'nats_manager_admission_requests_total',
      'nats_manager_writes_total',
    ]) {
      expect(body).toContain(name);
    }
    expect(await gauge(manager, 'nats_manager_leader')).toBe(1);
  });

  it('reports Available once the pods run, for kubectl wait', async () => {
    const nodes = await createZoneNodes(kc, NS, ['a', 'b', 'c']);
    await runPods(kc, NS, 3, nodes);
    const out = await kubectl([
      'wait',
      '-n',
      NS,
      '--for=condition=Available',
      'nats/eventing-nats',
      '--timeout=30s',
    ]);
    expect(out).toContain('condition met');
    expect(
      await kubectl(['get', 'nats', '-n', NS, 'eventing-nats', '-o', 'jsonpath={.status.state}']),
    ).toBe('Ready');
  }, 60_000);

  it('writes nothing while idle', async () => {
    const writes = await metricLines(manager, 'nats_manager_writes_total');
    const rv = await resourceVersions();
    await new Promise((resolve) => setTimeout(resolve, 3_000));
    expect(await metricLines(manager, 'nats_manager_writes_total')).toEqual(writes);
    expect(await resourceVersions()).toBe(rv);
  });

  it('puts back an edit that got past the webhook, and tells in an event', async () => {
    expect(await editAndAwaitRestore('maxUnavailable restored')).toBeLessThan(15_000);
    // Recorded right after the write it tells of.
    const reasons = await eventually('a Restored event', async () => {
      const all = await kubectl(['get', 'events', '-n', NS, '-o', 'jsonpath={.items[*].reason}']);
      return all.includes('Restored') ? all.split(' ') : undefined;
    });
    expect(reasons).toContain('Restored');
  });

  it('keeps watching across an API server restart: an edit right after it is put back', async () => {
    await plane.restartApiServer();
    const edited = Date.now();
    await kubectl(['delete', 'configmap', 'eventing-nats-config', '-n', NS]);
    await editAndAwaitRestore('maxUnavailable restored after the restart');
    await eventually('the ConfigMap back', async () =>
      (await managedChildren()).includes('configmap/eventing-nats-config') ? true : undefined,
    );
    process.stdout.write(
      `[manager] after an API server restart, converged ${String(Date.now() - edited)} ms after the edits\n`,
    );
    expect(
      await kubectl(['get', 'nats', '-n', NS, 'eventing-nats', '-o', 'jsonpath={.status.state}']),
    ).toBe('Ready');
  }, 60_000);

  it('adds a DestinationRule once Istio is installed, and keeps it', async () => {
    await kubectl(['apply', '-f', DESTINATION_RULE_CRD]);
    const installed = Date.now();
    const drName = 'destinationrule.networking.istio.io/eventing-nats';
    const exists = async (): Promise<boolean> =>
      (await kubectl(['get', 'destinationrules', '-n', NS, '-o', 'name'])).includes(drName);
    await eventually('the DestinationRule', async () => ((await exists()) ? true : undefined));
    process.stdout.write(
      `[manager] DestinationRule created ${String(Date.now() - installed)} ms after Istio's CRD\n`,
    );
    await kubectl(['delete', 'destinationrule', 'eventing-nats', '-n', NS]);
    await eventually('the DestinationRule back', async () => ((await exists()) ? true : undefined));
    const rule = JSON.parse(
      await kubectl(['get', 'destinationrule', 'eventing-nats', '-n', NS, '-o', 'json']),
    ) as KubeObject;
    expect(rule.metadata.labels).toMatchObject({ 'app.kubernetes.io/managed-by': 'nats-manager' });
    expect(rule.metadata.ownerReferences).toHaveLength(1);
  }, 60_000);

  it('stops on SIGTERM: drains, closes its servers and exits 0', async () => {
    manager.child.kill('SIGTERM');
    expect(await exited(manager.child)).toBe(0);
    expect(manager.output()).toContain('"msg":"stopped"');
    await expect(httpGet(manager.probePort, '/healthz')).rejects.toThrow();
  });
});

describe('two replicas with --leader-elect', () => {
  // The replica left running by the takeover test.
  let survivor: Awaited<ReturnType<typeof startManager>> | undefined;

  it('lets one reconcile, and the other take over at once when it stops', async () => {
    const a = await startManager(['--leader-elect']);
    const b = await startManager(['--leader-elect']);
    const leaders = async (): Promise<(number | undefined)[]> => [
      await gauge(a, 'nats_manager_leader'),
      await gauge(b, 'nats_manager_leader'),
    ];
    const [leaderA] = await eventually('one leader', async () => {
      const l = await leaders();
      return l.filter((v) => v === 1).length === 1 ? l : undefined;
    });
    const [leader, standby] = leaderA === 1 ? [a, b] : [b, a];
    survivor = standby;
    // Both serve the webhooks and are ready; only the leader reconciles.
    await eventually('the standby to be ready', async () =>
      (await httpGet(standby.probePort, '/readyz')).status === 200 ? true : undefined,
    );
    expect(await counter(standby, 'nats_manager_reconcile_total')).toBe(0);

    leader.child.kill('SIGTERM');
    expect(await exited(leader.child)).toBe(0);
    const stoppedAt = Date.now();
    await eventually('the standby to lead', async () =>
      (await gauge(standby, 'nats_manager_leader')) === 1 ? true : undefined,
    );
    const takeover = Date.now() - stoppedAt;
    process.stdout.write(
      `[manager] standby leads ${String(takeover)} ms after the leader exited\n`,
    );
    expect(takeover).toBeLessThan(15_000);
    await editAndAwaitRestore('maxUnavailable restored by the new leader');
  }, 120_000);

  it('deletes the NATS resource when NATS cannot be reached, volume claims first', async () => {
    // The Service's DNS name does not resolve off-cluster: unreachable, so deletion proceeds.
    await kubectl(['delete', 'nats', 'eventing-nats', '-n', NS, '--timeout=30s']);
    const claims = JSON.parse(await kubectl(['get', 'pvc', '-n', NS, '-o', 'json'])) as {
      items: KubeObject[];
    };
    expect(claims.items.length).toBeGreaterThan(0);
    for (const claim of claims.items) expect(claim.metadata.deletionTimestamp).toBeDefined();
    // The deletion went unchecked for customer data, and says so.
    await eventually('a DeletionUnchecked warning', async () =>
      (await kubectl(['get', 'events', '-n', NS, '-o', 'jsonpath={.items[*].reason}'])).includes(
        'DeletionUnchecked',
      )
        ? true
        : undefined,
    );
    // Right after a deletion, SIGTERM ends the manager within seconds, not after the webhook
    // server's grace for requests in flight.
    if (survivor === undefined) throw new Error('no replica left running');
    const signalled = Date.now();
    survivor.child.kill('SIGTERM');
    expect(await exited(survivor.child)).toBe(0);
    const exitMs = Date.now() - signalled;
    process.stdout.write(`[manager] exited ${String(exitMs)} ms after SIGTERM\n`);
    if (exitMs > 5_000) process.stdout.write(survivor.output().split('\n').slice(-40).join('\n'));
    expect(exitMs).toBeLessThan(5_000);
  }, 60_000);
});
