// The Stats RPC: validates the request, then streams samples of the task
// (src/stats/stream.ts) taken through the manager. Flow control and
// cancellation come from server-stream.ts.
import type { Logger } from 'pino';
import type { StatsRequest, StatsResponse } from '../../gen/taskexecutor/v1/task_executor_service.js';
import { notFound, TaskError } from '../errors.js';
import type { TaskManager } from '../manager/task-manager.js';
import { intervalMs } from '../stats/interval.js';
import type { StatsPoint } from '../stats/sampler.js';
import { type StatsSource, statsStream, type StatsStreamEnd } from '../stats/stream.js';
import { statsToWire } from '../stats/wire.js';
import type { ServerStreamHandler } from './server-stream.js';

export function statsHandler(manager: TaskManager, log: Logger): ServerStreamHandler<StatsRequest, StatsResponse> {
  return async function* stats(request, signal) {
    const { name, oneShot } = request;
    const interval = intervalMs(request.interval);
    manager.get(name); // INVALID_ARGUMENT for a bad name, NOT_FOUND for an unknown one, before anything is sent
    const points = statsStream({ source: sourceOf(manager, name), intervalMs: interval, oneShot, signal });
    try {
      let next: IteratorResult<StatsPoint, StatsStreamEnd>;
      while (!(next = await points.next()).done) yield statsToWire(next.value);
      log.debug({ task: name, end: next.value }, 'stats stream ended');
      if (next.value === 'gone') throw notFound(`task "${name}" was deleted`);
    } finally {
      await points.return('cancelled'); // stopped at a yield (cancelled): release its subscription
    }
  };
}

/**
 * State comes from the manager's events after one look at the task, so a
 * tick costs no copy of the record. A task that terminates under a restart
 * policy is waiting again right after: remember that it terminated, so the
 * stream ends with that run.
 */
function sourceOf(manager: TaskManager, name: string): StatsSource {
  const task = manager.find(name);
  let terminated = task?.state.phase === 'terminated';
  let gone = task === undefined;
  return {
    view: () => (gone ? undefined : { ended: terminated }),
    async sample() {
      if (gone) return undefined;
      try {
        return await manager.sample(name);
      } catch (error) {
        if (error instanceof TaskError && error.kind === 'NotFound') {
          gone = true; // deleted since the last event
          return undefined;
        }
        throw error;
      }
    },
    subscribe(onChange) {
      return manager.subscribe((event) => {
        if (event.task.name !== name) return;
        if (event.type === 'deleted') gone = true;
        else if (event.task.state.phase === 'terminated') terminated = true;
        onChange();
      });
    },
  };
}
