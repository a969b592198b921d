// The TypeScript client of task-executor, published as `task-executor/client`:
// a thin typed layer over the grpc-js client that ts-proto generates (gen/), with
// Promises for the unary RPCs, async iterables for the streams, AbortSignal and
// deadlines on every call, and the token and TLS settings of the server's flags.
// @grpc/grpc-js is a peer dependency, so the application and this client share
// one copy (one set of channels, one version of its types).
import { type ChannelCredentials, type ChannelOptions, credentials, Metadata, makeGenericClientConstructor } from '@grpc/grpc-js';
import {
  type CreateRequest,
  type CreateResponse,
  type DeleteRequest,
  type DeleteResponse,
  type GetRequest,
  type GetResponse,
  ListRequest,
  type ListResponse,
  LogsRequest,
  type LogsResponse,
  SetTasksRequest,
  type SetTasksResponse,
  StatsRequest,
  type StatsResponse,
  TaskExecutorServiceClient,
  TaskExecutorServiceService,
  WatchRequest,
  type WatchResponse,
} from '../../gen/taskexecutor/v1/task_executor_service.js';
import { type DeepPartial, type ProcessSpec, Task, type TaskSpec } from '../../gen/taskexecutor/v1/task.js';
import { type CallDefaults, type CallOptions, streamCall, unaryCall } from './calls.js';
import { decodeLogsResponse } from './logs-decoding.js';

export type { CallOptions } from './calls.js';
export * from '../../gen/taskexecutor/v1/task.js';
export {
  CpuStats,
  CreateRequest,
  CreateResponse,
  DeleteRequest,
  DeleteResponse,
  GetRequest,
  GetResponse,
  IoStats,
  ListRequest,
  ListResponse,
  LogChunk,
  LogEntry,
  LogStream,
  LogsRequest,
  LogsResponse,
  MemoryStats,
  PidStats,
  SetTasksRequest,
  SetTasksResponse,
  StatsRequest,
  StatsResponse,
  TaskExecutorServiceClient,
  TaskExecutorServiceService,
  TaskView,
  WatchEventType,
  WatchRequest,
  WatchResponse,
} from '../../gen/taskexecutor/v1/task_executor_service.js';
// Errors are grpc-js ServiceErrors: compare `error.code` with these.
export { type ServiceError, status } from '@grpc/grpc-js';

export interface TlsOptions {
  /** PEM CA bundle that signed the server's certificate. Default: the system's roots. */
  ca?: Buffer | string;
  /** PEM client certificate and key, for a server started with --tls-client-ca-file (mutual TLS). */
  cert?: Buffer | string;
  key?: Buffer | string;
  /** The name the server's certificate must carry, when it differs from the address's host. */
  serverName?: string;
}

export interface ClientOptions {
  /** The server's bearer token (its --auth-token-file), sent with every call. */
  token?: string;
  /** TLS (the server's --tls-cert-file). Unset: plaintext, e.g. on loopback or a unix socket. */
  tls?: TlsOptions | true;
  /** Unary calls fail with DEADLINE_EXCEEDED after this long unless a call says otherwise. Default 30 s; 0: none. */
  unaryTimeoutMs?: number;
  /**
   * grpc-js channel options, e.g. {'grpc.max_receive_message_length': ...}.
   * Default here: 'grpc-node.flow_control_window' 1 MiB (see FLOW_CONTROL_WINDOW).
   */
  channelOptions?: ChannelOptions;
}

const DEFAULT_UNARY_TIMEOUT_MS = 30_000;
/**
 * HTTP/2's default receive window is 64 KiB, one Logs chunk or batch: the
 * server then waits a round trip for a WINDOW_UPDATE after every message, and
 * a bulk Logs read runs at a fraction of the disk's speed. 1 MiB lets about 16
 * messages be on their way; it is also the most a slow reader of one stream
 * leaves buffered in this process.
 */
const FLOW_CONTROL_WINDOW = 1 << 20;

const buffer = (value: Buffer | string | undefined) => (value === undefined ? null : Buffer.from(value));

function channelCredentials(tls: ClientOptions['tls']): ChannelCredentials {
  if (!tls) return credentials.createInsecure();
  if (tls === true) return credentials.createSsl();
  return credentials.createSsl(buffer(tls.ca), buffer(tls.key), buffer(tls.cert));
}

/** A process task, as Create and SetTasks take it: `processTask('t1', ['sleep', '10'])`. */
export function processTask(
  name: string,
  command: string[],
  process: DeepPartial<Omit<ProcessSpec, 'command'>> = {},
  spec: DeepPartial<Omit<TaskSpec, 'runtime'>> = {},
): Task {
  return Task.fromPartial({ name, spec: { ...spec, runtime: { $case: 'process', value: { ...process, command } } } });
}

/**
 * The generated client class, with a faster decoder for batched Logs
 * responses (logs-decoding.ts: the same objects); typed as the generated
 * client, as the generated code types its own.
 */
const RawClient = makeGenericClientConstructor(
  { ...TaskExecutorServiceService, logs: { ...TaskExecutorServiceService.logs, responseDeserialize: decodeLogsResponse } },
  TaskExecutorServiceClient.serviceName,
) as unknown as typeof TaskExecutorServiceClient;

export class TaskExecutorClient {
  /** The generated grpc-js client underneath, for anything this class does not cover. */
  readonly raw: TaskExecutorServiceClient;
  private readonly defaults: CallDefaults;

  /** `address`: "host:port", or "unix:///path/to/socket" (the server's --listen-addr). */
  constructor(address: string, options: ClientOptions = {}) {
    const channelOptions: ChannelOptions = { 'grpc-node.flow_control_window': FLOW_CONTROL_WINDOW, ...options.channelOptions };
    if (options.tls && options.tls !== true && options.tls.serverName) {
      channelOptions['grpc.ssl_target_name_override'] = options.tls.serverName;
    }
    this.raw = new RawClient(address, channelCredentials(options.tls), channelOptions);
    const { token } = options;
    const unaryTimeoutMs = options.unaryTimeoutMs ?? DEFAULT_UNARY_TIMEOUT_MS;
    this.defaults = {
      // Per-call metadata rather than call credentials: grpc-js sends call credentials only over TLS,
      // and a token over a unix socket or loopback is a setup the server supports.
      metadata: () => {
        const metadata = new Metadata();
        if (token) metadata.set('authorization', `Bearer ${token}`);
        return metadata;
      },
      unaryTimeoutMs: unaryTimeoutMs > 0 ? unaryTimeoutMs : undefined,
    };
  }

  /** Creates and starts a task; resolves with it as accepted (usually running or waiting). */
  async create(task: DeepPartial<Task>, options?: CallOptions): Promise<Task> {
    const response = await unaryCall<CreateRequest, CreateResponse>((r, m, o, cb) => this.raw.create(r, m, o, cb), { task: Task.fromPartial(task) }, this.defaults, options);
    return required(response.task, 'Create');
  }

  async get(name: string, options?: CallOptions): Promise<Task> {
    const response = await unaryCall<GetRequest, GetResponse>((r, m, o, cb) => this.raw.get(r, m, o, cb), { name }, this.defaults, options);
    return required(response.task, 'Get');
  }

  /** Marks the task for deletion; resolves at once with deletionTimestamp set. */
  async delete(name: string, options?: CallOptions): Promise<Task> {
    const response = await unaryCall<DeleteRequest, DeleteResponse>((r, m, o, cb) => this.raw.delete(r, m, o, cb), { name }, this.defaults, options);
    return required(response.task, 'Delete');
  }

  /** Declarative sync to exactly these tasks (see SetTasks in the proto). */
  setTasks(request: DeepPartial<SetTasksRequest>, options?: CallOptions): Promise<SetTasksResponse> {
    return unaryCall((r, m, o, cb) => this.raw.setTasks(r, m, o, cb), SetTasksRequest.fromPartial(request), this.defaults, options);
  }

  /** One page of tasks; pass nextPageToken back as pageToken for the next one. */
  list(request: DeepPartial<ListRequest> = {}, options?: CallOptions): Promise<ListResponse> {
    return unaryCall((r, m, o, cb) => this.raw.list(r, m, o, cb), ListRequest.fromPartial(request), this.defaults, options);
  }

  /** Every task, page after page (each page is one List call, with its own deadline). */
  async *listAll(options?: CallOptions & { pageSize?: number }): AsyncGenerator<Task, void, undefined> {
    let pageToken = '';
    do {
      const page = await this.list({ pageSize: options?.pageSize, pageToken }, options);
      yield* page.tasks;
      pageToken = page.nextPageToken;
    } while (pageToken);
  }

  /** A task's output; with `follow: true` it goes on until the task ends or the signal aborts. */
  logs(request: DeepPartial<LogsRequest>, options?: CallOptions): AsyncGenerator<LogsResponse, void, undefined> {
    return streamCall((r, m, o) => this.raw.logs(r, m, o), LogsRequest.fromPartial(request), this.defaults, options);
  }

  stats(request: DeepPartial<StatsRequest>, options?: CallOptions): AsyncGenerator<StatsResponse, void, undefined> {
    return streamCall((r, m, o) => this.raw.stats(r, m, o), StatsRequest.fromPartial(request), this.defaults, options);
  }

  /** Task changes as they happen (with sendInitial: every task first, as ADDED). Runs until aborted. */
  watch(request: DeepPartial<WatchRequest> = {}, options?: CallOptions): AsyncGenerator<WatchResponse, void, undefined> {
    return streamCall((r, m, o) => this.raw.watch(r, m, o), WatchRequest.fromPartial(request), this.defaults, options);
  }

  close(): void {
    this.raw.close();
  }
}

function required(task: Task | undefined, rpc: string): Task {
  if (!task) throw new Error(`${rpc} answered without a task: the server does not speak this contract`);
  return task;
}
