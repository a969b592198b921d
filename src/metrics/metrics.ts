// Prometheus metrics: tasks by state, starts, terminations by reason, RPC
// latency and open streams. Fed by manager events and a gRPC interceptor;
// served by metrics-server.ts.
import {
  type Deadline,
  ResponderBuilder,
  ServerInterceptingCall,
  type ServerInterceptor,
  ServerListenerBuilder,
  status,
} from '@grpc/grpc-js';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { TaskEvent, TaskManager } from '../manager/task-manager.js';

export class Metrics {
  readonly registry = new Registry();
  private readonly starts: Counter;
  private readonly terminations: Counter<'reason'>;
  private readonly rpcDuration: Histogram<'method' | 'code'>;
  private readonly openStreams: Gauge<'method'>;
  /** Per task: runs started and runs whose end was counted, so that each is counted once. */
  private readonly seen = new Map<string, { started: number; ended: number }>();

  constructor(manager: TaskManager) {
    collectDefaultMetrics({ register: this.registry, prefix: 'task_executor_' });
    new Gauge({
      name: 'task_executor_tasks',
      help: 'Tasks by state (waiting, running, terminated) and whether they are being deleted',
      labelNames: ['state', 'deleting'],
      registers: [this.registry],
      collect() {
        this.reset();
        for (const task of manager.list()) {
          this.inc({ state: task.state.phase, deleting: task.deletionRequestedAt ? 'true' : 'false' });
        }
      },
    });
    this.starts = new Counter({
      name: 'task_executor_task_starts_total',
      help: 'Task processes started, restarts included',
      registers: [this.registry],
    });
    this.terminations = new Counter({
      name: 'task_executor_task_terminations_total',
      help: 'Task runs that ended, by reason (Succeeded, Failed, TaskTimeout, OOMKilled, Stopped...)',
      labelNames: ['reason'],
      registers: [this.registry],
    });
    this.rpcDuration = new Histogram({
      name: 'task_executor_rpc_duration_seconds',
      help:
        'gRPC call duration by method and status code (streams: until they end); calls the client cancelled or ' +
        'dropped count as CANCELLED, calls whose deadline passed as DEADLINE_EXCEEDED',
      labelNames: ['method', 'code'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30],
      registers: [this.registry],
    });
    this.openStreams = new Gauge({
      name: 'task_executor_rpc_open_streams',
      help: 'Server streams (Watch, Logs, Stats) open now, by method',
      labelNames: ['method'],
      registers: [this.registry],
    });
    manager.subscribe((event) => this.onTaskEvent(event));
  }

  private onTaskEvent({ type, task }: TaskEvent): void {
    if (type === 'deleted') {
      this.seen.delete(task.name);
      return;
    }
    const seen = this.seen.get(task.name) ?? { started: 0, ended: 0 };
    const run = (task.restartCount ?? 0) + 1;
    const started = task.runtime ? run : run - 1;
    if (started > seen.started) this.starts.inc(started - seen.started);
    seen.started = Math.max(seen.started, started);
    if (task.state.phase === 'terminated' && seen.ended < run) {
      this.terminations.inc({ reason: task.state.reason });
      seen.ended = run;
    }
    this.seen.set(task.name, seen);
  }

  /**
   * Times every call until it ends. A call ends either with a status the
   * server sends (seen by withSendStatus) or without one, when the client
   * cancels, the connection drops or the deadline passes (grpc-js then answers
   * DEADLINE_EXCEEDED itself, past the interceptors): those are seen only as
   * a cancellation, which grpc-js also reports after every sent status.
   */
  readonly interceptor: ServerInterceptor = (method, call) => {
    const name = method.path.split('/').pop() ?? method.path;
    const stop = this.rpcDuration.startTimer({ method: name });
    const streaming = method.responseStream;
    if (streaming) this.openStreams.inc({ method: name });
    let ended = false;
    const end = (code: status) => {
      if (ended) return;
      ended = true;
      stop({ code: status[code] ?? String(code) });
      if (streaming) this.openStreams.dec({ method: name });
    };
    const responder = new ResponderBuilder()
      .withStart((next) => next(new ServerListenerBuilder().withOnCancel(() => end(cancelCode(call.getDeadline()))).build()))
      .withSendStatus((result, next) => {
        end(result.code);
        next(result);
      })
      .build();
    return new ServerInterceptingCall(call, responder);
  };

  async render(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}

/**
 * A client's own deadline timer starts before the server's (which starts when
 * the request arrives), so a client that gives up at its deadline resets the
 * stream a little before the server's deadline: count that as the deadline too.
 */
const DEADLINE_SLACK_MS = 250;

/** What a call that ended without a status from the server ended with. */
function cancelCode(deadline: Deadline): status {
  const at = deadline instanceof Date ? deadline.getTime() : deadline;
  return Number.isFinite(at) && Date.now() >= at - DEADLINE_SLACK_MS ? status.DEADLINE_EXCEEDED : status.CANCELLED;
}
