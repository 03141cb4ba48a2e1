import { X509Certificate } from 'node:crypto';
import { Agent, request as httpsRequest } from 'node:https';
import { connect as netConnect } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import type { CertificateSource, ServingCertificate } from '../../certs/source.ts';
import { createCertificateAuthority, issueCertificate, type KeyPair } from '../../certs/x509.ts';
import type { Logger } from '../../src/base/log.ts';
import {
  createAdmissionApp,
  startWebhookServer,
  type WebhookServer,
  type WebhookTimeouts,
} from '../../webhooks/server.ts';
import { TEST_ADMISSION_CONFIG as config } from '../support/admission.ts';

const app = createAdmissionApp(config);

const ca = createCertificateAuthority('nats-manager-webhook-ca', 1);
const serving = (): KeyPair =>
  issueCertificate(ca, {
    commonName: 'nats-manager-webhook',
    dnsNames: ['localhost'],
    ipAddresses: ['127.0.0.1'],
    usage: 'server',
    validDays: 1,
  });
const first = serving();
const second = serving();

const fingerprint = (pem: string): string => new X509Certificate(pem).fingerprint256;

/** A certificate source the test rotates by hand. */
function handRotatedSource(initial: KeyPair): CertificateSource & { rotate(next: KeyPair): void } {
  let current: ServingCertificate = { ...initial, caPem: ca.certPem };
  const listeners = new Set<(certificate: ServingCertificate) => void>();
  return {
    current: () => current,
    onChange: (listener) => {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    rotate: (next) => {
      current = { ...next, caPem: ca.certPem };
      for (const listener of listeners) listener(current);
    },
  };
}

const review = JSON.stringify({
  apiVersion: 'admission.k8s.io/v1',
  kind: 'AdmissionReview',
  request: {
    uid: 'tls-uid',
    kind: { group: 'operator.kyma-project.io', version: 'v1alpha1', kind: 'NATS' },
    resource: { group: 'operator.kyma-project.io', version: 'v1alpha1', resource: 'nats' },
    name: 'eventing-nats',
    namespace: 'kyma-system',
    operation: 'CREATE',
    userInfo: { username: 'alice', groups: [] },
    object: { metadata: { name: 'eventing-nats', namespace: 'kyma-system' }, spec: {} },
  },
});

interface Answer {
  readonly status: number;
  readonly certificate: string;
  readonly body: string;
}

function postReview(port: number, agent: Agent): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      {
        host: '127.0.0.1',
        port,
        path: '/validate-nats',
        method: 'POST',
        agent,
        headers: { 'Content-Type': 'application/json' },
      },
      (res) => {
        const socket = res.socket as TLSSocket;
        const certificate = socket.getPeerCertificate().fingerprint256;
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (body += chunk));
        res.on('end', () => {
          resolve({ status: res.statusCode ?? 0, certificate, body });
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(review);
  });
}

const servers: WebhookServer[] = [];
const agents: Agent[] = [];

async function start(
  source: CertificateSource,
  timeouts?: Partial<WebhookTimeouts>,
  log?: Logger,
): Promise<WebhookServer> {
  const server = await startWebhookServer({
    app,
    host: '127.0.0.1',
    port: 0,
    certificates: source,
    ...(timeouts === undefined ? {} : { timeouts }),
    ...(log === undefined ? {} : { log }),
  });
  servers.push(server);
  return server;
}

function agent(keepAlive: boolean): Agent {
  // No TLS session resumption: a resumed session shows no peer certificate.
  const created = new Agent({ keepAlive, ca: ca.certPem, maxSockets: 4, maxCachedSessions: 0 });
  agents.push(created);
  return created;
}

afterEach(async () => {
  for (const created of agents.splice(0)) created.destroy();
  await Promise.all(servers.splice(0).map((server) => server.close()));
});

describe('startWebhookServer', () => {
  it('serves the admission app over HTTPS with the current certificate', async () => {
    const { port } = await start(handRotatedSource(first));
    expect(port).toBeGreaterThan(0);
    const answer = await postReview(port, agent(false));
    expect(answer.status).toBe(200);
    expect(answer.certificate).toBe(fingerprint(first.certPem));
    expect(JSON.parse(answer.body)).toMatchObject({ response: { uid: 'tls-uid', allowed: true } });
  });

  it('swaps the certificate while requests run: none fails, new connections get the new one', async () => {
    const source = handRotatedSource(first);
    const { port } = await start(source);
    const fresh = agent(false); // a new TLS connection per request
    const reused = agent(true); // connections kept across the rotation
    const answers: { answer: Answer; afterRotation: boolean; fresh: boolean }[] = [];
    const failures: unknown[] = [];
    let rotated = false;
    let stop = false;
    const loop = async (via: Agent): Promise<void> => {
      while (!stop && failures.length === 0) {
        const afterRotation = rotated;
        try {
          answers.push({
            answer: await postReview(port, via),
            afterRotation,
            fresh: via === fresh,
          });
        } catch (error) {
          failures.push(error);
        }
      }
    };
    const loops = [loop(fresh), loop(fresh), loop(reused), loop(reused)];
    const until = async (enough: () => boolean): Promise<void> => {
      while (!enough() && failures.length === 0) {
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
    };
    // Counts, not durations, so that a loaded machine still runs enough requests on each side.
    await until(() => answers.length >= 20);
    source.rotate(second);
    rotated = true;
    await until(() => answers.filter((a) => a.afterRotation && a.fresh).length >= 20);
    stop = true;
    await Promise.all(loops);

    expect(failures).toEqual([]);
    expect(answers.filter((a) => !a.afterRotation).length).toBeGreaterThanOrEqual(20);
    // Requests on connections opened before the swap went on as well.
    expect(answers.filter((a) => a.afterRotation && !a.fresh).length).toBeGreaterThan(0);
    for (const { answer } of answers) expect(answer.status).toBe(200);
    // Every connection opened after the swap presents the second certificate.
    const freshAfter = answers.filter((a) => a.afterRotation && a.fresh);
    expect(freshAfter.length).toBeGreaterThan(0);
    for (const { answer } of freshAfter) {
      expect(answer.certificate).toBe(fingerprint(second.certPem));
    }
    expect((await postReview(port, agent(false))).certificate).toBe(fingerprint(second.certPem));
  });

  it('keeps the current certificate when a rotated one is unusable', async () => {
    const source = handRotatedSource(first);
    const errors: string[] = [];
    const log: Logger = {
      info: () => undefined,
      error: (msg: string) => errors.push(msg),
      with: () => log,
    };
    const { port } = await start(source, {}, log);
    source.rotate({ certPem: 'not a certificate', keyPem: second.keyPem });
    expect(errors).toEqual(['rotated webhook certificate refused; keeping the current one']);
    expect((await postReview(port, agent(false))).certificate).toBe(fingerprint(first.certPem));
  });

  it('stops following the source once closed', async () => {
    const source = handRotatedSource(first);
    const server = await start(source);
    await server.close();
    servers.splice(servers.indexOf(server), 1);
    expect(() => {
      source.rotate(second);
    }).not.toThrow();
  });

  it('says which address it could not listen on', async () => {
    const { port } = await start(handRotatedSource(first));
    await expect(
      startWebhookServer({ app, host: '127.0.0.1', port, certificates: handRotatedSource(first) }),
    ).rejects.toThrow(`webhook server cannot listen on 127.0.0.1:${String(port)}`);
  });
});

describe('slow clients', () => {
  const timeouts = { headersMs: 300, requestMs: 600, tlsHandshakeMs: 300 };

  /** Opens a TLS connection, sends `data`, and collects what comes back until the server closes. */
  function stall(port: number, data: string): Promise<{ reply: string; ms: number }> {
    return new Promise((resolve, reject) => {
      const started = Date.now();
      let reply = '';
      const socket = tlsConnect({ host: '127.0.0.1', port, ca: ca.certPem }, () => {
        socket.write(data);
      });
      socket.setEncoding('utf8');
      socket.on('data', (chunk: string) => (reply += chunk));
      socket.on('error', reject);
      socket.on('close', () => {
        resolve({ reply, ms: Date.now() - started });
      });
    });
  }

  it('times out a client that never finishes its headers with 408', async () => {
    const { port } = await start(handRotatedSource(first), timeouts);
    const { reply, ms } = await stall(port, 'POST /validate-nats HTTP/1.1\r\nHost: x\r\n');
    expect(reply).toMatch(/^HTTP\/1.1 408 /);
    expect(ms).toBeLessThan(3_000);
  });

  it('times out a client that never finishes its body with 408', async () => {
    const { port } = await start(handRotatedSource(first), timeouts);
    const { reply, ms } = await stall(
      port,
      'POST /validate-nats HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n' +
        'Content-Length: 1000\r\n\r\n{"apiVersion":',
    );
    expect(reply).toMatch(/^HTTP\/1.1 408 /);
    expect(ms).toBeLessThan(3_000);
  });

  it('drops a connection that never starts the TLS handshake', async () => {
    const { port } = await start(handRotatedSource(first), timeouts);
    const ms = await new Promise<number>((resolve, reject) => {
      const started = Date.now();
      const socket = netConnect({ host: '127.0.0.1', port });
      socket.on('error', reject);
      socket.on('close', () => {
        resolve(Date.now() - started);
      });
    });
    expect(ms).toBeLessThan(3_000);
  });
});
