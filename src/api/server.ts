// The gRPC server: the task service, grpc.health.v1 and server reflection
// (so grpcurl and `buf curl` work without proto files).
import { chmodSync, existsSync, lstatSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { Server, type ServerInterceptor } from '@grpc/grpc-js';
import { HealthImplementation } from 'grpc-health-check';
import type { Logger } from 'pino';
import {
  CreateRequest,
  DeleteRequest,
  GetRequest,
  ListRequest,
  LogsRequest,
  SetTasksRequest,
  StatsRequest,
  TaskExecutorServiceService,
  WatchRequest,
} from '../../gen/taskexecutor/v1/task_executor_service.js';
import type { TaskManager } from '../manager/task-manager.js';
import { packageRoot } from '../util/package-root.js';
import { socketAnswers } from '../util/unix-socket.js';
import type { Security } from '../security.js';
import { bearerTokenInterceptor, serverCredentials } from './auth.js';
import { rejectMalformedRequests, withTolerantDecoding } from './malformed.js';
import { addReflection } from './reflection.js';
import { withPreEncodedResponses } from './pre-encoded.js';
import { taskExecutorService } from './task-service.js';
import { ChunkWorkers, DEFAULT_CHUNK_WORKERS } from './log-chunks-offload.js';
import { StreamSlots } from './stream-slots.js';

export const SERVICE_NAME = 'taskexecutor.v1.TaskExecutorService';

export interface RunningServer {
  /** host:port actually bound (the port is real even when 0 was asked for), or unix:///path. */
  address: string;
  /** The worker threads of bulk Logs reads, when there are any (ServerOptions.logsReadWorkers). */
  logReadWorkers?: ChunkWorkers;
  /** Marks the service NOT_SERVING, then lets in-flight calls finish (up to graceMs). */
  close(graceMs?: number): Promise<void>;
}

export interface ServerOptions {
  listenAddr: string;
  manager: TaskManager;
  log: Logger;
  security: Security;
  /** Extra interceptors, e.g. for metrics; they see every call, rejected ones too. */
  interceptors?: ServerInterceptor[];
  /** Worker threads for bulk chunked Logs reads (log-chunks-offload.ts); 0 or absent: none. */
  logsReadWorkers?: number;
  /** Most Logs streams open at once (--max-log-streams); 0 or absent: no limit. */
  maxLogStreams?: number;
  /** Most Watch and Stats streams open at once, together (--max-streams); 0 or absent: no limit. */
  maxStreams?: number;
}

export async function startServer(options: ServerOptions): Promise<RunningServer> {
  const { listenAddr, manager, log, security } = options;
  const logReadWorkers = options.logsReadWorkers ? new ChunkWorkers({ ...DEFAULT_CHUNK_WORKERS, maxWorkers: options.logsReadWorkers }) : undefined;
  const server = new Server({
    'grpc.max_receive_message_length': 4 * 1024 * 1024,
    interceptors: [
      ...(options.interceptors ?? []),
      ...(security.token ? [bearerTokenInterceptor(security.token)] : []),
      rejectMalformedRequests,
    ],
  });
  const requestTypes = {
    create: CreateRequest,
    get: GetRequest,
    delete: DeleteRequest,
    setTasks: SetTasksRequest,
    list: ListRequest,
    logs: LogsRequest,
    stats: StatsRequest,
    watch: WatchRequest,
  };
  server.addService(
    withPreEncodedResponses(withTolerantDecoding(TaskExecutorServiceService, requestTypes)),
    taskExecutorService(manager, log, logReadWorkers, {
      logs: new StreamSlots('Logs', options.maxLogStreams ?? 0, '--max-log-streams'),
      others: new StreamSlots('Watch and Stats', options.maxStreams ?? 0, '--max-streams'),
    }),
  );

  const health = new HealthImplementation({ '': 'SERVING', [SERVICE_NAME]: 'SERVING' });
  health.addToServer(server);

  addReflection(server, join(packageRoot(), 'gen'));

  await removeStaleSocket(listenAddr, log);
  const socketPath = unixSocketPath(listenAddr);
  // The socket is created with the umask's bits: narrow them so it is never briefly open to all.
  const savedUmask = socketPath ? process.umask(0o777 & ~security.unixSocketMode) : undefined;
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(listenAddr, serverCredentials(security), (error, boundPort) =>
      error ? reject(new Error(`cannot listen on ${listenAddr}: ${error.message}`)) : resolve(boundPort),
    ),
  ).finally(() => savedUmask !== undefined && process.umask(savedUmask));
  if (socketPath) chmodSync(socketPath, security.unixSocketMode);
  const address = listenAddr.startsWith('unix:') ? listenAddr : listenAddr.replace(/:\d+$/, `:${port}`);

  return {
    address,
    logReadWorkers,
    close: async (graceMs = 5000) => {
      health.setStatus('', 'NOT_SERVING');
      health.setStatus(SERVICE_NAME, 'NOT_SERVING');
      await new Promise<void>((resolve) => {
        const force = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, graceMs);
        server.tryShutdown(() => {
          clearTimeout(force);
          resolve();
        });
      });
      await logReadWorkers?.close(); // after the calls: a read still in a worker was cancelled with them
    },
  };
}

function unixSocketPath(listenAddr: string): string | undefined {
  return listenAddr.startsWith('unix:') ? listenAddr.replace(/^unix:(\/\/)?/, '') : undefined;
}

/** A socket file left by a crashed executor would make bind fail; remove it if nobody listens. */
async function removeStaleSocket(listenAddr: string, log: Logger): Promise<void> {
  const path = unixSocketPath(listenAddr);
  if (!path || !existsSync(path) || !lstatSync(path).isSocket()) return;
  if (await socketAnswers(path)) return; // bind will report the conflict
  unlinkSync(path);
  log.warn({ path }, 'removed a stale unix socket');
}
