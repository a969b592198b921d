// gRPC handlers: decode, call the manager, encode. No decisions are made here.
import type { handleUnaryCall } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import type { TaskExecutorServiceServer } from '../../gen/taskexecutor/v1/task_executor_service.js';
import { invalidArgument } from '../errors.js';
import type { TaskManager } from '../manager/task-manager.js';
import { specFromWire, taskToWire } from './convert.js';
import type { ChunkWorkers } from './log-chunks-offload.js';
import { logsHandler, logsResponseSize } from './logs-handler.js';
import { listPage } from './paging.js';
import { serverStream } from './server-stream.js';
import { setTasksReply } from './set-tasks-reply.js';
import { statsHandler } from './stats-handler.js';
import { toServiceError } from './status.js';
import type { StreamSlots } from './stream-slots.js';
import { requestedView } from './task-view.js';
import { watchHandler } from './watch-handler.js';

/** Caps on open server streams: Logs (--max-log-streams), and Watch and Stats together (--max-streams). */
export interface StreamCaps {
  logs: StreamSlots;
  others: StreamSlots;
}

/** `closing`: aborted when the server closes; the streams then end UNAVAILABLE (server-stream.ts). */
export interface StreamSettings {
  caps?: StreamCaps;
  closing?: AbortSignal;
}

export function taskExecutorService(manager: TaskManager, log: Logger, logReadWorkers?: ChunkWorkers, streams: StreamSettings = {}): TaskExecutorServiceServer {
  const { caps, closing } = streams;
  const unary =
    <Req, Res>(handle: (request: Req) => Promise<Res> | Res): handleUnaryCall<Req, Res> =>
    (call, callback) => {
      Promise.resolve()
        .then(() => handle(call.request))
        .then(
          (response) => callback(null, response),
          (error: unknown) => callback(toServiceError(error, log)),
        );
    };

  return {
    create: unary(async ({ task }) => {
      if (!task) throw invalidArgument('task is required, e.g. {"task": {"name": "t1", "spec": {"process": {"command": ["true"]}}}}');
      return { task: taskToWire(await manager.create(task.name, specFromWire(task.spec))) };
    }),
    get: unary(({ name }) => ({ task: taskToWire(manager.get(name)) })),
    delete: unary(async ({ name }) => ({ task: taskToWire(await manager.delete(name)) })),
    setTasks: unary(async ({ tasks, view }) => {
      const replyView = requestedView(view, 'compact'); // checked before anything changes
      const desired = tasks.map((task) => ({ name: task.name, spec: specFromWire(task.spec) }));
      return setTasksReply(await manager.setTasks(desired), replyView);
    }),
    list: unary((request) => listPage(manager.list(), request, requestedView(request.view, 'full'))),
    logs: serverStream(logsHandler(manager, log, logReadWorkers), log, { slots: caps?.logs, sizeOf: logsResponseSize, closing }),
    stats: serverStream(statsHandler(manager, log), log, { slots: caps?.others, closing }),
    watch: serverStream(watchHandler(manager), log, { slots: caps?.others, closing }),
  };
}
