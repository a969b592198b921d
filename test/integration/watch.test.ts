// The Watch RPC against a real executor: ordering, the initial listing, and a
// client that stops reading.
import assert from 'node:assert/strict';
import type { EventEmitter } from 'node:events';
import { after, before, describe, test } from 'node:test';
import { Client, type ClientReadableStream, credentials, type MethodDefinition, status, type ServiceError } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { protoPath as healthProtoPath } from 'grpc-health-check';
import { WatchEventType, type WatchResponse } from '../../gen/taskexecutor/v1/task_executor_service.js';
import type { Task } from '../../gen/taskexecutor/v1/task.js';
import { WATCH_BACKLOG } from '../../src/api/watch-handler.js';
import type { TaskEvent } from '../../src/manager/task-manager.js';
import { eventSubscribers, processTask, shell, startTestExecutor, stateOf, type TestExecutor } from '../support/executor.js';
import { waitFor } from '../support/wait.js';

const TYPES: Record<TaskEvent['type'], WatchEventType> = {
  added: WatchEventType.WATCH_EVENT_TYPE_ADDED,
  modified: WatchEventType.WATCH_EVENT_TYPE_MODIFIED,
  deleted: WatchEventType.WATCH_EVENT_TYPE_DELETED,
};

/** What identifies an event in a sequence: type, task, its state and whether it is being deleted. */
const keyOfWire = (e: WatchResponse) => `${e.type}:${e.task?.name}:${stateOf(e.task)?.$case}:${e.task?.deletionTimestamp ? 'deleting' : ''}`;
const keyOfEvent = (e: TaskEvent) => `${TYPES[e.type]}:${e.task.name}:${e.task.state.phase}:${e.task.deletionRequestedAt ? 'deleting' : ''}`;

interface Watcher {
  call: ClientReadableStream<WatchResponse>;
  events: WatchResponse[];
  /** The stream's end: undefined for OK. */
  ended: Promise<ServiceError | undefined>;
}

function openWatch(te: TestExecutor, sendInitial: boolean): Watcher {
  const call = te.client.watch({ sendInitial });
  const events: WatchResponse[] = [];
  call.on('data', (e: WatchResponse) => events.push(e));
  const ended = new Promise<ServiceError | undefined>((resolve) => {
    call.on('error', resolve);
    call.on('end', () => resolve(undefined));
  });
  return { call, events, ended };
}

describe('Watch', () => {
  let te: TestExecutor;
  before(async () => {
    te = await startTestExecutor();
  });
  after(async () => te.close());

  /** The executor's listeners of task events: one per open watcher (and per other stream). */
  const subscribers = () => (te.executor.manager as unknown as { events: EventEmitter }).events.listenerCount('event');

  /** A task whose events are large: 7 arguments of 128 KiB, about 0.9 MiB per event. */
  const bigTask = (name: string) => processTask(name, ['true'], { args: Array.from({ length: 7 }, () => 'x'.repeat(128 * 1024 - 1)) });

  test('a watcher that stops reading is dropped with RESOURCE_EXHAUSTED at its backlog bound, while a reading watcher gets every event in order', async () => {
    await te.api.createTask({ task: shell('marker', 'sleep 60') });
    const reader = openWatch(te, true);
    const stuck = openWatch(te, true);
    // The initial listing arrives after the subscription: both watchers are subscribed now.
    await waitFor('both initial listings', () => reader.events.length === 1 && stuck.events.length === 1);
    stuck.call.pause(); // reads nothing more: HTTP/2 flow control stops the server's writes to it
    const produced: string[] = [];
    const unsubscribe = te.executor.manager.subscribe((e) => void produced.push(keyOfEvent(e)));
    const withStuck = subscribers();
    // Produce events until the server gives up on the stuck watcher, which it
    // must do while that client still reads nothing: its backlog is freed, not kept.
    for (let i = 0; subscribers() === withStuck; i++) {
      assert.ok(i < 40, `the stuck watcher was still subscribed after ${produced.length} events`);
      await te.api.createTask({ task: bigTask(`big-${i}`) });
    }
    const bigEvents = produced.length;
    assert.ok(bigEvents * (896 * 1024) > WATCH_BACKLOG.maxBytes, `dropped after ${bigEvents} events, fewer than the bound allows`);

    stuck.call.resume();
    const error = await stuck.ended;
    assert.equal(error?.code, status.RESOURCE_EXHAUSTED, `expected RESOURCE_EXHAUSTED, got ${error ? status[error.code] : 'OK'}`);
    assert.match(error.details, /fell behind/);
    assert.match(error.details, /Watch again with sendInitial/);
    // It got an unbroken prefix of the events (what was in flight before the
    // server stopped), never the later ones it fell behind on.
    const got = stuck.events.slice(1).map(keyOfWire);
    assert.ok(got.length < produced.length, `got ${got.length} of ${produced.length}`);
    assert.deepEqual(got, produced.slice(0, got.length));

    await waitFor('every big task to end', () => te.executor.manager.list().every((t) => t.name === 'marker' || t.state.phase === 'terminated'));
    unsubscribe();
    await waitFor('the reading watcher to catch up', () => reader.events.length - 1 >= produced.length);
    assert.deepEqual(reader.events.slice(1).map(keyOfWire), produced, 'every event, in order');
    reader.call.cancel();
    await reader.ended;
    await waitFor('both subscriptions to be released', () => subscribers() === withStuck - 3);
    // SetTasks and List would answer with more than a client takes (4 MiB) here: one delete at a time.
    for (const { name } of te.executor.manager.list()) await te.api.deleteTask({ name });
    await waitFor('every task to be gone', () => te.executor.manager.list().length === 0, { timeoutMs: 30_000 });
  });

  test('a watcher opened while tasks change sees each task as it finally is: the listing and the events leave no gap', async () => {
    const tasks = Array.from({ length: 40 }, (_, i) => shell(`gap-${i}`, 'sleep 60'));
    const creating = Promise.all(tasks.map((task) => te.api.createTask({ task })));
    let watcher: Watcher | undefined;
    const opened = new Promise<void>((resolve) => {
      // Open the watcher in the middle of the creations.
      let seen = 0;
      const unsubscribe = te.executor.manager.subscribe((e) => {
        if (e.type === 'added' && ++seen === 20) {
          unsubscribe();
          watcher = openWatch(te, true);
          resolve();
        }
      });
    });
    await opened;
    await creating;
    const view = new Map<string, Task>();
    const expected = async () => (await te.api.listTasks()).tasks;
    await waitFor('the watcher to see every task', async () => {
      view.clear();
      for (const e of watcher!.events) {
        if (e.type === WatchEventType.WATCH_EVENT_TYPE_DELETED) view.delete(e.task!.name);
        else view.set(e.task!.name, e.task!);
      }
      const now = await expected();
      return now.length === view.size && now.every((t) => stateOf(view.get(t.name))?.$case === stateOf(t)?.$case);
    });
    watcher!.call.cancel();
    await watcher!.ended;
    await te.api.setTasks({ tasks: [] });
    await waitFor('every task to be gone', async () => (await expected()).length === 0, { timeoutMs: 30_000 });
  });
});

describe('Watch across a shutdown', () => {
  test("an executor's shutdown ends an open Watch with UNAVAILABLE (call again) instead of holding the shutdown until its grace forces the stream closed", async () => {
    const te = await startTestExecutor();
    try {
      const before = eventSubscribers(te);
      const watcher = openWatch(te, false);
      await waitFor('the Watch to be subscribed', () => eventSubscribers(te) > before);
      await te.stop();
      const end = await watcher.ended;
      assert.equal(end?.code, status.UNAVAILABLE, `the Watch ends UNAVAILABLE, not ${end?.code} (${end?.details})`);
      assert.match(end.details, /shutting down; call again/);
    } finally {
      await te.close();
    }
  });
});

describe('A health Watch across a shutdown', () => {
  test("an open grpc.health.v1 Health/Watch is told NOT_SERVING, then ends UNAVAILABLE (call again) instead of holding the executor's shutdown until its grace forces it closed", async () => {
    const te = await startTestExecutor();
    const method = healthWatch();
    const client = new Client(te.executor.address, credentials.createInsecure());
    try {
      const statuses: unknown[] = [];
      const call = client.makeServerStreamRequest(method.path, method.requestSerialize, method.responseDeserialize, { service: '' });
      call.on('data', (response: { status?: unknown }) => statuses.push(response.status));
      const ended = new Promise<ServiceError | undefined>((resolve) => {
        call.on('error', resolve);
        call.on('end', () => resolve(undefined));
      });
      await waitFor('the health Watch to report SERVING', () => statuses.length > 0);
      await te.stop();
      const end = await ended;
      assert.deepEqual(statuses, ['SERVING', 'NOT_SERVING']);
      assert.equal(end?.code, status.UNAVAILABLE, `the health Watch ends UNAVAILABLE, not ${end?.code} (${end?.details})`);
      assert.match(end.details, /shutting down; call again/);
    } finally {
      client.close();
      await te.close();
    }
  });
});

/** grpc.health.v1.Health/Watch from the proto grpc-health-check serves (statuses as their names). */
function healthWatch(): MethodDefinition<object, { status?: unknown }> {
  const service = loadSync(healthProtoPath, { enums: String })['grpc.health.v1.Health'];
  const method = service && !('format' in service) ? service.Watch : undefined;
  if (!method) throw new Error(`${healthProtoPath} defines no grpc.health.v1.Health/Watch`);
  return method as MethodDefinition<object, { status?: unknown }>;
}

describe('Many open streams', () => {
  test('more than ten open Watch streams give no "possible memory leak" warning: each stream listens for the shutdown, which is no leak', async () => {
    const warnings: Error[] = [];
    const onWarning = (warning: Error) => void warnings.push(warning);
    process.on('warning', onWarning);
    const te = await startTestExecutor();
    try {
      const before = eventSubscribers(te);
      const watchers = Array.from({ length: 20 }, () => openWatch(te, false));
      await waitFor('the Watches to be subscribed', () => eventSubscribers(te) >= before + watchers.length);
      // A process warning is emitted on a later tick: let it come, or show that none does.
      await new Promise((resolve) => setImmediate(resolve));
      const leaks = warnings.filter((w) => w.name === 'MaxListenersExceededWarning');
      assert.deepEqual(
        leaks.map((w) => w.message),
        [],
      );
      for (const watcher of watchers) watcher.call.cancel();
      await Promise.all(watchers.map((w) => w.ended));
    } finally {
      process.off('warning', onWarning);
      await te.close();
    }
  });
});
