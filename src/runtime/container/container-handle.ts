// The container backend's persisted handle of a task, and its checked reading.
import { definedOnly, Fields } from '../handle-codec.js';
import type { ResourceMapping } from './mapping.js';

/** Persisted with the task record; enough to find the run again after an executor restart. */
export interface ContainerHandle {
  task: string;
  taskDir: string;
  /** The run's uid label: finds its sandbox and container again when their ids went stale. */
  uid: string;
  owner: string;
  image: string;
  sandboxId?: string;
  containerId?: string;
  startedAt?: string;
  limits?: ResourceMapping['applied'];
  /** How its log is rotated (the task's logs settings with the executor's defaults filled in); absent in handles of older releases. */
  logs?: { maxFileSizeBytes: number; maxFiles: number };
}

/** Handle format version the container backend writes (see TaskRuntime.handleVersion). */
export const CONTAINER_HANDLE_VERSION = 1;

/** Reads a persisted container handle; version 1 is also every record written before handle versions existed. */
export function decodeContainerHandle(raw: unknown): ContainerHandle {
  const fields = Fields.of(raw);
  return definedOnly({
    task: fields.string('task'),
    taskDir: fields.string('taskDir'),
    uid: fields.string('uid'),
    owner: fields.string('owner'),
    image: fields.string('image'),
    sandboxId: fields.optionalString('sandboxId'),
    containerId: fields.optionalString('containerId'),
    startedAt: fields.optionalString('startedAt'),
    limits: fields.optionalObject('limits', (limits) =>
      definedOnly({
        cpuMillicores: limits.optionalNumber('cpuMillicores'),
        memoryBytes: limits.optionalInteger('memoryBytes'),
        pids: limits.optionalInteger('pids'),
      }),
    ),
    logs: fields.optionalObject('logs', (logs) => ({
      maxFileSizeBytes: logs.integer('maxFileSizeBytes'),
      maxFiles: logs.integer('maxFiles'),
    })),
  });
}
