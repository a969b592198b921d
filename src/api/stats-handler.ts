// The Stats RPC: validates the request, then streams samples of the task's
// runtime (src/stats/stream.ts) with grpc-js flow control.
import type { handleServerStreamingCall, ServerWritableStream } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import type { StatsRequest, StatsResponse } from '../../gen/taskexecutor/v1/task_executor_service.js';
import { failedPrecondition, notFound } from '../errors.js';
import type { TaskManager } from '../manager/task-manager.js';
import { intervalMs } from '../stats/interval.js';
import type { StatsPoint } from '../stats/sampler.js';
import { runStatsStream, type StatsSource, type StatsStreamEnd } from '../stats/stream.js';
import { statsToWire } from '../stats/wire.js';
import { toServiceError } from './status.js';
import { writeOrWait } from './backpressure.js';

type StatsCall = ServerWritableStream<StatsRequest, StatsResponse>;

export function statsHandler(manager: TaskManager, log: Logger): handleServerStreamingCall<StatsRequest, StatsResponse> {
  return (call: StatsCall) => {
    const abort = new AbortController();
    call.on('cancelled', () => abort.abort());
    serve(call, manager, abort.signal).then(
      (end) => {
        if (end === 'ended') call.end();
        else if (end === 'gone') call.emit('error', toServiceError(notFound(`task "${call.request.name}" was deleted`), log));
      },
      (error: unknown) => {
        if (!abort.signal.aborted) call.emit('error', toServiceError(error, log));
      },
    );
  };
}

async function serve(call: StatsCall, manager: TaskManager, signal: AbortSignal): Promise<StatsStreamEnd> {
  const { name, oneShot } = call.request;
  const interval = intervalMs(call.request.interval);
  const { runtime } = manager.attachment(name); // INVALID_ARGUMENT for a bad name, NOT_FOUND for an unknown one
  if (runtime && !runtime.stats) throw failedPrecondition(`the ${runtime.name} backend does not report resource usage`);

  // State comes from the manager's events after one look at the task, so a
  // tick costs no copy of the record. A task that terminates under a restart
  // policy is waiting again right after: remember that it terminated, so the
  // stream ends with that run.
  let terminated = manager.find(name)?.state.phase === 'terminated';
  let gone = false;
  const source: StatsSource = {
    view() {
      if (gone) return undefined;
      let attachment;
      try {
        attachment = manager.attachment(name);
      } catch {
        return undefined; // deleted
      }
      const { runtime: current, handle } = attachment;
      const read = current?.stats && handle ? () => current.stats!(handle) : undefined;
      return { ended: terminated, read, key: handle };
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
  // The client may read slower than we sample: writeOrWait paces us to it.
  const send = async (point: StatsPoint) => writeOrWait(call, statsToWire(point), signal);
  return runStatsStream({ source, send, intervalMs: interval, oneShot, signal });
}
