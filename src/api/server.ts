// The gRPC server: the task service, grpc.health.v1 and server reflection
// (so grpcurl and `buf curl` work without proto files).
import { existsSync, lstatSync, unlinkSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { Server, ServerCredentials } from '@grpc/grpc-js';
import { HealthImplementation } from 'grpc-health-check';
import type { Logger } from 'pino';
import { TaskExecutorServiceService } from '../../gen/taskexecutor/v1/task_executor_service.js';
import type { TaskManager } from '../manager/task-manager.js';
import { packageRoot } from '../util/package-root.js';
import { addReflection } from './reflection.js';
import { taskExecutorService } from './task-service.js';

export const SERVICE_NAME = 'taskexecutor.v1.TaskExecutorService';

export interface RunningServer {
  /** host:port actually bound (the port is real even when 0 was asked for), or unix:///path. */
  address: string;
  /** Marks the service NOT_SERVING, then lets in-flight calls finish (up to graceMs). */
  close(graceMs?: number): Promise<void>;
}

export async function startServer(options: { listenAddr: string; manager: TaskManager; log: Logger }): Promise<RunningServer> {
  const { listenAddr, manager, log } = options;
  const server = new Server({ 'grpc.max_receive_message_length': 4 * 1024 * 1024 });
  server.addService(TaskExecutorServiceService, taskExecutorService(manager, log));

  const health = new HealthImplementation({ '': 'SERVING', [SERVICE_NAME]: 'SERVING' });
  health.addToServer(server);

  addReflection(server, join(packageRoot(), 'gen'));

  await removeStaleSocket(listenAddr, log);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(listenAddr, ServerCredentials.createInsecure(), (error, boundPort) =>
      error ? reject(new Error(`cannot listen on ${listenAddr}: ${error.message}`)) : resolve(boundPort),
    ),
  );
  const address = listenAddr.startsWith('unix:') ? listenAddr : listenAddr.replace(/:\d+$/, `:${port}`);

  return {
    address,
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
    },
  };
}

/** A socket file left by a crashed executor would make bind fail; remove it if nobody listens. */
async function removeStaleSocket(listenAddr: string, log: Logger): Promise<void> {
  if (!listenAddr.startsWith('unix:')) return;
  const path = listenAddr.replace(/^unix:(\/\/)?/, '');
  if (!existsSync(path) || !lstatSync(path).isSocket()) return;
  const alive = await new Promise<boolean>((resolve) => {
    const socket = connect(path);
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
  if (alive) return; // bind will report the conflict
  unlinkSync(path);
  log.warn({ path }, 'removed a stale unix socket');
}
