// JSON shapes of the original REST task-executor. Requests may use the shape
// its Go types really decode (`{"name", "process": {...}}`) or the one its
// README shows (`{"name", "spec": {"process": {...}}}`). Responses carry both:
// the proto3 JSON of our Task (what grpcurl shows) plus the original's
// `process` and `processStatus`, which its Go controller reads.
import { Task as WireTask } from '../../gen/taskexecutor/v1/task.js';
import { specFromWire, taskToWire } from '../api/convert.js';
import { checkTaskJson } from './json-shape.js';
import type { DesiredTask } from '../manager/task-manager.js';
import type { TaskRecord, TaskState } from '../model/task.js';

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/**
 * A request body entry as the manager wants it, from either request shape.
 * `path` names the entry in errors ("" for a lone task, "tasks[1]" in a list).
 */
export function desiredFromJson(value: unknown, path: string): DesiredTask {
  checkTaskJson(value, path);
  const withSpec = value.spec == null && value.process != null ? { ...value, spec: { process: value.process } } : value;
  const wire = WireTask.fromJSON(withSpec);
  return { name: wire.name, spec: specFromWire(wire.spec) };
}

/** Conversions already made; records are immutable snapshots (see api/convert.ts). */
const converted = new WeakMap<TaskRecord, Json>();

/** The original's JSON for a task; shared between calls, so never modify the result. */
export function taskToJson(record: TaskRecord): Json {
  let json = converted.get(record);
  if (json === undefined) {
    json = convertTask(record);
    converted.set(record, json);
  }
  return json;
}

/** Serialized conversions: a list of 1000 tasks is then a join, not a 286 KB JSON.stringify per request. */
const serialized = new WeakMap<TaskRecord, string>();

/** Whole lists already serialized: the manager hands out the same array until a task changes. */
const lists = new WeakMap<readonly TaskRecord[], string>();

/** A JSON array of the original's JSON of each task, as text. */
export function tasksJsonText(records: readonly TaskRecord[]): string {
  let text = lists.get(records);
  if (text === undefined) {
    text = `[${records.map(taskJsonText).join(',')}]`;
    lists.set(records, text);
  }
  return text;
}

function taskJsonText(record: TaskRecord): string {
  let text = serialized.get(record);
  if (text === undefined) {
    text = JSON.stringify(taskToJson(record));
    serialized.set(record, text);
  }
  return text;
}

function convertTask(record: TaskRecord): Json {
  const json = WireTask.toJSON(taskToWire(record)) as Record<string, Json>;
  const spec = json.spec as Record<string, Json> | undefined;
  if (spec?.process) json.process = spec.process;
  if (record.spec.process) json.processStatus = processStatus(record.state);
  return json;
}

/** The original's metav1.Time: RFC 3339 at second precision. */
const seconds = (iso: string | undefined): Json => (iso ? `${iso.slice(0, 19)}Z` : null);

function processStatus(state: TaskState): Json {
  switch (state.phase) {
    case 'waiting':
      return { waiting: { reason: state.reason, ...(state.message ? { message: state.message } : {}) } };
    case 'running':
      return { running: { startedAt: seconds(state.startedAt) } };
    case 'terminated':
      return {
        terminated: {
          exitCode: state.exitCode,
          ...(state.signal ? { signal: state.signal } : {}),
          reason: state.reason,
          ...(state.message ? { message: state.message } : {}),
          startedAt: seconds(state.startedAt),
          finishedAt: seconds(state.finishedAt),
        },
      };
  }
}
