// The Watch RPC: the tasks as they are (sendInitial), then every change.
//
// Events wait in a per-watcher backlog while the client is slow to read (the
// server stream only asks for the next message once grpc-js has room). The
// backlog is bounded: a watcher that falls further behind is dropped — its
// backlog freed and its subscription ended at once — and its stream ends with
// RESOURCE_EXHAUSTED, telling it to Watch again with sendInitial. Without the
// bound, each client that stops reading held every later event forever.
import { WatchEventType, type WatchRequest, type WatchResponse } from '../../gen/taskexecutor/v1/task_executor_service.js';
import { TaskError } from '../errors.js';
import type { TaskEvent, TaskManager } from '../manager/task-manager.js';
import { Wakeup } from '../util/wakeup.js';
import { taskToWire } from './convert.js';
import type { ServerStreamHandler } from './server-stream.js';

export interface BacklogLimits {
  /** Events a watcher may have waiting... */
  maxEvents: number;
  /** ...and their approximate size (JSON) in bytes: a task's spec may be up to 1 MiB. */
  maxBytes: number;
}

/**
 * The bytes are the real bound. The count only backstops it: a SetTasks of
 * thousands of tasks publishes two or three events per task in one burst,
 * which a healthy watcher must be able to absorb.
 */
export const WATCH_BACKLOG: BacklogLimits = { maxEvents: 100_000, maxBytes: 16 * 1024 * 1024 };

const EVENT_TYPES: Record<TaskEvent['type'], WatchEventType> = {
  added: WatchEventType.WATCH_EVENT_TYPE_ADDED,
  modified: WatchEventType.WATCH_EVENT_TYPE_MODIFIED,
  deleted: WatchEventType.WATCH_EVENT_TYPE_DELETED,
};

const toWire = (event: TaskEvent): WatchResponse => ({ type: EVENT_TYPES[event.type], task: taskToWire(event.task) });

export function watchHandler(manager: TaskManager, limits: BacklogLimits = WATCH_BACKLOG): ServerStreamHandler<WatchRequest, WatchResponse> {
  return async function* watch(request, signal) {
    const backlog = new EventBacklog(limits);
    const wakeup = new Wakeup(signal);
    // Subscribe, then list, in the same tick: no change can fall between the
    // listing and the first event, and each event is newer than the listing.
    const unsubscribe = manager.subscribe((event) => {
      if (!backlog.push(event)) unsubscribe();
      wakeup.wake();
    });
    try {
      if (request.sendInitial) for (const task of manager.list()) yield toWire({ type: 'added', task });
      for (;;) {
        if (backlog.overflow) {
          const { events, bytes } = backlog.overflow;
          throw new TaskError(
            'ResourceExhausted',
            `this Watch fell behind: ${events} events (about ${Math.ceil(bytes / 1024)} KiB) were waiting for the client to read them, ` +
              `more than the ${limits.maxEvents} events or ${limits.maxBytes / 2 ** 20} MiB a watcher may hold; ` +
              'later events were dropped. Watch again with sendInitial: true to get every task as it is now and follow from there',
          );
        }
        const event = backlog.shift();
        if (event) yield toWire(event);
        else if (signal.aborted) return;
        else await wakeup.wait();
      }
    } finally {
      unsubscribe();
      wakeup.close();
    }
  };
}

/** Approximate sizes, computed once per event however many watchers hold it (the manager hands every listener the same event). */
const sizes = new WeakMap<TaskEvent, number>();
const sizeOf = (event: TaskEvent): number => {
  let size = sizes.get(event);
  if (size === undefined) sizes.set(event, (size = JSON.stringify(event.task).length));
  return size;
};

/** A FIFO of events with a bound; once over it, it drops everything it holds and takes nothing more. */
export class EventBacklog {
  private readonly events: TaskEvent[] = [];
  private bytes = 0;
  /** Set once the bound was passed: what was waiting at that moment. */
  overflow: { events: number; bytes: number } | undefined;

  constructor(private readonly limits: BacklogLimits) {}

  /** False when the backlog overflowed (now or before): the event was dropped. */
  push(event: TaskEvent): boolean {
    if (this.overflow) return false;
    const events = this.events.length + 1;
    const bytes = this.bytes + sizeOf(event);
    if (events > this.limits.maxEvents || bytes > this.limits.maxBytes) {
      this.overflow = { events, bytes };
      this.events.length = 0;
      this.bytes = 0;
      return false;
    }
    this.events.push(event);
    this.bytes = bytes;
    return true;
  }

  shift(): TaskEvent | undefined {
    const event = this.events.shift(); // at most maxEvents long: cheap enough
    if (event) this.bytes -= sizeOf(event);
    return event;
  }
}
