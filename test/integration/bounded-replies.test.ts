// Replies a default gRPC client can read: List pages, SetTasks answers
// compact tasks. Regression for a 36 MB reply (40 tasks with ~1 MiB specs)
// that a client with the default 4 MiB receive limit rejected, after the
// SetTasks behind it had already deleted tasks.
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { status, type ServiceError } from '@grpc/grpc-js';
import {
  type ListRequest,
  ListResponse,
  type SetTasksRequest,
  type SetTasksResponse,
  TaskView,
} from '../../gen/taskexecutor/v1/task_executor_service.js';
import { Task } from '../../gen/taskexecutor/v1/task.js';
import { taskToWire } from '../../src/api/convert.js';
import { MAX_REPLY_BYTES } from '../../src/api/paging.js';
import { LIMITS, MAX_NAME_LENGTH, validateName, validateSpec } from '../../src/model/validation.js';
import type { TaskRecord, TaskSpec } from '../../src/model/task.js';
import { processTask, startTestExecutor, stateOf, tempDir, type TestExecutor } from '../support/executor.js';
import { waitFor } from '../support/wait.js';

/** gRPC's default receive limit, which the test clients keep. */
const DEFAULT_CLIENT_LIMIT = 4 * 1024 * 1024;

const list = (te: TestExecutor, request: ListRequest) =>
  new Promise<ListResponse>((resolve, reject) => te.client.list(request, (e, r) => (e ? reject(e) : resolve(r))));

const setTasks = (te: TestExecutor, request: SetTasksRequest) =>
  new Promise<SetTasksResponse>((resolve, reject) => te.client.setTasks(request, (e, r) => (e ? reject(e) : resolve(r))));

/** Every page from the start, checking that each one is readable and bounded. */
async function listAllPages(te: TestExecutor, pageSize?: number): Promise<{ names: string[]; tasks: Task[]; pages: number }> {
  const tasks: Task[] = [];
  let pageToken = '';
  let pages = 0;
  do {
    const page = await list(te, { pageSize, pageToken });
    pages++;
    assert.ok(pages <= 1000, 'the pages never end');
    const bytes = ListResponse.encode(page).finish().length;
    assert.ok(bytes < DEFAULT_CLIENT_LIMIT / 2 + 64 * 1024, `page ${pages} is ${bytes} bytes, over the ~2 MiB reply bound`);
    assert.ok(page.tasks.length > 0 || page.nextPageToken === '', 'a page that leads on holds at least one task');
    tasks.push(...page.tasks);
    pageToken = page.nextPageToken;
  } while (pageToken);
  return { names: tasks.map((t) => t.name), tasks, pages };
}

function grpcError(code: status, pattern: RegExp) {
  return (error: ServiceError) => {
    assert.equal(error.code, code, `expected ${status[code]}, got ${status[error.code]}: ${error.details}`);
    assert.match(error.details, pattern);
    return true;
  };
}

describe('replies larger than a default client accepts', () => {
  // 8 tasks of ~900 KiB each (nine 100 KiB env values, within the spec
  // limits): ~7 MiB for all of them, which one reply used to carry.
  const BIG = Array.from({ length: 8 }, (_, i) => `big-${i}`);
  const bigTask = (name: string) =>
    processTask(name, ['sleep', '300'], {
      env: Array.from({ length: 9 }, (_, j) => ({ name: `PAD_${j}`, value: String(j).repeat(100 * 1024) })),
    });
  let te: TestExecutor;
  before(async () => {
    te = await startTestExecutor({ httpListenAddr: '127.0.0.1:0', stopGraceMs: 500 });
    for (const name of BIG) await te.api.createTask({ task: bigTask(name) });
  });
  after(async () => te.close());

  test('List pages over 4 MiB of tasks so a default client gets every task exactly once, in full', async () => {
    const { names, tasks, pages } = await listAllPages(te);
    assert.deepEqual(names, BIG, 'every task once, in name order');
    assert.ok(pages >= 4, `${pages} pages for ~7 MiB at ~2 MiB a page`);
    for (const task of tasks) {
      const spec = task.spec?.runtime?.$case === 'process' ? task.spec.runtime.value : undefined;
      assert.equal(spec?.env.length, 9, `${task.name} is listed with its whole spec`);
      assert.equal(spec?.env[8]?.value.length, 100 * 1024);
    }
    const total = tasks.reduce((sum, t) => sum + ListResponse.encode({ tasks: [t], nextPageToken: '' }).finish().length, 0);
    assert.ok(total > DEFAULT_CLIENT_LIMIT, `the tasks add up to ${total} bytes, more than one default reply may hold`);
  });

  test('the REST drop-in still answers GET /getTasks with the full array in one body', async () => {
    const response = await fetch(`http://${te.executor.restAddress}/getTasks`);
    assert.equal(response.status, 200);
    const body = (await response.json()) as { name: string; spec: { process: { env: unknown[] } } }[];
    assert.deepEqual(
      body.map((t) => t.name),
      BIG,
    );
    assert.ok(body.every((t) => t.spec.process.env.length === 9));
  });

  test('SetTasks asking for full tasks over the bound succeeds with a compact reply that shows every change', async () => {
    const keep = BIG.slice(0, 3);
    const reply = await setTasks(te, { tasks: keep.map(bigTask), view: TaskView.TASK_VIEW_FULL });
    assert.equal(reply.view, TaskView.TASK_VIEW_COMPACT, 'the reply says it is compact');
    assert.equal(reply.nextPageToken, '');
    assert.deepEqual(
      reply.tasks.map((t) => t.name),
      BIG,
      'kept and deleted tasks are all in the reply',
    );
    for (const task of reply.tasks) {
      assert.equal(task.spec, undefined, `${task.name} comes without its spec`);
      assert.ok(stateOf(task), `${task.name} comes with its state`);
      assert.equal(task.deletionTimestamp instanceof Date, !keep.includes(task.name), `${task.name}'s deletion mark`);
    }
    const again = await setTasks(te, { tasks: keep.map(bigTask) });
    assert.equal(again.view, TaskView.TASK_VIEW_COMPACT, 'compact is the default');
    assert.ok(again.tasks.every((t) => t.spec === undefined));
  });
});

describe('List paging and SetTasks views', () => {
  let te: TestExecutor;
  before(async () => {
    te = await startTestExecutor({ stopGraceMs: 500 });
  });
  after(async () => te.close());

  const names = (tasks: Task[]) => tasks.map((t) => t.name);
  const create = (name: string) => te.api.createTask({ task: processTask(name, ['true']) });

  test('page_size and page_token walk the list in name order; the last page has no next_page_token', async () => {
    for (const name of ['p-1', 'p-2', 'p-3', 'p-4', 'p-5']) await create(name);
    const first = await list(te, { pageSize: 2 });
    assert.deepEqual(names(first.tasks), ['p-1', 'p-2']);
    assert.notEqual(first.nextPageToken, '');
    const second = await list(te, { pageSize: 2, pageToken: first.nextPageToken });
    assert.deepEqual(names(second.tasks), ['p-3', 'p-4']);
    const last = await list(te, { pageSize: 2, pageToken: second.nextPageToken });
    assert.deepEqual(names(last.tasks), ['p-5']);
    assert.equal(last.nextPageToken, '');
    const all = await list(te, {});
    assert.deepEqual(names(all.tasks), ['p-1', 'p-2', 'p-3', 'p-4', 'p-5'], 'page_size 0 is the default, more than 5');
    assert.equal(all.nextPageToken, '');
  });

  test('a page_token stays valid while tasks are created and deleted between pages', async () => {
    const first = await list(te, { pageSize: 2 });
    assert.deepEqual(names(first.tasks), ['p-1', 'p-2']);
    // The token's own task and one before it go away; one task appears
    // before the token and one after it.
    await te.api.deleteTask({ name: 'p-2' });
    await te.api.deleteTask({ name: 'p-1' });
    await waitFor('p-1 and p-2 to be removed', async () => !names((await list(te, {})).tasks).some((n) => n === 'p-1' || n === 'p-2'));
    await create('p-0');
    await create('p-25');
    const rest = await list(te, { pageSize: 10, pageToken: first.nextPageToken });
    assert.deepEqual(names(rest.tasks), ['p-25', 'p-3', 'p-4', 'p-5'], 'resumes after p-2: nothing twice, nothing skipped');
    assert.equal(rest.nextPageToken, '');
  });

  test('a page_token this service did not issue is INVALID_ARGUMENT saying so', async () => {
    const forged = Buffer.from('after:Not_A_Name').toString('base64url');
    for (const pageToken of ['not a token!', 'aGVsbG8', forged, 'x'.repeat(5000)]) {
      await assert.rejects(list(te, { pageToken }), grpcError(status.INVALID_ARGUMENT, /page_token .* is not a page token/), pageToken.slice(0, 40));
    }
  });

  test('a negative page_size is INVALID_ARGUMENT; one above the maximum is capped', async () => {
    await assert.rejects(list(te, { pageSize: -1 }), grpcError(status.INVALID_ARGUMENT, /page_size must not be negative; got -1/));
    const capped = await list(te, { pageSize: 1_000_000 });
    assert.ok(capped.tasks.length > 0 && capped.nextPageToken === '');
  });

  test('List answers full tasks by default and leaves out the specs with TASK_VIEW_COMPACT; tokens work across views', async () => {
    // The tasks so far run `true`: once they ended, their statuses stay put between the calls compared.
    await waitFor('every task to end', async () => (await list(te, {})).tasks.every((t) => stateOf(t)?.$case === 'terminated'));
    const full = await list(te, { pageSize: 2 });
    assert.ok(full.tasks.length === 2 && full.tasks.every((t) => t.spec?.runtime?.$case === 'process'), 'full by default');
    const compact = await list(te, { pageSize: 2, view: TaskView.TASK_VIEW_COMPACT });
    assert.deepEqual(names(compact.tasks), names(full.tasks));
    assert.ok(compact.tasks.every((t) => t.spec === undefined && t.status?.state && t.creationTimestamp instanceof Date), 'no spec, the rest is there');
    assert.deepEqual(
      compact.tasks.map((t) => t.status),
      full.tasks.map((t) => t.status),
    );
    const next = await list(te, { pageSize: 2, pageToken: compact.nextPageToken, view: TaskView.TASK_VIEW_FULL });
    assert.ok(next.tasks.length > 0 && next.tasks.every((t) => t.name > names(compact.tasks).at(-1)! && t.spec !== undefined));
    const explicit = await list(te, { pageSize: 2, view: TaskView.TASK_VIEW_FULL });
    assert.deepEqual(explicit, full);
  });

  test('List with an unknown view is INVALID_ARGUMENT naming the views', async () => {
    await assert.rejects(list(te, { view: 7 as TaskView }), grpcError(status.INVALID_ARGUMENT, /view 7 is not a TaskView: use TASK_VIEW_FULL \(the default\) or TASK_VIEW_COMPACT/));
  });

  test('SetTasks answers compact tasks by default and full ones with TASK_VIEW_FULL when they fit', async () => {
    const desired = [processTask('v-1', ['true']), processTask('v-2', ['echo', 'hi'])];
    const compact = await setTasks(te, { tasks: desired });
    assert.equal(compact.view, TaskView.TASK_VIEW_COMPACT);
    assert.ok(compact.tasks.every((t) => t.spec === undefined && t.status && t.creationTimestamp instanceof Date));
    const full = await setTasks(te, { tasks: desired, view: TaskView.TASK_VIEW_FULL });
    assert.equal(full.view, TaskView.TASK_VIEW_FULL);
    const v2 = full.tasks.find((t) => t.name === 'v-2');
    assert.deepEqual(v2?.spec?.runtime?.$case === 'process' && v2.spec.runtime.value.command, ['echo', 'hi']);
    assert.equal(full.nextPageToken, '');
  });

  test('SetTasks with an unknown view is INVALID_ARGUMENT and changes nothing', async () => {
    await assert.rejects(
      setTasks(te, { tasks: [processTask('unknown-view', ['true'])], view: 7 as TaskView }),
      grpcError(status.INVALID_ARGUMENT, /view 7 is not a TaskView/),
    );
    const afterwards = (await list(te, {})).tasks;
    assert.ok(!names(afterwards).includes('unknown-view'), 'nothing was created');
    for (const name of ['v-1', 'v-2']) {
      assert.equal(afterwards.find((t) => t.name === name)?.deletionTimestamp, undefined, `${name} was not marked for deletion`);
    }
  });
});

describe('SetTasks when not even compact tasks fit', () => {
  // 30 ended tasks whose status message is 100 KiB, as a sidecar start
  // failure naming a long program and PATH can be: ~3 MiB of compact tasks.
  // They are written to a data dir the executor then recovers, as
  // test/load.test.ts does, so that no process has to run.
  const NAMES = Array.from({ length: 30 }, (_, i) => `ended-${String(i).padStart(2, '0')}`);
  let te: TestExecutor;
  before(async () => {
    const dataDir = tempDir();
    const now = new Date().toISOString();
    for (const name of NAMES) {
      mkdirSync(join(dataDir, name));
      const record = {
        name,
        spec: { process: { command: ['true'], args: [], env: [] } },
        state: { phase: 'terminated', exitCode: 127, signal: 0, reason: 'ProcessStartFailed', message: 'x'.repeat(100 * 1024), finishedAt: now },
        createdAt: now,
      };
      writeFileSync(join(dataDir, name, 'task.json'), JSON.stringify({ version: 1, task: record }));
    }
    te = await startTestExecutor({}, dataDir);
  });
  after(async () => te.close());

  test('the reply holds the first tasks and a next_page_token that List continues from', async () => {
    const reply = await setTasks(te, { tasks: NAMES.map((name) => processTask(name, ['true'])) });
    assert.equal(reply.view, TaskView.TASK_VIEW_COMPACT);
    assert.ok(reply.tasks.length > 0 && reply.tasks.length < NAMES.length, `${reply.tasks.length} of ${NAMES.length} tasks in the reply`);
    assert.notEqual(reply.nextPageToken, '');
    const rest: Task[] = [];
    let pageToken = reply.nextPageToken;
    while (pageToken) {
      const page = await list(te, { pageToken });
      rest.push(...page.tasks);
      pageToken = page.nextPageToken;
    }
    assert.deepEqual([...reply.tasks, ...rest].map((t) => t.name), NAMES, 'every task once');
  });
});

describe('the largest valid task', () => {
  // Each spec limit taken to the end at once: as many argv and env entries
  // as allowed (their framing is not counted in the 1 MiB string budget),
  // the whole string budget, and for containers the most volume mounts with
  // the longest names (not counted either).
  const budget = LIMITS.totalBytes;
  const argv = (programBytes: number) => {
    const count = LIMITS.argvEntries - 1;
    const each = Math.floor((budget / 2 - programBytes) / count);
    return Array.from({ length: count }, () => 'a'.repeat(each));
  };
  const env = () => {
    const each = Math.floor(budget / 2 / LIMITS.envEntries) - 1;
    return Array.from({ length: LIMITS.envEntries }, (_, i) => ({ name: 'E', value: String(i % 10).repeat(each) }));
  };
  const path = '/' + 'p'.repeat(4095);
  const specs: Record<string, TaskSpec> = {
    process: {
      process: { command: ['prog'], args: argv(4), env: env(), workingDir: path, chroot: path, user: 'u'.repeat(32), group: 'g'.repeat(32), timeoutSeconds: LIMITS.timeoutSeconds },
      stopSignal: 'SIGTERM',
      terminationGracePeriodSeconds: 86_400,
      restartPolicy: 'OnFailure',
      maxRestarts: 1000,
      resources: { cpuMillicores: 1_000_000, memoryBytes: 2 ** 50, pids: 4_194_304 },
      logs: { maxFileSizeBytes: 2 ** 30, maxFiles: 1000 },
    },
    container: {
      container: {
        image: 'i',
        command: [],
        args: argv(1 + LIMITS.volumeMounts * 2),
        env: env(),
        volumeMounts: Array.from({ length: LIMITS.volumeMounts }, (_, i) => ({ name: `v${i}-`.padEnd(MAX_NAME_LENGTH - 1, 'v') + 'v', mountPath: '/m', readOnly: true })),
        workingDir: path,
        timeoutSeconds: LIMITS.timeoutSeconds,
      },
    },
  };

  for (const [kind, spec] of Object.entries(specs)) {
    test(`a ${kind} task at every spec limit fits in one reply, so every page holds at least one task`, (t) => {
      const name = 'n'.repeat(MAX_NAME_LENGTH);
      validateName(name);
      validateSpec(spec);
      const now = new Date().toISOString();
      const record: TaskRecord = {
        name,
        spec,
        state: { phase: 'terminated', exitCode: 1, signal: 0, reason: 'Failed', message: 'm'.repeat(256 * 1024), startedAt: now, finishedAt: now },
        createdAt: now,
        deletionRequestedAt: now,
        warnings: ['w'.repeat(1024)],
      };
      const bytes = Task.encode(taskToWire(record)).finish().length;
      t.diagnostic(`largest ${kind} task, with a 256 KiB status message: ${bytes} bytes`);
      assert.ok(bytes < MAX_REPLY_BYTES, `${bytes} bytes`);
    });
  }
});
