// Starts a real executor (real gRPC server on a free loopback port, real
// processes) on a fresh data dir, and a generated grpc-js client for it.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { EventEmitter } from 'node:events';
import { credentials, type ServiceError } from '@grpc/grpc-js';
import {
  type WatchRequest,
  type WatchResponse,
  type CreateRequest,
  type CreateResponse,
  type DeleteRequest,
  type DeleteResponse,
  type GetRequest,
  type GetResponse,
  type ListRequest,
  type ListResponse,
  type SetTasksRequest,
  type SetTasksResponse,
  TaskExecutorServiceClient,
} from '../../gen/taskexecutor/v1/task_executor_service.js';
import { ContainerSpec, ProcessSpec, type Task, TaskSpec } from '../../gen/taskexecutor/v1/task.js';
import { startExecutor, type Executor } from '../../src/app.js';
import { type Config, parseConfig } from '../../src/config.js';
import { createLogger } from '../../src/logger.js';
import { CgroupManager, scopeOf } from '../../src/runtime/cgroups/index.js';
import { killTaskTrees } from './processes.js';
import { waitFor } from './wait.js';

export interface TestExecutor {
  executor: Executor;
  client: TaskExecutorServiceClient;
  api: Api;
  dataDir: string;
  /** Stops the executor (tasks survive, as in production). */
  stop(): Promise<void>;
  /** Stops the executor, kills every task process it knew, removes the data dir. */
  close(): Promise<void>;
}

// Named for what the tests do with them; the RPCs are Create, Get, Delete, SetTasks and List.
export interface Api {
  createTask(request: CreateRequest): Promise<CreateResponse>;
  getTask(request: GetRequest): Promise<GetResponse>;
  deleteTask(request: DeleteRequest): Promise<DeleteResponse>;
  setTasks(request: SetTasksRequest): Promise<SetTasksResponse>;
  /** Every task: reads page after page until the last (List is paged). */
  listTasks(): Promise<ListResponse>;
  /** One page, as asked. */
  listPage(request: ListRequest): Promise<ListResponse>;
}

type Callback<Res> = (error: ServiceError | null, response: Res) => void;

const unary =
  <Req, Res>(call: (request: Req, callback: Callback<Res>) => unknown) =>
  (request: Req) =>
    new Promise<Res>((resolve, reject) => call(request, (error, response) => (error ? reject(error) : resolve(response))));

export function apiFor(client: TaskExecutorServiceClient): Api {
  const listPage = unary<ListRequest, ListResponse>((r, cb) => client.list(r, cb));
  return {
    createTask: unary((r, cb) => client.create(r, cb)),
    getTask: unary((r, cb) => client.get(r, cb)),
    deleteTask: unary((r, cb) => client.delete(r, cb)),
    setTasks: unary((r, cb) => client.setTasks(r, cb)),
    listTasks: async () => {
      const tasks: Task[] = [];
      let pageToken = '';
      do {
        const page = await listPage({ pageToken });
        tasks.push(...page.tasks);
        pageToken = page.nextPageToken;
      } while (pageToken);
      return { tasks, nextPageToken: '' };
    },
    listPage,
  };
}

export function testConfig(dataDir: string, overrides: Partial<Config> = {}): Config {
  return {
    ...parseConfig([]),
    dataDir,
    dataDirExplicit: true,
    listenAddr: '127.0.0.1:0',
    reconcileIntervalMs: 100,
    stopGraceMs: 2000,
    logLevel: process.env.TEST_LOG_LEVEL ?? 'silent',
    ...overrides,
  };
}

/** Made by tempDir in this test process; removed when it exits (a run used to leave ~130 of them in /tmp). */
const madeTempDirs: string[] = [];
process.once('exit', () => {
  for (const dir of madeTempDirs) rmSync(dir, { recursive: true, force: true, maxRetries: 2 });
});

/** A fresh directory under the system's temp dir, removed when the test process exits. */
export function tempDir(prefix = 'te-test-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  madeTempDirs.push(dir);
  return dir;
}

export async function startTestExecutor(overrides: Partial<Config> = {}, dataDir = tempDir()): Promise<TestExecutor> {
  const config = testConfig(dataDir, overrides);
  const executor = await startExecutor(config, createLogger(config.logLevel));
  const client = new TaskExecutorServiceClient(executor.address, credentials.createInsecure());
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    client.close();
    await executor.close();
  };
  return {
    executor,
    client,
    api: apiFor(client),
    dataDir,
    stop,
    close: async () => {
      await stop();
      killTaskTrees(dataDir);
      // The tasks' cgroups are empty now; remove them like a delete would.
      await new CgroupManager({ root: config.cgroupRoot || undefined, log: createLogger('silent') }).sweep(scopeOf(dataDir), () => false);
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

export type ProcessExtra = Partial<Omit<ProcessSpec, 'command'>>;
type SpecExtra = Partial<Omit<TaskSpec, 'runtime'>>;

/** A process task as the wire expects it; `spec` sets task-level fields (restart policy, resources...). */
export function processTask(name: string, command: string[], extra: ProcessExtra = {}, spec: SpecExtra = {}): Task {
  return {
    name,
    spec: TaskSpec.fromPartial({ ...spec, runtime: { $case: 'process', value: ProcessSpec.fromPartial({ ...extra, command }) } }),
  };
}

export function containerTask(name: string, image: string, extra: Partial<ContainerSpec> = {}): Task {
  return { name, spec: TaskSpec.fromPartial({ runtime: { $case: 'container', value: ContainerSpec.fromPartial({ ...extra, image }) } }) };
}

export const shell = (name: string, script: string, extra: ProcessExtra = {}, spec: SpecExtra = {}) =>
  processTask(name, ['sh', '-c', script], extra, spec);

export function stateOf(task: Task | undefined) {
  return task?.status?.state?.state;
}

export function terminated(task: Task | undefined) {
  const state = stateOf(task);
  return state?.$case === 'terminated' ? state.value : undefined;
}

/** The executor's listeners of task events: one per open Watch (and per other open stream). */
export function eventSubscribers(te: TestExecutor): number {
  return (te.executor.manager as unknown as { events: EventEmitter }).events.listenerCount('event');
}

/**
 * Opens a Watch and resolves once the executor has subscribed it: from then on
 * it gets every event. Without the wait, a change made right after opening
 * races the subscription (the call reaches the server after the client's
 * next request only rarely, but then its events are lost to this watcher).
 * Every event received is pushed to `events`.
 */
export async function openSubscribedWatch(te: TestExecutor, events: WatchResponse[] = [], request: Partial<WatchRequest> = {}) {
  const before = eventSubscribers(te);
  const call = te.client.watch({ sendInitial: false, ...request });
  call.on('data', (event: WatchResponse) => events.push(event));
  call.on('error', () => undefined);
  await waitFor('the Watch to be subscribed', () => eventSubscribers(te) > before);
  return { call, events };
}
