// Prometheus metrics: tasks by state, starts, terminations by reason, and RPC
// latency. Fed by manager events and a gRPC interceptor; served by server.ts.
import {
  ResponderBuilder,
  ServerInterceptingCall,
  type ServerInterceptor,
  status,
} from '@grpc/grpc-js';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { TaskEvent, TaskManager } from '../manager/task-manager.js';

export class Metrics {
  readonly registry = new Registry();
  private readonly starts: Counter;
  private readonly terminations: Counter<'reason'>;
  private readonly rpcDuration: Histogram<'method' | 'code'>;
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
      help: 'gRPC call duration by method and status code (streams: until they end)',
      labelNames: ['method', 'code'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30],
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

  readonly interceptor: ServerInterceptor = (method, call) => {
    const stop = this.rpcDuration.startTimer({ method: method.path.split('/').pop() ?? method.path });
    const responder = new ResponderBuilder()
      .withSendStatus((result, next) => {
        stop({ code: status[result.code] ?? String(result.code) });
        next(result);
      })
      .build();
    return new ServerInterceptingCall(call, responder);
  };

  async render(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}

