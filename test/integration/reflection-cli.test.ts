// Drives the original README's flows the way a person does with grpcurl:
// JSON in, JSON out, the schema learnt from server reflection alone. `buf curl`
// (installed with the project) is the grpcurl-equivalent client used here.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { startTestExecutor, type TestExecutor } from '../support/executor.js';
import { ROOT } from '../support/subprocess.js';
import { waitFor } from '../support/wait.js';

const run = promisify(execFile);
const BUF = `${ROOT}node_modules/.bin/buf`;

// biome-ignore lint/suspicious/noExplicitAny: the JSON buf curl prints, read by path as a person reads it; a missing path fails the assertion reading it
type Json = any;

describe('grpcurl-style use through server reflection (no proto files)', () => {
  let te: TestExecutor;
  let base: string;
  before(async () => {
    te = await startTestExecutor();
    base = `http://${te.executor.address}`;
  });
  after(async () => te.close());

  async function curl(method: string, body: unknown): Promise<{ ok: boolean; json: Json }> {
    const args = ['curl', '--protocol', 'grpc', '--http2-prior-knowledge', '-d', JSON.stringify(body), `${base}/${method}`];
    try {
      const { stdout } = await run(BUF, args, { cwd: '/' }); // cwd '/': no buf.yaml or protos to fall back on
      return { ok: true, json: JSON.parse(stdout) };
    } catch (error) {
      const { stderr } = error as { stderr: string };
      return { ok: false, json: JSON.parse(stderr) };
    }
  }

  const svc = 'taskexecutor.v1.TaskExecutorService';

  test('lists the task service and grpc.health.v1 through reflection', async () => {
    const { stdout } = await run(BUF, ['curl', '--protocol', 'grpc', '--http2-prior-knowledge', '--list-services', base], { cwd: '/' });
    assert.match(stdout, /^taskexecutor\.v1\.TaskExecutorService$/m);
    assert.match(stdout, /^grpc\.health\.v1\.Health$/m);
  });

  test('health check answers SERVING', async () => {
    const { json } = await curl('grpc.health.v1.Health/Check', { service: '' });
    assert.deepEqual(json, { status: 'SERVING' });
  });

  test("the original README's create, get, setTasks, getTasks and delete flows work with its JSON", async () => {
    // POST /tasks body, wrapped in {"task": ...}
    const created = await curl(`${svc}/Create`, {
      task: {
        name: 'my-first-task',
        spec: { process: { command: ['sh', '-c'], args: ['echo "Hello from my task!" && sleep 1 && echo "Task finished."'] } },
      },
    });
    assert.ok(created.ok);
    assert.equal(created.json.task.name, 'my-first-task');
    assert.deepEqual(created.json.task.spec.process.command, ['sh', '-c']);
    assert.match(created.json.task.status.state.running.startedAt, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/);

    // GET /tasks/{id}
    const got = await curl(`${svc}/Get`, { name: 'my-first-task' });
    assert.equal(got.json.task.name, 'my-first-task');

    // POST /setTasks body, wrapped in {"tasks": ...}
    const synced = await curl(`${svc}/SetTasks`, {
      tasks: [
        { name: 'task-alpha', spec: { process: { command: ['sleep', '10'] } } },
        { name: 'task-beta', spec: { process: { command: ['ls', '-l', '/tmp'] } } },
      ],
    });
    assert.deepEqual(
      synced.json.tasks.map((t: { name: string }) => t.name),
      ['my-first-task', 'task-alpha', 'task-beta'],
    );
    assert.ok(synced.json.tasks[0].deletionTimestamp, 'my-first-task was left out, so it is being deleted');

    // GET /getTasks: task-beta ends with the original's terminated shape, exitCode present even when 0.
    const beta = await waitFor('task-beta to terminate', async () => {
      const list = await curl(`${svc}/List`, {});
      return list.json.tasks.find((t: Json) => t.name === 'task-beta' && t.status.state.terminated);
    });
    assert.deepEqual(Object.keys(beta.status.state.terminated).sort(), ['exitCode', 'finishedAt', 'reason', 'startedAt']);
    assert.equal(beta.status.state.terminated.exitCode, 0);
    assert.equal(beta.status.state.terminated.reason, 'Succeeded');

    // DELETE /tasks/{id}
    const deleted = await curl(`${svc}/Delete`, { name: 'task-alpha' });
    assert.ok(deleted.json.task.deletionTimestamp);
  });

  test('errors come back with a gRPC code and a message a person can act on', async () => {
    const missing = await curl(`${svc}/Get`, { name: 'nope' });
    assert.deepEqual(missing, { ok: false, json: { code: 'not_found', message: 'task "nope" not found' } });
    const bad = await curl(`${svc}/Create`, { task: { name: 'Bad_Name', spec: { process: { command: ['true'] } } } });
    assert.equal(bad.json.code, 'invalid_argument');
    assert.match(bad.json.message, /DNS-1123/);
  });
});
