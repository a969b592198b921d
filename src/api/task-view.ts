// The `view` field of SetTasks and List requests (AIP-157): how much of each
// task the reply carries. Each method has its own default; a value the proto
// does not define is INVALID_ARGUMENT, checked before anything happens.
import { TaskView as WireTaskView } from '../../gen/taskexecutor/v1/task_executor_service.js';
import { invalidArgument } from '../errors.js';
import type { TaskView } from './convert.js';

const NAMES: Record<TaskView, string> = { compact: 'TASK_VIEW_COMPACT', full: 'TASK_VIEW_FULL' };

/** The view a request asks for; unset or TASK_VIEW_UNSPECIFIED is the method's default. */
export function requestedView(view: WireTaskView | undefined, methodDefault: TaskView): TaskView {
  switch (view) {
    case undefined:
    case WireTaskView.TASK_VIEW_UNSPECIFIED:
      return methodDefault;
    case WireTaskView.TASK_VIEW_COMPACT:
      return 'compact';
    case WireTaskView.TASK_VIEW_FULL:
      return 'full';
    default: {
      const other = methodDefault === 'full' ? 'compact' : 'full';
      throw invalidArgument(`view ${String(view)} is not a TaskView: use ${NAMES[methodDefault]} (the default) or ${NAMES[other]}`);
    }
  }
}
