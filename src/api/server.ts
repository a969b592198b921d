// The gRPC server: the task service, grpc.health.v1 and server reflection
// (so grpcurl and `buf curl` work without proto files).
import { setMaxListeners } from 'node:events';
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
import { endHealthWatchesOnClose } from './health-watch-shutdown.js';

export const SERVICE_NAME = 'taskexecutor.v1.TaskExecutorService';

export interface RunningServer {
  /** host:port actually bound (the port is real even when 0 was asked for), or unix:///path. */
  address: string;
  /** The worker threads of bulk Logs reads, when there are any (ServerOptions.logsReadWorkers). */
  logReadWorkers?: ChunkWorkers;
  /** Marks the service NOT_SERVING, ends the streams (UNAVAILABLE), then lets in-flight calls finish (up to graceMs). */
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
  /** When the server gives up on a connection; absent: never (grpc-js's defaults). */
  connections?: ConnectionLimits;
}

/** Durations in ms; 0 turns the limit off. */
export interface ConnectionLimits {
  /** No call open for this long: GOAWAY, then the connection closes. */
  maxIdleMs: number;
  /** Ping each connection this often... */
  keepaliveTimeMs: number;
  /** ...and close it (cancelling its calls) when a ping is not answered within this. */
  keepaliveTimeoutMs: number;
}

/**
 * grpc-js has no header or handshake-to-first-call timeout, and a peer that
 * vanishes without a FIN or RST (its node died) looks open for ever: TCP only
 * notices when we send, and a quiet Watch sends nothing. Two grpc-js options cover both:
 *
 * - grpc.max_connection_idle_ms: its timer starts when the HTTP/2 session is
 *   made, which for plaintext and unix sockets is the TCP accept, before the
 *   client preface; so a connection that never sends a byte, or only the
 *   preface, is closed too. It counts open streams, not bytes: a Watch or Logs
 *   stream with no traffic keeps its connection. A client closed this way
 *   reconnects on its next call (GOAWAY with NO_ERROR is the normal gRPC way to
 *   retire a connection; grpc-js and grpc-go retry calls the GOAWAY refused).
 *   With TLS the session begins after the handshake; a handshake that never
 *   ends is Node's tls.Server handshakeTimeout's (120 s).
 * - grpc.keepalive_time_ms / grpc.keepalive_timeout_ms: the server pings every
 *   connection, busy or idle; the client's HTTP/2 stack answers without its
 *   application, so only a dead or wedged peer fails to. Its streams are then
 *   cancelled and their handlers free what they hold. gRPC clients do not police
 *   the pings a server sends (only servers police clients' pings).
 */
function connectionOptions(limits: ConnectionLimits | undefined): Record<string, number> {
  if (!limits) return {};
  return {
    ...(limits.maxIdleMs > 0 ? { 'grpc.max_connection_idle_ms': limits.maxIdleMs } : {}),
    ...(limits.keepaliveTimeMs > 0
      ? { 'grpc.keepalive_time_ms': limits.keepaliveTimeMs, 'grpc.keepalive_timeout_ms': limits.keepaliveTimeoutMs }
      : {}),
  };
}

export async function startServer(options: ServerOptions): Promise<RunningServer> {
  const { listenAddr, manager, log, security } = options;
  const logReadWorkers = options.logsReadWorkers ? new ChunkWorkers({ ...DEFAULT_CHUNK_WORKERS, maxWorkers: options.logsReadWorkers }) : undefined;
  // Aborted by close: streams (Watch, a Logs follow, Stats, a health Watch) would otherwise hold the close for its whole grace.
  const closing = new AbortController();
  // Every open stream listens on it until it ends (one listener each, removed then): past Node's
  // default of 10 that is no leak, and its "possible memory leak" warning would mislead.
  setMaxListeners(0, closing.signal);
  const server = new Server({
    'grpc.max_receive_message_length': 4 * 1024 * 1024,
    ...connectionOptions(options.connections),
    interceptors: [
      ...(options.interceptors ?? []),
      ...(security.token ? [bearerTokenInterceptor(security.token)] : []),
      rejectMalformedRequests,
      endHealthWatchesOnClose(closing.signal),
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
      caps: {
        logs: new StreamSlots('Logs', options.maxLogStreams ?? 0, '--max-log-streams'),
        others: new StreamSlots('Watch and Stats', options.maxStreams ?? 0, '--max-streams'),
      },
      closing: closing.signal,
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
      closing.abort();
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
