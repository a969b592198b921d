// The original REST API served from the same manager. One table of cases runs
// against both front ends, so the REST adapter cannot drift from gRPC.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import type { ServiceError } from '@grpc/grpc-js';
import { Task } from '../../gen/taskexecutor/v1/task.js';
import { GRPC_CODES } from '../../src/api/status.js';
import { HTTP_STATUS, MAX_BODY_BYTES } from '../../src/compat/rest-server.js';
import type { TaskErrorKind } from '../../src/errors.js';
import { startTestExecutor, type TestExecutor } from '../support/executor.js';
import { waitFor } from '../support/wait.js';

// biome-ignore lint/suspicious/noExplicitAny: wire JSON read by path in both front ends' shapes; a path that is missing fails the assertion reading it
type Json = any;
type Outcome = { ok: true; body: Json } | { ok: false; status: number; message: string };

/** The operations both APIs offer, taking and returning the JSON people send. */
interface FrontEnd {
  label: string;
  create(task: Json): Promise<Outcome>;
  get(name: string): Promise<Outcome>;
  remove(name: string): Promise<Outcome>;
  setTasks(tasks: Json[]): Promise<Outcome>;
  list(): Promise<Outcome>;
  /** The status number this front end uses for an error kind (its one mapping). */
  statusOf(kind: TaskErrorKind): number;
}

function grpcFrontEnd(te: TestExecutor): FrontEnd {
  const wrap = async (call: Promise<{ task?: Task; tasks?: Task[] }>): Promise<Outcome> => {
    try {
      const response = await call;
      return { ok: true, body: response.tasks ? response.tasks.map((t) => Task.toJSON(t)) : Task.toJSON(response.task!) };
    } catch (error) {
      const { code, details } = error as ServiceError;
      return { ok: false, status: code, message: details };
    }
  };
  return {
    label: 'gRPC',
    create: (task) => wrap(te.api.createTask({ task: Task.fromJSON(task) })),
    get: (name) => wrap(te.api.getTask({ name })),
    remove: (name) => wrap(te.api.deleteTask({ name })),
    setTasks: (tasks) => wrap(te.api.setTasks({ tasks: tasks.map((t) => Task.fromJSON(t)) })),
    list: () => wrap(te.api.listTasks()),
    statusOf: (kind) => GRPC_CODES[kind],
  };
}

function restFrontEnd(base: string): FrontEnd {
  const call = async (method: string, path: string, body?: Json): Promise<Outcome> => {
    const response = await fetch(`${base}${path}`, {
      method,
      headers: { 'Content-Type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await response.text();
    if (response.ok) return { ok: true, body: text ? JSON.parse(text) : undefined };
    return { ok: false, status: response.status, message: JSON.parse(text).message };
  };
  return {
    label: 'REST',
    create: (task) => call('POST', '/tasks', task),
    get: (name) => call('GET', `/tasks/${encodeURIComponent(name)}`),
    remove: (name) => call('DELETE', `/tasks/${encodeURIComponent(name)}`),
    setTasks: (tasks) => call('POST', '/setTasks', tasks),
    list: () => call('GET', '/getTasks'),
    statusOf: (kind) => HTTP_STATUS[kind],
  };
}

const proc = (name: string, command: string[]) => ({ name, spec: { process: { command } } });

interface Case {
  title: string;
  run(api: FrontEnd): Promise<Outcome>;
  expect: 'ok' | TaskErrorKind;
  message?: RegExp;
  check?(body: Json): void;
  /** Why the case exists only on REST (JSON types and the original's body shape have no gRPC counterpart). */
  restOnly?: string;
}

/** A body as the original's Go controller sends it: the process at the top level. */
const original = (name: string, process: Json, extra: Json = {}) => ({ name, process, ...extra });
const WIRE_TYPED = 'protobuf on the wire has no wrong JSON types: a gRPC client cannot even encode one';
const ORIGINAL_SHAPE = "the original's body shape (process at the top level) exists only on REST";

/** A field of the wrong JSON type is refused with 400 naming its path, on every field of both body shapes. */
const WRONG_TYPES: [title: string, body: Json, message: RegExp][] = [
  ['a string for args', original('typed', { command: ['echo'], args: 'hello' }), /^process\.args must be an array of strings; got the string "hello"$/],
  ['a number in args', original('typed', { command: ['echo'], args: ['a', 1] }), /^process\.args\[1\] must be a string; got number 1$/],
  ['null in command', original('typed', { command: ['echo', null] }), /^process\.command\[1\] must be a string; got null$/],
  ['a string for spec.process.command', { name: 'typed', spec: { process: { command: 'echo hi' } } }, /^spec\.process\.command must be an array of strings/],
  ['an object for env', original('typed', { command: ['env'], env: { A: 'b' } }), /^process\.env must be an array of \{"name", "value"\} objects; got an object$/],
  ['a number for an env value', original('typed', { command: ['env'], env: [{ name: 'A', value: 1 }] }), /^process\.env\[0\]\.value must be a string; got number 1$/],
  ['a string for env valueFrom', original('typed', { command: ['env'], env: [{ name: 'A', valueFrom: 'x' }] }), /^process\.env\[0\]\.valueFrom must be an object/],
  ['a number for workingDir', original('typed', { command: ['pwd'], workingDir: 5 }), /^process\.workingDir must be a string; got number 5$/],
  ['words for timeoutSeconds', original('typed', { command: ['true'], timeoutSeconds: 'ten' }), /^process\.timeoutSeconds must be a whole number; got the string "ten"$/],
  ['a fraction for timeoutSeconds', original('typed', { command: ['true'], timeoutSeconds: 1.5 }), /^process\.timeoutSeconds must be a whole number; got number 1\.5$/],
  ['a number for the name', { name: 5, process: { command: ['true'] } }, /^name must be a string; got number 5$/],
  ['a string for process', original('typed', 'sleep 1'), /^process must be an object; got the string "sleep 1"$/],
  ['an array for spec', { name: 'typed', spec: [] }, /^spec must be an object; got an array$/],
  ['a string for cleanEnv', { name: 'typed', spec: { process: { command: ['true'], cleanEnv: 'yes' } } }, /^spec\.process\.cleanEnv must be true or false/],
  ['an unknown restartPolicy', { name: 'typed', spec: { process: { command: ['true'] }, restartPolicy: 'Always' } }, /^spec\.restartPolicy must be one of "RESTART_POLICY_NEVER", "RESTART_POLICY_ON_FAILURE"; got the string "Always"$/],
  ['a string for resources', { name: 'typed', spec: { process: { command: ['true'] }, resources: '1 cpu' } }, /^spec\.resources must be an object/],
  ['a number for deletionTimestamp', original('typed', { command: ['true'] }, { deletionTimestamp: 5 }), /^deletionTimestamp must be an RFC 3339 time string; got number 5$/],
  ['a string for podTemplateSpec', original('typed', { command: ['true'] }, { podTemplateSpec: 'pod' }), /^podTemplateSpec must be an object/],
  ['both process and container', { name: 'typed', spec: { process: { command: ['true'] }, container: { image: 'busybox' } } }, /^spec sets both process and container; set exactly one$/],
  ['an array as the body', [original('typed', { command: ['true'] })], /^the request body must be an object; got an array$/],
  ['a string for spec.artifacts', { name: 'typed', spec: { process: { command: ['true'] }, artifacts: 'https://example.com/a.sh' } }, /^spec\.artifacts must be an array of objects; got the string "https:\/\/example\.com\/a\.sh"$/],
  ['a string for artifact headers', { name: 'typed', spec: { process: { command: ['true'] }, artifacts: [{ source: 'https://e.x/a', headers: 'x' }] } }, /^spec\.artifacts\[0\]\.headers must be an object/],
  ['an unknown artifact mode', { name: 'typed', spec: { process: { command: ['true'] }, artifacts: [{ source: 'https://e.x/a', mode: 'ZIP' }] } }, /^spec\.artifacts\[0\]\.mode must be one of "ARTIFACT_MODE_FILE", "ARTIFACT_MODE_ARCHIVE"/],
];

const CASES: Case[] = [
  {
    title: 'create starts the task and returns it running',
    run: (api) => api.create(proc('sleeper', ['sleep', '30'])),
    expect: 'ok',
    check: (body) => {
      assert.equal(body.name, 'sleeper');
      assert.deepEqual(body.spec.process.command, ['sleep', '30']);
      assert.ok(body.status.state.running.startedAt);
    },
  },
  { title: 'create of an existing name', run: (api) => api.create(proc('sleeper', ['sleep', '30'])), expect: 'AlreadyExists', message: /"sleeper" already exists/ },
  { title: 'create with a bad name', run: (api) => api.create(proc('Bad_Name', ['true'])), expect: 'InvalidArgument', message: /DNS-1123/ },
  { title: 'create without a name', run: (api) => api.create(proc('', ['true'])), expect: 'InvalidArgument', message: /name is required/ },
  { title: 'create without a spec', run: (api) => api.create({ name: 'no-spec' }), expect: 'InvalidArgument', message: /exactly one of process or container/ },
  {
    title: 'create with an unknown capability names the field',
    run: (api) => api.create({ name: 'bad-cap', spec: { process: { command: ['true'] }, securityContext: { capabilities: { add: ['NET_ADMINN'] } } } }),
    expect: 'InvalidArgument',
    message: /^task\.spec\.securityContext\.capabilities\.add\[0\] "NET_ADMINN" is not a capability/,
  },
  {
    title: 'create of a container task without container mode',
    run: (api) => api.create({ name: 'ctr', spec: { container: { image: 'busybox' } } }),
    expect: 'FailedPrecondition',
    message: /--enable-container-mode/,
  },
  { title: 'get returns the task', run: (api) => api.get('sleeper'), expect: 'ok', check: (body) => assert.equal(body.name, 'sleeper') },
  { title: 'get of an unknown name', run: (api) => api.get('nope'), expect: 'NotFound', message: /task "nope" not found/ },
  { title: 'delete of an unknown name', run: (api) => api.remove('nope'), expect: 'NotFound', message: /task "nope" not found/ },
  {
    title: 'setTasks with a changed spec for an existing name',
    run: (api) => api.setTasks([proc('sleeper', ['sleep', '31'])]),
    expect: 'FailedPrecondition',
    message: /cannot change/,
  },
  {
    title: 'setTasks naming a task twice',
    run: (api) => api.setTasks([proc('twice', ['true']), proc('twice', ['true'])]),
    expect: 'InvalidArgument',
    message: /appears more than once/,
  },
  {
    title: 'setTasks creates, keeps and deletes, and returns the sorted list',
    run: (api) => api.setTasks([proc('task-beta', ['ls', '-l', '/tmp']), proc('task-alpha', ['sleep', '10'])]),
    expect: 'ok',
    check: (body) => {
      assert.deepEqual(
        body.map((t: Json) => t.name),
        ['sleeper', 'task-alpha', 'task-beta'],
      );
      assert.ok(body[0].deletionTimestamp, 'sleeper was left out and is being deleted');
    },
  },
  {
    title: 'delete marks the task for deletion',
    run: (api) => api.remove('task-alpha'),
    expect: 'ok',
  },
  {
    title: 'null for any field means "not set", as in proto3 JSON and in the original',
    run: (api) =>
      api.create({
        name: 'nulls',
        spec: { process: { command: ['true'], args: null, env: null, workingDir: null, timeoutSeconds: null }, stopSignal: null, resources: null },
        deletionTimestamp: null,
        status: null,
      }),
    expect: 'ok',
    check: (body) => assert.deepEqual(body.spec.process, { command: ['true'] }),
  },
  {
    title: 'a 64-bit integer may be a string, as proto3 JSON writes it',
    run: (api) => api.create({ name: 'int64-string', spec: { process: { command: ['true'], timeoutSeconds: '30' } } }),
    expect: 'ok',
    check: (body) => assert.equal(body.spec.process.timeoutSeconds, 30),
  },
  {
    title: "the original controller's body, with its nulls and ignored fields, is accepted",
    run: (api) =>
      api.create(
        original(
          'from-controller',
          { command: null, args: ['sh', '-c', 'exit 0'], env: [{ name: 'A', value: 'b', valueFrom: null }], timeoutSeconds: 30 },
          { podTemplateSpec: null, processStatus: null, podStatus: null, deletionTimestamp: null },
        ),
      ),
    expect: 'ok',
    check: (body) => {
      assert.deepEqual(body.process.args, ['sh', '-c', 'exit 0']);
      assert.deepEqual(body.process.env, [{ name: 'A', value: 'b' }]);
    },
    restOnly: ORIGINAL_SHAPE,
  },
  ...WRONG_TYPES.map(([title, body, message]): Case => ({
    title: `create with ${title} is refused naming the field`,
    run: (api) => api.create(body),
    expect: 'InvalidArgument',
    message,
    restOnly: WIRE_TYPED,
  })),
  {
    title: 'setTasks with a wrong JSON type names the entry and the field, and changes nothing',
    run: (api) => api.setTasks([proc('fine', ['true']), original('typed', { command: ['echo'], args: 'hello' })]),
    expect: 'InvalidArgument',
    message: /^tasks\[1\]\.process\.args must be an array of strings; got the string "hello"$/,
    restOnly: WIRE_TYPED,
  },
  {
    title: 'nothing refused for its JSON types was created',
    run: (api) => api.list(),
    expect: 'ok',
    check: (body) => assert.deepEqual(body.map((t: Json) => t.name).filter((n: string) => n === 'typed' || n === 'fine'), []),
  },
  {
    title: 'spec.artifacts is carried as sent, and the task waits for them (or fails to fetch them)',
    run: (api) =>
      api.create({
        name: 'with-artifacts',
        spec: {
          process: { command: ['/bin/bash', 'artifacts/missing.sh'] },
          artifacts: [{ source: 'file:///nonexistent/missing.sh', destination: 'artifacts', checksum: `sha256:${'a'.repeat(64)}`, mode: 'ARTIFACT_MODE_FILE' }],
        },
      }),
    expect: 'ok',
    check: (body) => {
      assert.deepEqual(body.spec.artifacts, [
        { source: 'file:///nonexistent/missing.sh', destination: 'artifacts', checksum: `sha256:${'a'.repeat(64)}`, mode: 'ARTIFACT_MODE_FILE' },
      ]);
      const reason = body.status.state.waiting?.reason ?? body.status.state.terminated?.reason;
      assert.ok(reason === 'FetchingArtifacts' || reason === 'ArtifactFetchFailed', JSON.stringify(body.status));
    },
  },
  {
    title: 'a task whose artifact cannot be fetched ends ArtifactFetchFailed with exit code 128',
    run: async (api) => {
      let outcome: Outcome | undefined;
      await waitFor('with-artifacts to end', async () => {
        outcome = await api.get('with-artifacts');
        return outcome.ok && outcome.body.status.state.terminated;
      });
      return outcome!;
    },
    expect: 'ok',
    check: (body) => {
      assert.equal(body.status.state.terminated.reason, 'ArtifactFetchFailed');
      assert.equal(body.status.state.terminated.exitCode, 128);
      assert.match(body.status.state.terminated.message, /artifacts\[0\] \(file:\/\/\/nonexistent\/missing\.sh\): .*no such file/);
    },
  },
  {
    title: 'an unsupported artifact source is refused naming the field',
    run: (api) => api.create({ name: 'bad-artifact', spec: { process: { command: ['true'] }, artifacts: [{ source: 'ftp://example.com/a.sh' }] } }),
    expect: 'InvalidArgument',
    message: /spec\.artifacts\[0\]\.source "ftp:\/\/example\.com\/a\.sh" is not a supported source/,
  },
];

describe('original REST API and gRPC behave the same (shared table)', () => {
  const executors: TestExecutor[] = [];
  after(async () => {
    for (const te of executors) await te.close();
  });

  for (const make of ['grpc', 'rest'] as const) {
    describe(make === 'grpc' ? 'through gRPC' : 'through REST', () => {
      let api: FrontEnd;
      before(async () => {
        const te = await startTestExecutor({ httpListenAddr: '127.0.0.1:0', stopGraceMs: 500 });
        executors.push(te);
        api = make === 'grpc' ? grpcFrontEnd(te) : restFrontEnd(`http://${te.executor.restAddress}`);
      });
      // Cases that exist only on REST (restOnly says why) are not cases of the gRPC API at all.
      for (const c of CASES.filter((c) => make === 'rest' || !c.restOnly)) {
        test(c.title, async () => {
          const outcome = await c.run(api);
          if (c.expect === 'ok') {
            assert.ok(outcome.ok, `expected success, got ${JSON.stringify(outcome)}`);
            c.check?.(outcome.body);
          } else {
            assert.ok(!outcome.ok, `expected ${c.expect}, got success`);
            assert.equal(outcome.status, api.statusOf(c.expect), `${api.label} status for ${c.expect}: ${outcome.message}`);
            if (c.message) assert.match(outcome.message, c.message);
          }
        });
      }
    });
  }
});

describe('original REST API specifics', () => {
  let te: TestExecutor;
  let base: string;
  before(async () => {
    te = await startTestExecutor({ httpListenAddr: '127.0.0.1:0', stopGraceMs: 500 });
    base = `http://${te.executor.restAddress}`;
  });
  after(async () => te.close());

  const sh = promisify(execFile);
  const curl = async (script: string) => (await sh('bash', ['-c', script.replaceAll('http://localhost:5758', base)])).stdout;

  test("the original README's curl examples run unchanged", async () => {
    const created = JSON.parse(
      await curl(`curl -s -X POST -H "Content-Type: application/json" -d \\
'{
  "name": "my-first-task",
  "spec": {
    "process": {
      "command": ["sh", "-c"],
      "args": ["echo \\"Hello from my task!\\" && sleep 5 && echo \\"Task finished.\\""]
    }
  }
}' http://localhost:5758/tasks`),
    );
    assert.equal(created.name, 'my-first-task');
    assert.ok(created.status.state.running.startedAt);
    assert.ok(created.processStatus.running.startedAt, 'the original controller reads processStatus');

    assert.equal(JSON.parse(await curl('curl -s http://localhost:5758/tasks/my-first-task')).name, 'my-first-task');

    const synced = JSON.parse(
      await curl(`curl -s -X POST -H "Content-Type: application/json" -d \\
'[
  {
    "name": "task-alpha",
    "spec": { "process": { "command": ["sleep", "10"] } }
  },
  {
    "name": "task-beta",
    "spec": { "process": { "command": ["ls", "-l", "/tmp"] } }
  }
]' http://localhost:5758/setTasks`),
    );
    assert.deepEqual(
      synced.map((t: Json) => t.name),
      ['my-first-task', 'task-alpha', 'task-beta'],
    );

    const beta = await waitFor('task-beta to finish', async () => {
      const all = JSON.parse(await curl('curl -s http://localhost:5758/getTasks'));
      return all.find((t: Json) => t.name === 'task-beta' && t.status.state.terminated);
    });
    assert.equal(beta.status.state.terminated.exitCode, 0);
    assert.equal(beta.status.state.terminated.reason, 'Succeeded');
    assert.equal(beta.processStatus.terminated.exitCode, 0);
    assert.match(beta.processStatus.terminated.finishedAt, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/, 'second precision, as metav1.Time');

    const status = await curl('curl -s -o /dev/null -w "%{http_code}" -X DELETE http://localhost:5758/tasks/task-alpha');
    assert.equal(status, '204');
    assert.deepEqual(JSON.parse(await curl('curl -s http://localhost:5758/health')), { status: 'healthy' });
  });

  test("the original's Go-typed body (process at the top level) is accepted, as its controller sends it", async () => {
    const response = await fetch(`${base}/setTasks`, {
      method: 'POST',
      body: JSON.stringify([{ name: 'bs-0', process: { command: ['sh', '-c', 'exit 0'], env: [{ name: 'A', value: 'b' }] } }]),
    });
    assert.equal(response.status, 200);
    const [task] = (await response.json()) as Json[];
    assert.equal(task.name, 'bs-0');
    assert.deepEqual(task.process.command, ['sh', '-c', 'exit 0']);
    assert.deepEqual(task.spec.process.env, [{ name: 'A', value: 'b' }]);
  });

  test('a securityContext under spec is applied to the task, as on gRPC', async () => {
    const response = await fetch(`${base}/tasks`, {
      method: 'POST',
      body: JSON.stringify({
        name: 'rest-privs',
        spec: {
          process: { command: ['sh', '-c', 'grep -E "^(NoNewPrivs|CapEff)" /proc/self/status; ulimit -n'] },
          securityContext: { noNewPrivileges: true, capabilities: { drop: ['ALL'] }, rlimits: [{ name: 'nofile', soft: 77, hard: 99 }] },
        },
      }),
    });
    assert.equal(response.status, 201);
    await waitFor('rest-privs to finish', async () => {
      const task = (await (await fetch(`${base}/tasks/rest-privs`)).json()) as Json;
      return task.status.state.terminated;
    });
    const out = readFileSync(join(te.dataDir, 'rest-privs', 'logs', 'output.0.log'), 'utf8')
      .split('\n')
      .map((line) => line.split(' ').slice(3).join(' '))
      .join('\n');
    assert.match(out, /^NoNewPrivs:\s+1$/m);
    assert.match(out, /^CapEff:\s+0+$/m);
    assert.match(out, /^77$/m);
  });

  test('bad JSON, empty bodies and non-array setTasks bodies are 400 with the original error shape', async () => {
    for (const [path, body, pattern] of [
      ['/tasks', '{"name": ', /invalid request body/],
      ['/tasks', '', /invalid request body: empty body/],
      ['/setTasks', '{"name":"x"}', /must be a JSON array/],
    ] as const) {
      const response = await fetch(`${base}${path}`, { method: 'POST', body });
      assert.equal(response.status, 400);
      assert.equal(response.headers.get('content-type'), 'application/json');
      const json = (await response.json()) as Json;
      assert.equal(json.code, 'Bad Request');
      assert.match(json.message, pattern);
    }
  });

  test('unknown routes are 404 and wrong methods 405 with Allow', async () => {
    const unknown = await fetch(`${base}/nope`);
    assert.equal(unknown.status, 404);
    const wrong = await fetch(`${base}/tasks`, { method: 'GET' });
    assert.equal(wrong.status, 405);
    assert.equal(wrong.headers.get('allow'), 'POST');
  });

  test('an oversized body is refused with 413 and the service stays up', async () => {
    const response = await fetch(`${base}/setTasks`, { method: 'POST', body: 'x'.repeat(MAX_BODY_BYTES + 1) });
    assert.equal(response.status, 413);
    assert.equal((await fetch(`${base}/health`)).status, 200);
  });

  test('a literal null for setTasks deletes every task, as in the original', async () => {
    const response = await fetch(`${base}/setTasks`, { method: 'POST', body: 'null' });
    assert.equal(response.status, 200);
    await waitFor('every task to be gone', async () => ((await (await fetch(`${base}/getTasks`)).json()) as Json[]).length === 0);
  });
});
