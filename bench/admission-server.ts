// One of the two HTTPS servers the admission benchmark loads, in a process of its own so that
// each is measured alone: `manager` serves the manager's own admission app as the manager does
// (its metrics hooked in); `bare` serves express parsing the same body and answering a fixed
// allow. Prints `listening <port>` once serving. Certificate and key come from the environment.
import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import express from 'express';
import { createManagerMetrics } from '../src/manager/metrics.ts';
import { createAdmissionApp, startWebhookServer } from '../webhooks/server.ts';

const mode = process.argv[2];
const certPem = process.env.BENCH_CERT ?? '';
const keyPem = process.env.BENCH_KEY ?? '';

async function serve(): Promise<number> {
  if (mode === 'manager') {
    const metrics = createManagerMetrics();
    const app = createAdmissionApp(
      {
        natsName: 'eventing-nats',
        natsNamespace: 'kyma-system',
        managerUsername: 'system:serviceaccount:kyma-system:nats-manager',
        breakGlassUsers: [],
        breakGlassGroups: [],
      },
      { onAdmission: metrics.onAdmission },
    );
    const server = await startWebhookServer({
      app,
      host: '127.0.0.1',
      port: 0,
      certificates: {
        current: () => ({ certPem, keyPem, caPem: certPem }),
        onChange: () => () => undefined,
      },
    });
    return server.port;
  }
  const app = express();
  app.post('/:webhook', express.json({ limit: 3 * 1024 * 1024 }), (req, res) => {
    const uid = (req.body as { request?: { uid?: string } }).request?.uid ?? '';
    res.json({
      apiVersion: 'admission.k8s.io/v1',
      kind: 'AdmissionReview',
      response: { uid, allowed: true },
    });
  });
  const server = createServer({ cert: certPem, key: keyPem }, app);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as AddressInfo).port;
}

const port = await serve();
process.stdout.write(`listening ${String(port)}\n`);
