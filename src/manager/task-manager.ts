// The task state machine: admission (create, delete, SetTasks diffing), a
// reconcile loop that follows each task through its runtime, graceful stops
// for deletion and timeouts, and recovery of every task after a restart.
// The manager owns the store; it reaches runtimes only through the registry.
import { EventEmitter } from 'node:events';
import { Mutex } from 'async-mutex';
import type { Logger } from 'pino';
import { alreadyExists, errorMessage, failedPrecondition, invalidArgument, notFound } from '../errors.js';
import { cloneRecord, isTerminated, Reason, type TaskRecord, type TaskSpec, type TaskState } from '../model/task.js';
import type { RuntimeRegistry } from '../runtime/registry.js';
import type { LogLocation, ResourceSample, TaskRuntime } from '../runtime/runtime.js';
import type { TaskStore } from '../store/task-store.js';
import { hasTimedOut, startFailedState, stateFromObservation } from './transitions.js';
import { parseSignal } from '../util/signals.js';
import { nextRestart } from './restart-policy.js';
import { canonicalSpec, validateName, validateSpec } from './validation.js';

export interface ManagerOptions {
  store: TaskStore;
  runtimes: RuntimeRegistry;
  log: Logger;
  reconcileIntervalMs: number;
  stopSignal: NodeJS.Signals;
  stopGraceMs: number;
}

export interface DesiredTask {
  name: string;
  spec: TaskSpec | undefined;
}

export type TaskEventType = 'added' | 'modified' | 'deleted';

export interface TaskEvent {
  type: TaskEventType;
  task: TaskRecord;
}

/** A measurement of one run of a task. */
export interface RunSample {
  /** 0 for the first run, +1 per restart: usage rates compare samples of one run only. */
  run: number;
  sample: ResourceSample;
}

export class TaskManager {
  private readonly tasks = new Map<string, TaskRecord>();
  /** Serialises every change to `tasks`; stops run outside it. */
  private readonly mutex = new Mutex();
  private readonly stopping = new Map<string, Promise<void>>();
  private readonly unwatch = new Map<string, () => void>();
  /** Tasks whose latest state is not on disk yet (see persist). */
  private readonly unsaved = new Set<string>();
  private readonly events = new EventEmitter();
  private timer: NodeJS.Timeout | undefined;
  /** A full reconcile pass is waiting for the lock (see reconcileAll). */
  private passPending = false;
  private closed = false;

  constructor(private readonly options: ManagerOptions) {
    this.events.setMaxListeners(0);
  }

  /** Loads every persisted task, re-attaches to running ones and starts the reconcile loop. */
  async start(): Promise<void> {
    const { records, quarantined } = await this.options.store.load();
    for (const record of records) {
      this.tasks.set(record.name, record);
      if (!record.runtime && !record.restartAt && record.state.phase === 'waiting') await this.resumeAdmission(record);
      this.watchRuntime(record);
    }
    this.options.log.info({ tasks: records.length, quarantined: quarantined.length }, 'task state recovered');
    await this.reconcileAll();
    this.timer = setInterval(() => void this.reconcileAll(), this.options.reconcileIntervalMs);
    this.timer.unref();
  }

  /** Stops supervising. Tasks keep running and are picked up again on the next start. */
  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.timer);
    await this.mutex.waitForUnlock();
    for (const stop of this.unwatch.values()) stop();
    this.events.removeAllListeners();
  }

  list(): TaskRecord[] {
    return [...this.tasks.values()].sort((a, b) => (a.name < b.name ? -1 : 1)).map(cloneRecord);
  }

  get(name: string): TaskRecord {
    validateName(name);
    return cloneRecord(this.require(name));
  }

  /** The task if it exists (a copy), without throwing. */
  find(name: string): TaskRecord | undefined {
    const record = this.tasks.get(name);
    return record && cloneRecord(record);
  }

  subscribe(listener: (event: TaskEvent) => void): () => void {
    this.events.on('event', listener);
    return () => this.events.off('event', listener);
  }

  async create(name: string, spec: TaskSpec | undefined): Promise<TaskRecord> {
    validateName(name, 'task.name');
    validateSpec(spec, 'task.spec');
    return this.mutex.runExclusive(async () => {
      const existing = this.tasks.get(name);
      if (existing) {
        const deleting = existing.deletionRequestedAt ? ' and is being deleted; create it again once it is gone' : '';
        throw alreadyExists(`task "${name}" already exists${deleting}`);
      }
      const runtime = this.options.runtimes.forSpec(spec);
      return cloneRecord(await this.admit(name, spec, runtime));
    });
  }

  async delete(name: string): Promise<TaskRecord> {
    validateName(name);
    return this.mutex.runExclusive(async () => {
      const record = this.require(name);
      await this.markForDeletion(record);
      queueMicrotask(() => void this.reconcileOne(name));
      return cloneRecord(record);
    });
  }

  /**
   * Makes the set of tasks match `desired`: unknown names are created, names
   * missing from `desired` are deleted, known names are left alone. Checks
   * everything before changing anything, so a rejected call changes nothing.
   */
  async setTasks(desired: DesiredTask[]): Promise<TaskRecord[]> {
    const seen = new Set<string>();
    desired.forEach((task, i) => {
      validateName(task.name, `tasks[${i}].name`);
      validateSpec(task.spec, `tasks[${i}].spec`);
      if (seen.has(task.name)) throw invalidArgument(`tasks[${i}].name "${task.name}" appears more than once`);
      seen.add(task.name);
    });
    return this.mutex.runExclusive(async () => {
      const conflicts = desired.filter((task) => {
        const existing = this.tasks.get(task.name);
        return existing && canonicalSpec(existing.spec) !== canonicalSpec(task.spec!);
      });
      if (conflicts.length > 0) {
        const names = conflicts.map((t) => `"${t.name}"`).join(', ');
        throw failedPrecondition(
          `the spec of existing task(s) ${names} differs from the request; a task's spec cannot change: ` +
            `delete the task (leave it out of SetTasks), wait until it is gone, then create it again, or use a new name`,
        );
      }
      const toCreate = desired
        .filter((task) => !this.tasks.has(task.name))
        .map((task) => ({ name: task.name, spec: task.spec!, runtime: this.options.runtimes.forSpec(task.spec!) }));

      for (const record of this.tasks.values()) {
        if (!seen.has(record.name)) await this.markForDeletion(record);
      }
      for (const task of toCreate) await this.admit(task.name, task.spec, task.runtime);
      queueMicrotask(() => void this.reconcileAll());
      return this.list();
    });
  }

  private require(name: string): TaskRecord {
    const record = this.tasks.get(name);
    if (!record) throw notFound(`task "${name}" not found`);
    return record;
  }

  private async admit(name: string, spec: TaskSpec, runtime: TaskRuntime): Promise<TaskRecord> {
    const record: TaskRecord = {
      name,
      spec,
      state: { phase: 'waiting', reason: Reason.Pending },
      createdAt: new Date().toISOString(),
    };
    await this.options.store.create(record);
    this.tasks.set(name, record);
    await this.launch(record, runtime);
    this.options.log.info({ task: name, state: record.state }, 'task created');
    this.emit('added', record);
    return record;
  }

  /**
   * A record without a runtime handle was admitted by an executor that died
   * before recording the start. Adopt the task if it did start; otherwise start
   * it now (unless it is being deleted), so that it runs exactly once.
   */
  private async resumeAdmission(record: TaskRecord): Promise<void> {
    let runtime: TaskRuntime;
    try {
      runtime = this.options.runtimes.forSpec(record.spec);
    } catch {
      return; // reconcile reports the missing backend
    }
    const request = { name: record.name, taskDir: this.options.store.taskDir(record.name), spec: record.spec };
    const adopted = await runtime.recover?.(request);
    if (adopted) {
      record.runtime = { runtime: runtime.name, handle: adopted.handle };
      record.warnings = adopted.warnings;
      record.state = stateFromObservation(record, adopted.observation);
      await this.persist(record);
      this.options.log.info({ task: record.name }, 'adopted a task whose start was not recorded before a restart');
    } else if (!record.deletionRequestedAt) {
      this.options.log.info({ task: record.name }, 'starting a task admitted before a restart but never started');
      await this.launch(record, runtime);
    }
  }

  /** Starts (or restarts) a task's process and records the outcome. */
  private async launch(record: TaskRecord, runtime: TaskRuntime): Promise<void> {
    const { name, spec } = record;
    try {
      const started = await runtime.start({ name, taskDir: this.options.store.taskDir(name), spec });
      record.runtime = { runtime: runtime.name, handle: started.handle };
      record.warnings = started.warnings;
      record.state = stateFromObservation(record, started.observation);
    } catch (error) {
      this.options.log.error({ task: name, err: error }, 'runtime failed to start task');
      record.state = startFailedState(`the ${runtime.name} runtime could not start the task: ${errorMessage(error)}`);
    }
    await this.persist(record);
    this.watchRuntime(record);
  }

  private async markForDeletion(record: TaskRecord): Promise<void> {
    if (record.deletionRequestedAt) return;
    const previousStop = record.stop;
    record.deletionRequestedAt = new Date().toISOString();
    // Recorded in the same write as the deletion mark: one fsync per task when SetTasks drops many.
    if (!isTerminated(record.state) && !record.stop && !record.restartAt) record.stop = { cause: 'deletion', requestedAt: record.deletionRequestedAt };
    try {
      await this.options.store.save(record);
    } catch (error) {
      record.deletionRequestedAt = undefined;
      record.stop = previousStop;
      throw error;
    }
    this.options.log.info({ task: record.name }, 'task marked for deletion');
    this.emit('modified', record);
  }

  private watchRuntime(record: TaskRecord): void {
    if (!record.runtime || isTerminated(record.state) || this.unwatch.has(record.name)) return;
    const runtime = this.options.runtimes.byName(record.runtime.runtime);
    const stop = runtime?.watch?.(record.runtime.handle, () => void this.reconcileOne(record.name));
    if (stop) this.unwatch.set(record.name, stop);
  }

  private async reconcileAll(): Promise<void> {
    // With many tasks a pass can outlast the interval: never queue a second one behind it.
    if (this.closed || this.passPending) return;
    this.passPending = true;
    await this.mutex.runExclusive(async () => {
      this.passPending = false;
      for (const name of [...this.unsaved]) {
        const record = this.tasks.get(name);
        this.unsaved.delete(name);
        if (record) await this.persist(record);
      }
      for (const name of [...this.tasks.keys()]) await this.reconcileLocked(name);
    });
  }

  /**
   * Saves a record the executor already acted on (the task started, stopped or
   * ended). A failure (e.g. a full disk) must not undo that, so it is logged
   * and the save retried on every reconcile pass until it succeeds.
   */
  private async persist(record: TaskRecord): Promise<void> {
    try {
      await this.options.store.save(record);
    } catch (error) {
      if (!this.unsaved.has(record.name)) this.options.log.error({ task: record.name, err: error }, 'cannot save task state; will retry');
      this.unsaved.add(record.name);
    }
  }

  private async reconcileOne(name: string): Promise<void> {
    if (this.closed) return;
    await this.mutex.runExclusive(() => this.reconcileLocked(name));
  }

  /** One step of one task's state machine. Never throws: a failing task must not stall the others. */
  private async reconcileLocked(name: string): Promise<void> {
    const record = this.tasks.get(name);
    if (!record) return;
    try {
      const runtime = record.runtime && this.options.runtimes.byName(record.runtime.runtime);
      if (record.runtime && !runtime) {
        await this.setState(record, {
          phase: 'terminated',
          exitCode: 128,
          signal: 0,
          reason: 'RuntimeUnavailable',
          message: `the "${record.runtime.runtime}" backend that ran this task is not enabled in this executor`,
          finishedAt: new Date().toISOString(),
        });
      }
      if (record.restartAt) {
        if (record.deletionRequestedAt) {
          await this.giveUpRestart(record);
        } else if (Date.parse(record.restartAt) <= Date.now() && runtime) {
          record.restartAt = undefined;
          record.lastTermination = undefined;
          record.restartCount = (record.restartCount ?? 0) + 1;
          this.options.log.info({ task: name, restartCount: record.restartCount }, 'restarting task under its restart policy');
          await this.launch(record, runtime);
          this.emit('modified', record);
        }
        return;
      }
      if (runtime && record.runtime && !isTerminated(record.state)) {
        await this.setState(record, stateFromObservation(record, await runtime.inspect(record.runtime.handle)));
        if (isTerminated(record.state)) await this.scheduleRestart(record);
      }
      if (!isTerminated(record.state) && hasTimedOut(record, Date.now()) && !record.stop) {
        record.stop = { cause: 'timeout', requestedAt: new Date().toISOString() };
        await this.persist(record);
        this.options.log.info({ task: name }, 'task timed out; stopping it');
      }
      if (record.deletionRequestedAt && !isTerminated(record.state) && !record.stop) {
        record.stop = { cause: 'deletion', requestedAt: new Date().toISOString() };
        await this.persist(record);
      }
      if (record.stop && !isTerminated(record.state) && runtime && record.runtime) {
        this.beginStop(record, runtime);
      } else if (record.deletionRequestedAt && !this.stopping.has(name) && (isTerminated(record.state) || !record.runtime)) {
        await this.finalize(record, runtime);
      }
    } catch (error) {
      this.options.log.error({ task: name, err: error }, 'reconcile failed; will retry');
    }
  }

  private beginStop(record: TaskRecord, runtime: TaskRuntime): void {
    if (this.stopping.has(record.name) || !record.runtime) return;
    const { handle } = record.runtime;
    const signal = (record.spec.stopSignal && parseSignal(record.spec.stopSignal)) || this.options.stopSignal;
    const grace = record.spec.terminationGracePeriodSeconds;
    const graceMs = grace !== undefined ? grace * 1000 : this.options.stopGraceMs;
    this.options.log.info({ task: record.name, cause: record.stop?.cause, signal, graceMs }, 'stopping task');
    const stop = runtime
      .stop(handle, { signal, graceMs })
      .catch((error: unknown) => this.options.log.error({ task: record.name, err: error }, 'stop failed; will retry'))
      .finally(() => {
        this.stopping.delete(record.name);
        void this.reconcileOne(record.name);
      });
    this.stopping.set(record.name, stop);
  }

  private async finalize(record: TaskRecord, runtime: TaskRuntime | undefined): Promise<void> {
    // A task that already ended is not stopped: processes it left in the
    // background on purpose keep running (the original's bootstrap pattern).
    if (runtime && record.runtime) await runtime.release(record.runtime.handle);
    this.unwatch.get(record.name)?.();
    this.unwatch.delete(record.name);
    await this.options.store.remove(record.name);
    this.tasks.delete(record.name);
    this.options.log.info({ task: record.name }, 'task deleted');
    this.emit('deleted', record);
  }

  /** Under RESTART_POLICY_ON_FAILURE, a failed run becomes a waiting task with a backoff. */
  private async scheduleRestart(record: TaskRecord): Promise<void> {
    if (record.state.phase !== 'terminated' || record.stop || record.deletionRequestedAt) return;
    const restart = nextRestart(record.spec, record.state, record.restartCount ?? 0);
    if (!restart) return;
    const { exitCode, reason } = record.state;
    record.lastTermination = record.state;
    record.restartAt = new Date(Date.now() + restart.delayMs).toISOString();
    await this.setState(record, {
      phase: 'waiting',
      reason: Reason.BackOff,
      message: `exited with code ${exitCode} (${reason}); restart ${restart.attempt} of ${restart.of} in ${restart.delayMs / 1000}s`,
    });
  }

  /** A task waiting for a restart that gets deleted ends as it last ended. */
  private async giveUpRestart(record: TaskRecord): Promise<void> {
    record.restartAt = undefined;
    await this.setState(record, {
      ...(record.lastTermination ?? { phase: 'terminated', exitCode: 1, signal: 0, finishedAt: new Date().toISOString() }),
      reason: Reason.Stopped,
      message: 'deleted while waiting to restart',
    });
  }

  private async setState(record: TaskRecord, state: TaskState): Promise<void> {
    if (JSON.stringify(state) === JSON.stringify(record.state)) return;
    const previous = record.state.phase;
    record.state = state;
    await this.persist(record);
    if (isTerminated(state)) {
      this.unwatch.get(record.name)?.();
      this.unwatch.delete(record.name);
    }
    this.options.log.info({ task: record.name, from: previous, state }, 'task state changed');
    this.emit('modified', record);
  }

  private emit(type: TaskEventType, record: TaskRecord): void {
    this.events.emit('event', { type, task: cloneRecord(record) } satisfies TaskEvent);
  }

  // What the Logs and Stats streams read of a task, so that they never hold a runtime or a handle.

  /** Where the task's output is captured; undefined before it started. INVALID_ARGUMENT / NOT_FOUND for a bad or unknown name. */
  logLocation(name: string): LogLocation | undefined {
    validateName(name);
    const record = this.require(name);
    const runtime = record.runtime && this.options.runtimes.byName(record.runtime.runtime);
    return record.runtime && runtime?.logs?.(record.runtime.handle);
  }

  /**
   * Resource usage of the task's current run; undefined before it started.
   * NOT_FOUND for an unknown task, FAILED_PRECONDITION when its backend does not measure usage.
   */
  async sample(name: string): Promise<RunSample | undefined> {
    validateName(name);
    const record = this.require(name);
    const runtime = record.runtime && this.options.runtimes.byName(record.runtime.runtime);
    if (runtime && !runtime.stats) throw failedPrecondition(`the ${runtime.name} backend does not report resource usage`);
    if (!record.runtime || !runtime?.stats) return undefined;
    return { run: record.restartCount ?? 0, sample: await runtime.stats(record.runtime.handle) };
  }
}
