// Random and hostile requests against every RPC: each gets a proper status
// (never INTERNAL or UNKNOWN), nothing escapes the data dir, and the service
// stays healthy.
import assert from 'node:assert/strict';
import { readdirSync, rmSync, writeFileSync } from 'node:fs';
import { connect as netConnect } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Client, credentials, InterceptingCall, status, type Interceptor, type ServiceError } from '@grpc/grpc-js';
import fc from 'fast-check';
import { pino } from 'pino';
import { Task } from '../../gen/taskexecutor/v1/task.js';
import { CreateRequest, GetRequest, LogsRequest, SetTasksRequest, TaskExecutorServiceClient } from '../../gen/taskexecutor/v1/task_executor_service.js';
import { splitHostPort } from '../../src/util/host-port.js';
import { type RunningHttpListener, startHttpListener } from '../../src/util/http-listener.js';
import { type Api, apiFor, processTask, startTestExecutor, tempDir, terminated, type TestExecutor } from '../support/executor.js';
import { HealthCheckResponse_ServingStatus, HealthClient } from '../support/health-client.js';
import { connect, type ExecutorProcess, spawnExecutor } from '../support/subprocess.js';
import { waitFor } from '../support/wait.js';

const SERVICE = '/taskexecutor.v1.TaskExecutorService';
const UNARY = ['Create', 'Get', 'Delete', 'SetTasks', 'List'];
const STREAMS = ['Logs', 'Stats', 'Watch'];
const ACCEPTABLE = new Set([
  status.OK,
  status.INVALID_ARGUMENT,
  status.NOT_FOUND,
  status.ALREADY_EXISTS,
  status.FAILED_PRECONDITION,
  status.RESOURCE_EXHAUSTED,
  status.CANCELLED,
]);
const identity = (b: Buffer) => b;

describe('bad and hostile input', () => {
  let te: TestExecutor;
  let raw: Client;
  before(async () => {
    te = await startTestExecutor();
    raw = new Client(te.executor.address, credentials.createInsecure(), { 'grpc.max_send_message_length': -1 });
  });
  after(async () => {
    raw.close();
    await te.close();
  });

  const unary = (method: string, bytes: Uint8Array) =>
    new Promise<status>((resolve) =>
      raw.makeUnaryRequest(`${SERVICE}/${method}`, identity, identity, Buffer.from(bytes), { deadline: Date.now() + 10_000 }, (error: ServiceError | null) =>
        resolve(error ? error.code : status.OK),
      ),
    );

  /** Streams end by themselves, or are cancelled after a moment (a valid follow never ends). */
  const stream = (method: string, bytes: Uint8Array) =>
    new Promise<status>((resolve) => {
      const call = raw.makeServerStreamRequest(`${SERVICE}/${method}`, identity, identity, Buffer.from(bytes));
      const timer = setTimeout(() => call.cancel(), 300);
      call.on('data', () => {});
      call.on('error', () => {});
      call.on('status', (s) => {
        clearTimeout(timer);
        resolve(s.code);
      });
    });

  const expectProper = (code: status, what: string) =>
    assert.ok(ACCEPTABLE.has(code), `${what} answered ${status[code]}, which blames the server for bad input`);

  async function assertHealthy(): Promise<void> {
    const health = new HealthClient(te.executor.address, credentials.createInsecure());
    const serving = await new Promise<number>((resolve, reject) =>
      health.check({ service: '' }, (error, response) => (error ? reject(error) : resolve(response.status))),
    );
    health.close();
    assert.equal(serving, HealthCheckResponse_ServingStatus.SERVING);
    assert.ok(Array.isArray((await te.api.listTasks()).tasks));
  }

  test('random bytes sent to every RPC get a proper status', async () => {
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...UNARY, ...STREAMS), fc.uint8Array({ maxLength: 512 }), async (method, bytes) => {
        const code = UNARY.includes(method) ? await unary(method, bytes) : await stream(method, bytes);
        expectProper(code, `${method} with ${bytes.length} random bytes`);
      }),
      { numRuns: 150 },
    );
    await assertHealthy();
  });

  const hostileName = fc.oneof(
    fc.string(),
    fc.constantFrom('../etc', '../../root', '/etc/passwd', 'a/b', '.', '..', '.quarantine', 'x\0y', '%2e%2e', 'é', 'A', '-a', 'a'.repeat(300)),
    fc.stringMatching(/^[a-z0-9][a-z0-9.-]{0,20}[a-z0-9]$/),
  );
  const text = fc.oneof(fc.string({ maxLength: 40 }), fc.constantFrom('\0', 'a=b', '../../', '/tmp', 'x'.repeat(200_000)));
  const taskArbitrary = fc.record({
    name: hostileName,
    spec: fc.option(
      fc.record({
        process: fc.record({
          // Only harmless programs: random argv would run random commands.
          command: fc.oneof(fc.constant([] as string[]), fc.tuple(fc.constantFrom('true', '/nonexistent/program', 'echo')).map((c) => [...c])),
          args: fc.array(text, { maxLength: 5 }),
          env: fc.array(fc.record({ name: text, value: text }), { maxLength: 3 }),
          workingDir: fc.oneof(fc.constant(''), text),
          timeoutSeconds: fc.option(fc.integer({ min: -5, max: 5 }), { nil: undefined }),
          user: fc.oneof(fc.constant(''), fc.constantFrom('nobody', 'root;rm', '99999', 'no such')),
        }),
        stopSignal: fc.oneof(fc.constant(''), fc.constantFrom('SIGTERM', 'KILL', 'SIGNOPE', '9')),
        restartPolicy: fc.integer({ min: -1, max: 5 }),
      }),
      { nil: undefined },
    ),
  });

  test('random and hostile tasks through Create and SetTasks get a proper status and never escape the data dir', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(taskArbitrary, { minLength: 1, maxLength: 3 }), async (tasks) => {
        const wire = tasks.map((t) =>
          Task.fromPartial({ name: t.name, spec: t.spec && { ...t.spec, runtime: { $case: 'process', value: t.spec.process } } }),
        );
        expectProper(await unary('Create', CreateRequest.encode({ task: wire[0] }).finish()), 'Create');
        expectProper(await unary('SetTasks', SetTasksRequest.encode({ tasks: wire }).finish()), 'SetTasks');
        expectProper(await unary('Get', GetRequest.encode({ name: wire[0]!.name }).finish()), 'Get');
      }),
      { numRuns: 60, ...(process.env.FC_SEED ? { seed: Number(process.env.FC_SEED) } : {}) },
    );
    for (const entry of readdirSync(te.dataDir)) {
      assert.match(entry, /^(\.quarantine|\.executor\.lock|\.seccomp-filters|[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*)$/, `unexpected entry ${entry}`);
    }
    await assertHealthy();
  });

  test('a huge invalid value gets a short INVALID_ARGUMENT message and the connection stays usable', async () => {
    // A status message travels in an HTTP/2 trailer: echoing a 200 KB value once wedged the connection.
    for (const [workingDir, pattern] of [
      ['x'.repeat(200_000), /workingDir is longer than 4096 bytes/],
      ['x'.repeat(3000), /workingDir "x{80}"… \(3000 characters\) must be an absolute path/],
    ] as const) {
      const task = Task.fromPartial({ name: 'huge-dir', spec: { runtime: { $case: 'process', value: { command: ['true'], workingDir } } } });
      const error = await te.api.createTask({ task }).then(
        () => assert.fail('expected INVALID_ARGUMENT'),
        (e: ServiceError) => e,
      );
      assert.equal(error.code, status.INVALID_ARGUMENT);
      assert.ok(error.details.length < 300, `message of ${error.details.length} characters`);
      assert.match(error.details, pattern);
    }
    await assertHealthy();
  });

  test('invalid UTF-8 in a string field is INVALID_ARGUMENT', async () => {
    // GetRequest { name (field 1) = 0xff 0xfe 'a' }
    const code = await unary('Get', Uint8Array.from([0x0a, 0x03, 0xff, 0xfe, 0x61]));
    assert.equal(code, status.INVALID_ARGUMENT);
  });

  test('invalid UTF-8 in a command argument is INVALID_ARGUMENT saying so, and no task is created with U+FFFD in its place', async () => {
    const bytes = Buffer.from(CreateRequest.encode(CreateRequest.fromPartial({ task: processTask('bad-utf8-arg', ['echo', 'A~B']) })).finish());
    bytes[bytes.indexOf('A~B') + 1] = 0xff;
    const error = await new Promise<ServiceError | null>((resolve) =>
      raw.makeUnaryRequest(`${SERVICE}/Create`, identity, identity, bytes, { deadline: Date.now() + 10_000 }, (e: ServiceError | null) => resolve(e)),
    );
    assert.equal(error?.code, status.INVALID_ARGUMENT, `answer: ${error?.message ?? 'OK'}`);
    assert.match(error.details, /not valid UTF-8/);
    assert.deepEqual((await te.api.listTasks()).tasks.filter((t) => t.name === 'bad-utf8-arg'), []);
  });

  test('unknown enum values are refused with INVALID_ARGUMENT or ignored, never a crash', async () => {
    const logs = await stream('Logs', LogsRequest.encode({ ...LogsRequest.fromPartial({ name: 'missing' }), stream: 99 as never }).finish());
    expectProper(logs, 'Logs with stream=99');
    await assertHealthy();
  });

  test('env names that are Object.prototype keys (__proto__, constructor) reach the task', async () => {
    for (const name of ['__proto__', 'constructor', 'hasOwnProperty']) {
      const task = `env-${name.replaceAll('_', '').toLowerCase()}`;
      // printenv exits 0 only when the variable is there, and prints its value.
      await te.api.createTask({ task: processTask(task, ['printenv', name], { env: [{ name, value: `value of ${name}` }] }) });
      const end = await waitFor(`${task} to end`, async () => terminated((await te.api.getTask({ name: task })).task));
      assert.equal(end.exitCode, 0, `${name} is missing from the task's environment`);
    }
  });

  test('huge arrays are INVALID_ARGUMENT and oversized messages RESOURCE_EXHAUSTED', async () => {
    const many = Task.fromPartial({
      name: 'many-args',
      spec: { runtime: { $case: 'process', value: { command: ['true'], args: Array.from({ length: 20_000 }, () => 'a') } } },
    });
    assert.equal(await unary('Create', CreateRequest.encode({ task: many }).finish()), status.INVALID_ARGUMENT);
    const oversized = new Uint8Array(5 * 1024 * 1024);
    assert.equal(await unary('Create', oversized), status.RESOURCE_EXHAUSTED);
    await assertHealthy();
  });
});

/** Sends `request` as raw bytes and returns the status and body of the answer (status 0: the connection closed without one). */
function rawHttp(address: string, request: string | Buffer): Promise<{ status: number; body: string }> {
  const [host, port] = splitHostPort(address, 'address', '127.0.0.1:1');
  return new Promise((resolve, reject) => {
    const socket = netConnect(port, host);
    let text = '';
    socket.setEncoding('utf8').on('data', (chunk: string) => (text += chunk));
    socket.on('error', (error: NodeJS.ErrnoException) => (error.code === 'ECONNRESET' ? undefined : reject(error)));
    socket.on('close', () => resolve({ status: Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0), body: text.split('\r\n\r\n').slice(1).join('') }));
    socket.write(request);
  });
}

describe('malformed HTTP requests on the REST and metrics listeners', () => {
  const scratch = tempDir('te-http-');
  const token = 'a-very-secret-token-123';
  const tokenFile = join(scratch, 'token');
  let executor: ExecutorProcess;
  let grpc: TaskExecutorServiceClient;
  let api: Api;
  let rest: string;
  let metrics: string;
  const authorization = `Authorization: Bearer ${token}\r\n`;
  before(async () => {
    writeFileSync(tokenFile, token);
    executor = spawnExecutor([
      '--data-dir', join(scratch, 'data'),
      '--listen-addr', '127.0.0.1:0',
      '--http-listen-addr', '127.0.0.1:0',
      '--metrics-listen-addr', '127.0.0.1:0',
      '--auth-token-file', tokenFile,
    ]);
    const { client, address } = await connect(executor);
    client.close();
    const withToken: Interceptor = (options, next) =>
      new InterceptingCall(next(options), {
        start: (metadata, listener, start) => {
          metadata.set('authorization', `Bearer ${token}`);
          start(metadata, listener);
        },
      });
    grpc = new TaskExecutorServiceClient(address, credentials.createInsecure(), { interceptors: [withToken] });
    api = apiFor(grpc);
    rest = /"address":"([^"]+)"[^\n]*original REST API listening/.exec(executor.output())![1]!;
    metrics = /"address":"([^"]+)"[^\n]*metrics listening/.exec(executor.output())![1]!;
  });
  after(() => {
    grpc.close();
    executor.child.kill('SIGKILL');
    rmSync(scratch, { recursive: true, force: true });
  });

  async function assertStillServing(): Promise<void> {
    assert.equal(executor.child.exitCode, null, `the executor exited: ${executor.output().slice(-2000)}`);
    assert.equal((await rawHttp(rest, `GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`)).status, 200);
    assert.equal((await rawHttp(metrics, `GET /metrics HTTP/1.1\r\nHost: x\r\n${authorization}Connection: close\r\n\r\n`)).status, 200);
    assert.deepEqual((await api.listTasks()).tasks, []);
  }

  test('REST: a body that is not valid UTF-8 is 400 saying so, and no task is created with U+FFFD in its place', async () => {
    const body = Buffer.from('{"name": "bad-utf8-rest", "process": {"command": ["echo", "A~B"]}}');
    body[body.indexOf('A~B') + 1] = 0xff;
    const head = `POST /tasks HTTP/1.1\r\nHost: x\r\n${authorization}Content-Type: application/json\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n`;
    const answer = await rawHttp(rest, Buffer.concat([Buffer.from(head), body]));
    assert.equal(answer.status, 400, `answer: ${JSON.stringify(answer)}`);
    assert.match((JSON.parse(answer.body) as { message: string }).message, /not valid UTF-8/);
    await assertStillServing();
  });

  for (const [listener, request, status, message] of [
    ['metrics', `GET // HTTP/1.1\r\nHost: x\r\n${authorization}Connection: close\r\n\r\n`, 404, /serves only GET \/metrics/],
    ['metrics', `GET // HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`, 401, /authorization: Bearer/],
    ['metrics', `GET * HTTP/1.1\r\nHost: x\r\n${authorization}Connection: close\r\n\r\n`, 400, /malformed request target "\*"/],
    ['REST', `GET // HTTP/1.1\r\nHost: x\r\n${authorization}Connection: close\r\n\r\n`, 404, /404 page not found/],
    ['REST', `GET /tasks/%E0%A4%A HTTP/1.1\r\nHost: x\r\n${authorization}Connection: close\r\n\r\n`, 400, /"%E0%A4%A" in the path is not valid percent-encoding/],
    ['REST', `DELETE /tasks/%zz HTTP/1.1\r\nHost: x\r\n${authorization}Connection: close\r\n\r\n`, 400, /not valid percent-encoding/],
    ['REST', 'NOT AN HTTP REQUEST\r\n\r\n', 400, /malformed HTTP request/],
    ['metrics', 'GET /metrics HTTP/1.1\r\nBad Header Line\r\n\r\n', 400, /malformed HTTP request/],
  ] as const) {
    test(`${listener}: ${JSON.stringify(request.split('\r\n')[0])}${request.includes('Authorization') ? ' with the token' : ''} is ${status}, and every API keeps serving`, async () => {
      const answer = await rawHttp(listener === 'REST' ? rest : metrics, request);
      assert.equal(answer.status, status, `answer: ${JSON.stringify(answer)}; executor output: ${executor.output().slice(-1500)}`);
      assert.match(answer.body.startsWith('{') ? (JSON.parse(answer.body) as { message: string }).message : answer.body, message);
      await assertStillServing();
    });
  }
});

describe('the HTTP listener behind the REST and metrics servers', () => {
  const lines: string[] = [];
  const log = pino({ level: 'error' }, { write: (line: string) => lines.push(line) });
  let listener: RunningHttpListener;
  before(async () => {
    listener = await startHttpListener({
      listenAddr: '127.0.0.1:0',
      flag: '--test-listen-addr',
      example: '127.0.0.1:0',
      access: {},
      log,
      firstRequestTimeoutMs: 1000,
      handle: async (_request, response, path) => {
        if (path === '/throws') throw new Error('a synchronous bug');
        await Promise.resolve();
        if (path === '/rejects') throw new Error('an asynchronous bug');
        // Longer than the first-request timeout (1 s): a request being handled is not idle.
        if (path === '/slow') await new Promise((resolve) => setTimeout(resolve, 1500));
        response.writeHead(200).end('fine');
      },
    });
  });
  after(() => listener.close());

  test('a handler that throws, synchronously or not, gets a 500 and a logged error, and the listener keeps serving', async () => {
    for (const [path, bug] of [['/throws', 'a synchronous bug'], ['/rejects', 'an asynchronous bug']] as const) {
      const response = await fetch(`http://${listener.address}${path}`);
      assert.equal(response.status, 500);
      assert.match(((await response.json()) as { message: string }).message, /executor log has the details/);
      assert.ok(lines.some((line) => line.includes(bug)), `the log names "${bug}": ${lines.join('')}`);
    }
    assert.equal(await (await fetch(`http://${listener.address}/ok`)).text(), 'fine');
  });

  test('a connection that sends no request is closed after the first-request timeout; a slow request is answered', async () => {
    const [host, port] = splitHostPort(listener.address, 'address', '127.0.0.1:1');
    const idle = netConnect(port, host);
    let closed = false;
    idle.on('close', () => (closed = true)).on('error', () => {});
    const slow = fetch(`http://${listener.address}/slow`);
    await waitFor('the server to close the idle connection', () => closed, { timeoutMs: 10_000 });
    assert.equal(await (await slow).text(), 'fine');
  });
});
