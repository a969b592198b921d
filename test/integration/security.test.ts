import assert from 'node:assert/strict';
import { statSync, writeFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { credentials, Metadata, status, type ServiceError } from '@grpc/grpc-js';
import { HealthCheckResponse_ServingStatus, HealthClient } from '../support/health-client.js';
import { TaskExecutorServiceClient } from '../../gen/taskexecutor/v1/task_executor_service.js';
import { makeCerts, type TestCerts } from '../support/certs.js';
import { startTestExecutor, tempDir, type TestExecutor } from '../support/executor.js';
import { connect, spawnExecutor } from '../support/subprocess.js';

const list = (client: TaskExecutorServiceClient, metadata = new Metadata()) =>
  new Promise<number>((resolve, reject) =>
    client.list({}, metadata, { deadline: Date.now() + 5000 }, (error, response) => (error ? reject(error) : resolve(response.tasks.length))),
  );

const rejectsWith = (code: status, pattern?: RegExp) => (error: ServiceError) => {
  assert.equal(error.code, code, `got ${status[error.code]}: ${error.details}`);
  if (pattern) assert.match(error.details, pattern);
  return true;
};

describe('access control', () => {
  const scratch = tempDir('te-sec-');
  let certs: TestCerts;
  const token = 'a-very-secret-token-123';
  const tokenFile = join(scratch, 'token');
  const executors: TestExecutor[] = [];
  before(() => {
    certs = makeCerts(scratch);
    writeFileSync(tokenFile, `${token}\n`);
  });
  after(async () => {
    for (const te of executors) await te.close();
    rmSync(scratch, { recursive: true, force: true });
  });

  test('with a bearer token, calls without it or with a wrong one are UNAUTHENTICATED; health stays open', async () => {
    const te = await startTestExecutor({ authTokenFile: tokenFile, httpListenAddr: '127.0.0.1:0' });
    executors.push(te);
    await assert.rejects(list(te.client), rejectsWith(status.UNAUTHENTICATED, /authorization: Bearer/));
    const wrong = new Metadata();
    wrong.set('authorization', 'Bearer not-the-token-at-all');
    await assert.rejects(list(te.client, wrong), rejectsWith(status.UNAUTHENTICATED));
    const right = new Metadata();
    right.set('authorization', `Bearer ${token}`);
    assert.equal(await list(te.client, right), 0);

    const health = new HealthClient(te.executor.address, credentials.createInsecure());
    const serving = await new Promise<number>((resolve, reject) =>
      health.check({ service: '' }, (error, response) => (error ? reject(error) : resolve(response.status))),
    );
    assert.equal(serving, HealthCheckResponse_ServingStatus.SERVING);
    health.close();

    const rest = `http://${te.executor.restAddress}`;
    assert.equal((await fetch(`${rest}/getTasks`)).status, 401);
    assert.equal((await fetch(`${rest}/getTasks`, { headers: { authorization: `Bearer ${token}` } })).status, 200);
    assert.equal((await fetch(`${rest}/health`)).status, 200);
  });

  test('TLS serves encrypted calls and refuses plaintext ones', async () => {
    const te = await startTestExecutor({ tlsCertFile: certs.serverCert, tlsKeyFile: certs.serverKey });
    executors.push(te);
    const port = te.executor.address.split(':').at(-1);
    const secure = new TaskExecutorServiceClient(`localhost:${port}`, credentials.createSsl(certs.read(certs.caCert)));
    assert.equal(await list(secure), 0);
    secure.close();
    await assert.rejects(list(te.client), rejectsWith(status.UNAVAILABLE));
  });

  test('mutual TLS accepts only clients with a certificate from the client CA', async () => {
    const te = await startTestExecutor({
      tlsCertFile: certs.serverCert,
      tlsKeyFile: certs.serverKey,
      tlsClientCaFile: certs.caCert,
    });
    executors.push(te);
    const port = te.executor.address.split(':').at(-1);
    const withCert = new TaskExecutorServiceClient(
      `localhost:${port}`,
      credentials.createSsl(certs.read(certs.caCert), certs.read(certs.clientKey), certs.read(certs.clientCert)),
    );
    assert.equal(await list(withCert), 0);
    withCert.close();
    const withoutCert = new TaskExecutorServiceClient(`localhost:${port}`, credentials.createSsl(certs.read(certs.caCert)));
    await assert.rejects(list(withoutCert), rejectsWith(status.UNAVAILABLE));
    withoutCert.close();
  });

  test('a unix socket listener gets the configured permissions', async () => {
    const socket = join(scratch, 'api.sock');
    const te = await startTestExecutor({ listenAddr: `unix://${socket}`, unixSocketMode: 0o600 });
    executors.push(te);
    assert.equal(statSync(socket).mode & 0o777, 0o600);
    assert.equal(await list(te.client), 0);
  });

  test('bad security settings stop the start with a message naming the flag', async () => {
    for (const [args, pattern] of [
      [['--tls-cert-file', certs.serverCert], /--tls-cert-file and --tls-key-file go together/],
      [['--tls-client-ca-file', certs.caCert], /needs --tls-cert-file/],
      [['--auth-token-file', join(scratch, 'missing')], /--auth-token-file .*missing: ENOENT/],
    ] as const) {
      const executor = spawnExecutor(['--data-dir', tempDir(), '--listen-addr', '127.0.0.1:0', ...args]);
      assert.equal(await executor.exited, 1);
      assert.match(executor.output(), pattern);
    }
  });

  test('with authentication configured, a non-loopback listener does not warn', async () => {
    const executor = spawnExecutor(['--data-dir', tempDir(), '--listen-addr', '0.0.0.0:0', '--auth-token-file', tokenFile]);
    await connect(executor);
    executor.child.kill('SIGKILL');
    assert.doesNotMatch(executor.output(), /no authentication/);
  });
});
