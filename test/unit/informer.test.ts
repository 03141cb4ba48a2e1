// The informer against a scripted API server on loopback: every failure a long-running watch
// meets, produced exactly when the test wants it. test/integration/informer.test.ts shows the
// same against a real kube-apiserver.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import * as k8s from '@kubernetes/client-node';
import { createInformer, type InformerOptions } from '../../src/controller/informer.ts';
import { clientFor, type KubeObject } from '../../src/kube/api.ts';
import type { Logger } from '../../src/base/log.ts';
import { eventually } from '../support/kube.ts';

const PATH = '/api/v1/namespaces/ns/configmaps';

interface ConfigMap extends KubeObject {
  data?: Record<string, string>;
}

function configMap(name: string, resourceVersion: string, data: Record<string, string> = {}) {
  return { metadata: { name, namespace: 'ns', resourceVersion }, data };
}

/** One open watch request, driven by the test. */
interface FakeWatch {
  readonly query: URLSearchParams;
  send(type: string, object: unknown): void;
  raw(text: string): void;
  end(): void;
  closed(): boolean;
}

interface ListPage {
  status?: number;
  body: unknown;
}

class FakeApiServer {
  readonly lists: URLSearchParams[] = [];
  readonly watches: FakeWatch[] = [];
  /** Answers list requests; the default is an empty list at resourceVersion 1. */
  listHandler: (query: URLSearchParams) => ListPage = () => ({
    body: {
      kind: 'ConfigMapList',
      apiVersion: 'v1',
      metadata: { resourceVersion: '1' },
      items: [],
    },
  });
  /** Called for each watch before it is answered; return a status and body to refuse it. */
  watchHandler: (watch: FakeWatch) => ListPage | undefined = () => undefined;
  /** Called once a watch has been answered 200. */
  watchOpened: (watch: FakeWatch) => void = () => undefined;
  private readonly server: Server;

  constructor() {
    this.server = createServer((req, res) => {
      this.handle(req, res);
    });
  }

  async listen(): Promise<string> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    return `http://127.0.0.1:${String((this.server.address() as AddressInfo).port)}`;
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise((resolve) => this.server.close(resolve));
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://fake');
    if (url.pathname !== PATH) {
      res.writeHead(404).end();
      return;
    }
    if (url.searchParams.get('watch') !== 'true') {
      this.lists.push(url.searchParams);
      const page = this.listHandler(url.searchParams);
      res.writeHead(page.status ?? 200, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify(page.body));
      return;
    }
    let closed = false;
    res.on('close', () => {
      closed = true;
    });
    const watch: FakeWatch = {
      query: url.searchParams,
      send: (type, object) => {
        if (!closed) res.write(`${JSON.stringify({ type, object })}\n`);
      },
      raw: (text) => {
        if (!closed) res.write(text);
      },
      end: () => {
        res.end();
      },
      closed: () => closed,
    };
    const refusal = this.watchHandler(watch);
    if (refusal !== undefined) {
      res.writeHead(refusal.status ?? 500, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify(refusal.body));
      return;
    }
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.flushHeaders();
    this.watches.push(watch);
    this.watchOpened(watch);
  }
}

const silent: Logger = {
  info: () => undefined,
  error: () => undefined,
  with: () => silent,
};

function kubeConfigFor(server: string): k8s.KubeConfig {
  const kc = new k8s.KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: 'fake', server, skipTLSVerify: true }],
    users: [{ name: 'tester', token: 'secret-token' }],
    contexts: [{ name: 'fake', cluster: 'fake', user: 'tester' }],
    currentContext: 'fake',
  });
  return kc;
}

type Recorded = [string, string, string?];

function recordingInformer(
  kc: k8s.KubeConfig,
  options: Partial<InformerOptions> = {},
): { informer: ReturnType<typeof createInformer<ConfigMap>>; events: Recorded[] } {
  const events: Recorded[] = [];
  const informer = createInformer<ConfigMap>(
    clientFor(kc),
    { path: PATH, log: silent, backoff: { initialMs: 10, maxMs: 50 }, ...options },
    {
      add: (cm) => events.push(['add', cm.metadata.name ?? '', cm.data?.v]),
      update: (cm) => events.push(['update', cm.metadata.name ?? '', cm.data?.v]),
      delete: (cm) => events.push(['delete', cm.metadata.name ?? '']),
      onRestart: (reason) => events.push(['restart', reason]),
    },
  );
  return { informer, events };
}

describe('informer against a scripted API server', () => {
  let api: FakeApiServer;
  let kc: k8s.KubeConfig;
  const informers: { stop(): void }[] = [];

  beforeEach(async () => {
    api = new FakeApiServer();
    kc = kubeConfigFor(await api.listen());
  });

  afterEach(async () => {
    for (const informer of informers.splice(0)) informer.stop();
    await api.close();
  });

  function track<T extends { stop(): void }>(informer: T): T {
    informers.push(informer);
    return informer;
  }

  async function nextWatch(count: number): Promise<FakeWatch> {
    return eventually(`watch number ${String(count)}`, () => api.watches[count - 1], 5_000);
  }

  it('lists page by page, then watches from the list resourceVersion with bookmarks and a server timeout', async () => {
    api.listHandler = (query) =>
      query.get('continue') === null
        ? {
            body: {
              kind: 'ConfigMapList',
              apiVersion: 'v1',
              metadata: { resourceVersion: '10', continue: 'page2' },
              items: [configMap('a', '5', { v: '1' })],
            },
          }
        : {
            body: {
              kind: 'ConfigMapList',
              apiVersion: 'v1',
              metadata: { resourceVersion: '10' },
              items: [configMap('b', '6')],
            },
          };
    const { informer, events } = recordingInformer(kc, {
      labelSelector: 'app.kubernetes.io/managed-by=nats-manager',
      pageSize: 1,
      stallTimeoutMs: 10_000,
    });
    await track(informer).start();
    expect(informer.hasSynced()).toBe(true);
    expect(
      api.lists.map((q) => [q.get('labelSelector'), q.get('limit'), q.get('continue')]),
    ).toEqual([
      ['app.kubernetes.io/managed-by=nats-manager', '1', null],
      ['app.kubernetes.io/managed-by=nats-manager', '1', 'page2'],
    ]);
    // List items of built-in kinds come without kind and apiVersion; the store fills them in.
    expect(informer.get('ns', 'a')).toMatchObject({ kind: 'ConfigMap', apiVersion: 'v1' });
    expect(events).toEqual([
      ['add', 'a', '1'],
      ['add', 'b', undefined],
    ]);

    const watch = await nextWatch(1);
    expect(watch.query.get('resourceVersion')).toBe('10');
    expect(watch.query.get('allowWatchBookmarks')).toBe('true');
    expect(watch.query.get('labelSelector')).toBe('app.kubernetes.io/managed-by=nats-manager');
    // The server ends a healthy watch, with a bookmark 2 s before, well within the deadline.
    const timeoutSeconds = Number(watch.query.get('timeoutSeconds'));
    expect(timeoutSeconds).toBeGreaterThanOrEqual(5);
    expect(timeoutSeconds).toBeLessThanOrEqual(7.5);
  });

  it('applies watch events to the store and resumes from the last resourceVersion it saw', async () => {
    const { informer, events } = recordingInformer(kc);
    await track(informer).start();
    const first = await nextWatch(1);
    first.send('ADDED', {
      ...configMap('a', '2', { v: '1' }),
      metadata: { name: 'a', namespace: 'ns', resourceVersion: '2', managedFields: [{}] },
    });
    first.send('MODIFIED', configMap('a', '3', { v: '2' }));
    first.send('ADDED', configMap('b', '4'));
    first.send('DELETED', configMap('b', '5'));
    first.send('BOOKMARK', { metadata: { resourceVersion: '9' } });
    await eventually('the events', () => (events.length === 4 ? true : undefined), 5_000);
    first.end();

    const second = await nextWatch(2);
    expect(second.query.get('resourceVersion')).toBe('9');
    expect(events).toEqual([
      ['add', 'a', '1'],
      ['update', 'a', '2'],
      ['add', 'b', undefined],
      ['delete', 'b'],
    ]);
    expect(informer.list().map((cm) => cm.metadata.name)).toEqual(['a']);
    expect(informer.get('ns', 'a')?.metadata.managedFields).toBeUndefined();
    expect(api.lists).toHaveLength(1);
    expect(informer.restarts()).toEqual({ expired: 0, stalled: 0, failed: 0 });
  });

  it('relists on 410 Gone and emits what changed meanwhile as add, update and delete', async () => {
    let listed = 0;
    api.listHandler = () => {
      listed++;
      return listed === 1
        ? {
            body: {
              kind: 'ConfigMapList',
              apiVersion: 'v1',
              metadata: { resourceVersion: '10' },
              items: [configMap('kept', '5'), configMap('changed', '6'), configMap('gone', '7')],
            },
          }
        : {
            body: {
              kind: 'ConfigMapList',
              apiVersion: 'v1',
              metadata: { resourceVersion: '50' },
              items: [
                configMap('kept', '5'),
                configMap('changed', '40', { v: '2' }),
                configMap('new', '45'),
              ],
            },
          };
    };
    const { informer, events } = recordingInformer(kc);
    await track(informer).start();
    events.length = 0;
    const watch = await nextWatch(1);
    // Exactly what kube-apiserver sends for a resourceVersion its watch cache no longer has.
    watch.send('ERROR', {
      kind: 'Status',
      apiVersion: 'v1',
      metadata: {},
      status: 'Failure',
      message: 'too old resource version: 10 (44)',
      reason: 'Expired',
      code: 410,
    });
    const next = await nextWatch(2);
    expect(next.query.get('resourceVersion')).toBe('50');
    expect(watch.closed()).toBe(true);
    expect(events).toEqual([
      ['restart', 'expired'],
      ['update', 'changed', '2'],
      ['add', 'new', undefined],
      ['delete', 'gone'],
    ]);
    expect(
      informer
        .list()
        .map((cm) => cm.metadata.name)
        .sort(),
    ).toEqual(['changed', 'kept', 'new']);
    expect(informer.restarts().expired).toBe(1);
  });

  it('relists when the watch request itself is answered 410, and can resync every object', async () => {
    api.listHandler = () => ({
      body: {
        kind: 'ConfigMapList',
        apiVersion: 'v1',
        metadata: { resourceVersion: '10' },
        items: [configMap('a', '5')],
      },
    });
    let refused = false;
    api.watchHandler = () => {
      if (refused) return undefined;
      refused = true;
      return { status: 410, body: { kind: 'Status', reason: 'Expired', code: 410 } };
    };
    const { informer, events } = recordingInformer(kc, { resyncOnRelist: true });
    await track(informer).start();
    await nextWatch(1);
    expect(api.lists).toHaveLength(2);
    expect(events).toEqual([
      ['add', 'a', undefined],
      ['restart', 'expired'],
      ['update', 'a', undefined],
    ]);
  });

  it('drops a silent watch after the stall deadline and resumes from its last resourceVersion', async () => {
    const { informer, events } = recordingInformer(kc, { stallTimeoutMs: 2_000 });
    await track(informer).start();
    const first = await nextWatch(1);
    first.send('ADDED', configMap('a', '7'));
    const silentSince = Date.now();
    // The server sends nothing more and never closes: only the deadline can notice.
    const second = await nextWatch(2);
    const detectedAfter = Date.now() - silentSince;
    expect(detectedAfter).toBeGreaterThanOrEqual(1_900);
    expect(detectedAfter).toBeLessThan(3_000);
    expect(first.closed()).toBe(true);
    expect(second.query.get('resourceVersion')).toBe('7');
    expect(api.lists).toHaveLength(1);
    expect(events).toEqual([
      ['add', 'a', undefined],
      ['restart', 'stalled'],
    ]);
  });

  it('reopens the watch after a malformed line without losing the events behind it', async () => {
    const { informer, events } = recordingInformer(kc);
    await track(informer).start();
    const first = await nextWatch(1);
    first.send('ADDED', configMap('a', '2'));
    first.raw('{"type":"ADDED","object":{"metadata":{"na\n');
    first.send('ADDED', configMap('b', '3'));
    const second = await nextWatch(2);
    expect(second.query.get('resourceVersion')).toBe('2');
    // The server replays everything after resourceVersion 2.
    second.send('ADDED', configMap('b', '3'));
    await eventually('b', () => informer.get('ns', 'b'), 5_000);
    expect(events).toEqual([
      ['add', 'a', undefined],
      ['restart', 'failed'],
      ['add', 'b', undefined],
    ]);
    expect(api.lists).toHaveLength(1);
  });

  it('treats an ERROR event other than 410 as a failure and watches again from where it was', async () => {
    const { informer, events } = recordingInformer(kc);
    await track(informer).start();
    const first = await nextWatch(1);
    first.send('ADDED', configMap('a', '2'));
    first.send('ERROR', { kind: 'Status', code: 500, message: 'etcd timeout' });
    const second = await nextWatch(2);
    expect(second.query.get('resourceVersion')).toBe('2');
    expect(events).toEqual([
      ['add', 'a', undefined],
      ['restart', 'failed'],
    ]);
  });

  it('keeps retrying a failing list with capped backoff and never gives up', async () => {
    let failures = 8;
    const listTimes: number[] = [];
    api.listHandler = () => {
      listTimes.push(Date.now());
      if (failures-- > 0) return { status: 503, body: { kind: 'Status', code: 503 } };
      return {
        body: {
          kind: 'ConfigMapList',
          apiVersion: 'v1',
          metadata: { resourceVersion: '3' },
          items: [],
        },
      };
    };
    const { informer } = recordingInformer(kc, { backoff: { initialMs: 20, maxMs: 80 } });
    await track(informer).start();
    expect(informer.restarts().failed).toBe(8);
    const gaps = listTimes.slice(1).map((at, i) => at - (listTimes[i] ?? 0));
    // Jittered down by at most half, never above the cap (plus scheduling slack).
    expect(Math.max(...gaps)).toBeLessThan(80 + 40);
    expect(gaps.slice(-3).every((gap) => gap >= 40)).toBe(true);
  });

  it('backs off when watches keep closing at once, instead of spinning', async () => {
    api.watchOpened = (watch) => {
      watch.end();
    };
    const { informer } = recordingInformer(kc, { backoff: { initialMs: 50, maxMs: 200 } });
    await track(informer).start();
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    // Without backoff this would be hundreds.
    expect(api.watches.length).toBeLessThan(15);
    expect(api.watches.length).toBeGreaterThan(3);
  });

  it('survives a handler that throws', async () => {
    const seen: string[] = [];
    const informer = track(
      createInformer<ConfigMap>(
        clientFor(kc),
        { path: PATH, log: silent },
        {
          add: (cm) => {
            seen.push(cm.metadata.name ?? '');
            if (cm.metadata.name === 'bad') throw new Error('handler bug');
          },
        },
      ),
    );
    await informer.start();
    const watch = await nextWatch(1);
    watch.send('ADDED', configMap('bad', '2'));
    watch.send('ADDED', configMap('good', '3'));
    await eventually('good', () => informer.get('ns', 'good'), 5_000);
    expect(seen).toEqual(['bad', 'good']);
    expect(informer.restarts()).toEqual({ expired: 0, stalled: 0, failed: 0 });
  });

  it('stops: closes the watch, calls no handler afterwards, and rejects a start still waiting', async () => {
    const { informer, events } = recordingInformer(kc);
    await informer.start();
    const watch = await nextWatch(1);
    informer.stop();
    await eventually('the watch to close', () => (watch.closed() ? true : undefined), 5_000);
    watch.send('ADDED', configMap('late', '9'));
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(events).toEqual([]);
    expect(api.watches).toHaveLength(1);

    api.listHandler = () => ({ status: 500, body: {} });
    const never = recordingInformer(kc).informer;
    const starting = never.start();
    never.stop();
    await expect(starting).rejects.toThrow('stopped before its first list');
  });
});
