// What SetTasks answers. The change is already made when the reply is built,
// so the reply must never be one a default client cannot read (it would then
// see a failure for a change that happened): it is bounded like a List
// page, and falls back from full to compact tasks, then to a cut list with a
// List page token, rather than fail. See SetTasksResponse in the proto.
import { type SetTasksResponse, TaskView as WireTaskView } from '../../gen/taskexecutor/v1/task_executor_service.js';
import type { TaskRecord } from '../model/task.js';
import { type TaskView, taskToWire } from './convert.js';
import { pageTokenAfter, takeWithinBound } from './paging.js';

/** `records`: every task after the change, sorted by name. */
export function setTasksReply(records: readonly TaskRecord[], view: TaskView): SetTasksResponse {
  if (view === 'full') {
    const full = takeWithinBound(records, (record) => taskToWire(record, 'full'));
    if (full.length === records.length) return { tasks: full, view: WireTaskView.TASK_VIEW_FULL, nextPageToken: '' };
  }
  const compact = takeWithinBound(records, (record) => taskToWire(record, 'compact'));
  return { tasks: compact, view: WireTaskView.TASK_VIEW_COMPACT, nextPageToken: pageTokenAfter(records, compact) };
}
