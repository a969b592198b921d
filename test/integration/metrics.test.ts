import assert from 'node:assert/strict';
import { once } from 'node:events';
import { rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:http2';
import { request as httpsRequest, type RequestOptions } from 'node:https';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { status, type ServiceError } from '@grpc/grpc-js';
import { LogsRequest, StatsRequest } from '../../gen/taskexecutor/v1/task_executor_service.js';
import { makeCerts, type TestCerts } from '../support/certs.js';
import { shell, startTestExecutor, tempDir, terminated, type TestExecutor } from '../support/executor.js';
import { waitFor } from '../support/wait.js';

describe('Prometheus metrics', () => {
  let te: TestExecutor;
  before(async () => {
    te = await startTestExecutor({ metricsListenAddr: '127.0.0.1:0' });
  });
  after(async () => te.close());

  const scrape = async () => (await fetch(`http://${te.executor.metricsAddress}/metrics`)).text();
  const value = (text: string, series: string) => {
    const line = text.split('\n').find((l) => l.startsWith(`${series} `));
    return line === undefined ? undefined : Number(line.slice(series.length + 1));
  };

  test('count tasks by state, starts, terminations by reason, and RPC latency by method and code', async () => {
    await te.api.createTask({ task: shell('ok', 'exit 0') });
    await te.api.createTask({ task: shell('bad', 'exit 2') });
    await te.api.createTask({ task: shell('long', 'sleep 30') });
    await te.api.getTask({ name: 'missing' }).catch(() => undefined);
    for (const name of ['ok', 'bad']) {
      await waitFor(`${name} to end`, async () => terminated((await te.api.getTask({ name })).task));
    }
    // A create reply does not promise a started task (a start slower than the reply's wait replies
    // "waiting" and goes on), and the end of ok and bad says nothing about long: wait for its start
    // to be committed (persisted, then published to the metrics) before reading the counts.
    const running = 'task_executor_tasks{state="running",deleting="false"}';
    await waitFor('long to be counted as running', async () => value(await scrape(), running) === 1);
    const text = await scrape();
    assert.equal(value(text, 'task_executor_tasks{state="terminated",deleting="false"}'), 2);
    assert.equal(value(text, running), 1);
    assert.equal(value(text, 'task_executor_task_starts_total'), 3);
    assert.equal(value(text, 'task_executor_task_terminations_total{reason="Succeeded"}'), 1);
    assert.equal(value(text, 'task_executor_task_terminations_total{reason="Failed"}'), 1);
    assert.equal(value(text, 'task_executor_rpc_duration_seconds_count{method="Create",code="OK"}'), 3);
    assert.equal(value(text, 'task_executor_rpc_duration_seconds_count{method="Get",code="NOT_FOUND"}'), 1);
    assert.ok((value(text, 'task_executor_process_resident_memory_bytes') ?? 0) > 0);
    await te.api.deleteTask({ name: 'long' });
  });

  test('other paths are 404 and other methods 405, with a message saying what is served', async () => {
    const other = await fetch(`http://${te.executor.metricsAddress}/`);
    assert.equal(other.status, 404);
    assert.match(((await other.json()) as { message: string }).message, /serves only GET \/metrics/);
    const post = await fetch(`http://${te.executor.metricsAddress}/metrics`, { method: 'POST' });
    assert.equal(post.status, 405);
    assert.equal(post.headers.get('allow'), 'GET, HEAD');
  });

  test('streams that the client cancels, that pass their deadline or whose connection drops are counted, and open streams are gauged by method', async () => {
    await te.api.createTask({ task: shell('streamed', 'sleep 30') });
    const series = (method: string, code: string) => `task_executor_rpc_duration_seconds_count{method="${method}",code="${code}"}`;
    const open = (method: string) => `task_executor_rpc_open_streams{method="${method}"}`;

    // Watch, cancelled by the client.
    const watch = te.client.watch({ sendInitial: true });
    watch.on('error', () => {});
    await once(watch, 'data');
    assert.equal(value(await scrape(), open('Watch')), 1);
    watch.cancel();
    await waitFor('the cancelled Watch to be counted', async () => value(await scrape(), series('Watch', 'CANCELLED')) === 1);
    assert.equal(value(await scrape(), open('Watch')), 0);

    // Logs, following until the client's deadline.
    const logs = te.client.logs(LogsRequest.fromPartial({ name: 'streamed', follow: true }), { deadline: Date.now() + 500 });
    logs.on('data', () => {});
    const [error] = (await once(logs, 'error')) as [ServiceError];
    assert.equal(error.code, status.DEADLINE_EXCEEDED);
    await waitFor('the Logs call past its deadline to be counted', async () => value(await scrape(), series('Logs', 'DEADLINE_EXCEEDED')) === 1);

    // Stats, from a client whose connection goes away mid-stream.
    const session = connect(`http://${te.executor.address}`);
    const body = StatsRequest.encode(StatsRequest.fromPartial({ name: 'streamed' })).finish();
    const frame = Buffer.alloc(5 + body.length);
    frame.writeUInt32BE(body.length, 1);
    frame.set(body, 5);
    const stats = session.request({ ':method': 'POST', ':path': '/taskexecutor.v1.TaskExecutorService/Stats', 'content-type': 'application/grpc', te: 'trailers' });
    stats.end(frame);
    await once(stats, 'data'); // a first sample: the stream is open
    assert.equal(value(await scrape(), open('Stats')), 1);
    stats.on('error', () => {});
    session.destroy();
    await waitFor('the dropped Stats stream to be counted', async () => value(await scrape(), series('Stats', 'CANCELLED')) === 1);
    const text = await scrape();
    for (const method of ['Watch', 'Logs', 'Stats']) assert.equal(value(text, open(method)), 0, `open ${method} streams`);
    await te.api.deleteTask({ name: 'streamed' });
  });

  test('anything but GET /metrics is 404', async () => {
    assert.equal((await fetch(`http://${te.executor.metricsAddress}/`)).status, 404);
  });
});

/** GET over HTTPS with the given TLS material; rejects when the handshake fails. */
function httpsGet(url: string, options: RequestOptions): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const request = httpsRequest(url, { ...options, method: 'GET' }, (response) => {
      let body = '';
      response.setEncoding('utf8').on('data', (chunk: string) => (body += chunk));
      response.on('end', () => resolve({ status: response.statusCode ?? 0, body }));
      response.on('error', reject);
    });
    request.on('error', reject);
    request.end();
  });
}

describe('access to /metrics (--metrics-auth)', () => {
  const scratch = tempDir('te-metrics-');
  const token = 'a-very-secret-token-123';
  const tokenFile = join(scratch, 'token');
  let certs: TestCerts;
  const executors: TestExecutor[] = [];
  const start = async (...args: Parameters<typeof startTestExecutor>) => {
    const te = await startTestExecutor(...args);
    executors.push(te);
    return te;
  };
  before(() => {
    certs = makeCerts(scratch);
    writeFileSync(tokenFile, `${token}\n`);
  });
  after(async () => {
    for (const te of executors) await te.close();
    rmSync(scratch, { recursive: true, force: true });
  });

  test('by default it needs the API bearer token: 401 without it or with a wrong one, 200 with it', async () => {
    const te = await start({ metricsListenAddr: '127.0.0.1:0', authTokenFile: tokenFile });
    const url = `http://${te.executor.metricsAddress}/metrics`;
    const without = await fetch(url);
    assert.equal(without.status, 401);
    assert.equal(without.headers.get('www-authenticate'), 'Bearer');
    assert.match(((await without.json()) as { message: string }).message, /authorization: Bearer <token>/);
    assert.equal((await fetch(url, { headers: { authorization: 'Bearer not-the-token-at-all' } })).status, 401);
    const scraped = await fetch(url, { headers: { authorization: `Bearer ${token}` } });
    assert.equal(scraped.status, 200);
    assert.match(await scraped.text(), /task_executor_task_starts_total/);
  });

  test("by default it is served over the API's TLS, and with a client CA only to clients with a certificate", async () => {
    const tls = await start({ metricsListenAddr: '127.0.0.1:0', tlsCertFile: certs.serverCert, tlsKeyFile: certs.serverKey });
    const port = (te: TestExecutor) => te.executor.metricsAddress!.split(':').at(-1);
    const served = await httpsGet(`https://localhost:${port(tls)}/metrics`, { ca: certs.read(certs.caCert) });
    assert.equal(served.status, 200);
    assert.match(served.body, /task_executor_task_starts_total/);
    await assert.rejects(fetch(`http://${tls.executor.metricsAddress}/metrics`), 'plain HTTP is not answered');

    const mutual = await start({
      metricsListenAddr: '127.0.0.1:0',
      tlsCertFile: certs.serverCert,
      tlsKeyFile: certs.serverKey,
      tlsClientCaFile: certs.caCert,
    });
    const withCert = await httpsGet(`https://localhost:${port(mutual)}/metrics`, {
      ca: certs.read(certs.caCert),
      cert: certs.read(certs.clientCert),
      key: certs.read(certs.clientKey),
    });
    assert.equal(withCert.status, 200);
    await assert.rejects(httpsGet(`https://localhost:${port(mutual)}/metrics`, { ca: certs.read(certs.caCert) }), 'no client certificate, no answer');
  });

  test('--metrics-auth none serves plain HTTP without a token, while the API keeps its TLS and token', async () => {
    const te = await start({
      metricsListenAddr: '127.0.0.1:0',
      metricsAuth: 'none',
      tlsCertFile: certs.serverCert,
      tlsKeyFile: certs.serverKey,
      authTokenFile: tokenFile,
    });
    const scraped = await fetch(`http://${te.executor.metricsAddress}/metrics`);
    assert.equal(scraped.status, 200);
    assert.match(await scraped.text(), /task_executor_task_starts_total/);
  });
});
