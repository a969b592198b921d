// The task state machine: admission (create, delete, SetTasks diffing), one
// serial actor per task that follows it through its runtime (start, observe,
// stop, restart, finalize), and recovery of every task after a restart.
//
// Concurrency: a short admission lock covers only name admission (so two
// SetTasks never interleave their diffs); everything else is per-task work
// (KeyedSerializer), so one task's slow start, stop or disk write never
// delays another task. Runtimes push changes (watch); a slow periodic resync
// (--reconcile-interval) is only a safety net, and per-task timers carry
// timeouts, restart backoff and retries.
//
// Records are immutable snapshots: a change makes a new record, writes it,
// then swaps it into the map and publishes it (persist -> memory -> publish),
// so nothing a client sees is ahead of the disk. The one exception is a disk
// that refuses the write (full, read-only): a fact the executor already acted
// on (a task started, ended, is being deleted) is kept in memory, logged once
// and written when the disk takes it again, because refusing it would lose
// an exit code or make a task impossible to delete.
import { EventEmitter } from 'node:events';
import { availableParallelism } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { Mutex, Semaphore } from 'async-mutex';
import type { Logger } from 'pino';
import { alreadyExists, errorMessage, failedPrecondition, invalidArgument, notFound, TaskError } from '../errors.js';
import { isTerminated, Reason, type TaskRecord, type TaskSpec, type TaskState } from '../model/task.js';
import { canonicalSpec, validateName, validateSpec } from '../model/validation.js';
import type { Backend, BoundTask, RuntimeRegistry } from '../runtime/registry.js';
import { AdmissionAbandoned, type LogLocation, type ResourceSample } from '../runtime/runtime.js';
import type { TaskStore, UnreadableRecord } from '../store/task-store.js';
import { resolvedOk } from '../util/settled.js';
import { parseSignal } from '../util/signals.js';
import { KeyedSerializer } from './keyed-serializer.js';
import { nextRestart } from './restart-policy.js';
import { hasTimedOut, remainingGraceMs, startFailedState, stateFromObservation, timeoutSeconds } from './transitions.js';

export interface ManagerOptions {
  store: TaskStore;
  runtimes: RuntimeRegistry;
  log: Logger;
  /** How often every task is checked against its runtime, as a safety net behind pushed changes. */
  reconcileIntervalMs: number;
  stopSignal: NodeJS.Signals;
  stopGraceMs: number;
  /** Tasks the executor holds at most (being deleted included); undefined: no limit. */
  maxTasks?: number;
  /** Task starts in flight at once; default: 4 per core. */
  startConcurrency?: number;
  /** Fetches TaskSpec.artifacts before a start (src/artifacts/); none: tasks with artifacts start without them. */
  artifacts?: ArtifactStage;
}

/** What the manager needs of the artifact fetcher (src/artifacts/fetcher.ts). */
export interface ArtifactStage {
  /** Whether the task's artifacts are complete in taskDir (fetched before, e.g. by a run before a restart). */
  isComplete(taskDir: string): Promise<boolean>;
  /** Resolves once the task's artifacts are complete in taskDir; rejects with an AbortError when `signal` (or a shutdown) stopped it. */
  fetch(taskDir: string, spec: TaskSpec, signal: AbortSignal): Promise<void>;
}

export interface DesiredTask {
  name: string;
  spec: TaskSpec | undefined;
}

export type TaskEventType = 'added' | 'modified' | 'deleted';

export interface TaskEvent {
  type: TaskEventType;
  /** An immutable snapshot: never modify it. */
  task: TaskRecord;
}

/** A measurement of one run of a task. */
export interface RunSample {
  /** 0 for the first run, +1 per restart: usage rates compare samples of one run only. */
  run: number;
  sample: ResourceSample;
}

/** How long CreateTask waits for the task's start before answering with its current (waiting) state. */
const CREATE_REPLY_WAIT_MS = 2000;
/** Tasks with a live watch are resynced on every this-many-th safety-net pass (see resyncAll). */
const WATCHED_RESYNC_EVERY = 3;
/** Safety-net steps in flight at once (see resyncAll). */
const RESYNC_CONCURRENCY = 4;
/** How soon a task whose runtime is unreachable tries to start again. */
const UNAVAILABLE_RETRY_MS = 1000;
/** Longest delay Node's timers take (about 24.8 days); later deadlines are re-armed. */
const MAX_TIMER_MS = 2 ** 31 - 1;
export const RUNTIME_UNAVAILABLE = 'RuntimeUnavailable';
/** The abort reason of starts that close() gives up, told apart from a deletion's. */
const SHUTDOWN = Symbol('executor shutdown');

export class TaskManager {
  /** Committed records by name; each is replaced, never modified. */
  private readonly tasks = new Map<string, TaskRecord>();
  /** The sorted list, built once per change. */
  private sorted: readonly TaskRecord[] | undefined;
  /** Admission only: name checks and the first write of new tasks. */
  private readonly admission = new Mutex();
  /** Each task's steps (start, reconcile, restart, finalize), one at a time. */
  private readonly work = new KeyedSerializer();
  /** Each task's record commits, one at a time, always applied to the latest record. */
  private readonly commits = new KeyedSerializer();
  private readonly starts: Semaphore;
  /** Each task's work before it runs (an artifact fetch, a start), aborted when the task is deleted meanwhile. */
  private readonly starting = new Map<string, AbortController>();
  /** Tasks with a reconcile step queued but not yet begun (a burst of changes costs one step). */
  private readonly queued = new Set<string>();
  private readonly stopping = new Map<string, Promise<void>>();
  private readonly unwatch = new Map<string, () => void>();
  /** Each task's next timed wake-up: timeout, restart backoff or a retry. */
  private readonly timers = new Map<string, NodeJS.Timeout>();
  /** Tasks whose latest record is not on disk yet (the disk refused it). */
  private readonly unsaved = new Set<string>();
  /** The last failure logged per task, so a persistent one is logged once, not on every pass. */
  private readonly reported = new Map<string, string>();
  private readonly events = new EventEmitter();
  private safetyNet: NodeJS.Timeout | undefined;
  /** Steps of a safety-net pass in flight at once. */
  private readonly resyncGate = new Semaphore(RESYNC_CONCURRENCY);
  private resyncing = false;
  private passes = 0;
  /** Subscriptions to the runtimes, undone on close. */
  private readonly detach: (() => void)[] = [];
  private closed = false;

  constructor(private readonly options: ManagerOptions) {
    this.events.setMaxListeners(0);
    this.starts = new Semaphore(options.startConcurrency ?? 4 * availableParallelism());
  }

  /**
   * Loads every persisted task, stops what unreadable records owned, and
   * re-attaches to every task in parallel; then starts the safety-net resync.
   */
  async start(): Promise<void> {
    const { records, unreadable } = await this.options.store.load();
    for (const record of records) this.tasks.set(record.name, record);
    this.sorted = undefined;
    await Promise.all(unreadable.map((entry) => this.reclaimUnreadable(entry)));
    await Promise.all(records.map((record) => this.work.run(record.name, () => this.resume(record.name))));
    this.options.log.info({ tasks: records.length, quarantined: unreadable.length }, 'task state recovered');
    for (const runtime of this.options.runtimes.all()) {
      const stop = runtime.onAvailabilityChange?.((available) => {
        if (available) this.retryWaitingStarts();
      });
      if (stop) this.detach.push(stop);
    }
    this.safetyNet = setInterval(() => void this.resyncAll(), this.options.reconcileIntervalMs);
    this.safetyNet.unref();
  }

  /**
   * Stops supervising. Tasks keep running and are picked up again on the next
   * start. Waits for each task's step in flight (and the writes in it), never
   * for a stop's grace period (stops run beside the actors: the next executor
   * resumes them from their records) nor for a slow start (an image pull and
   * its back-off): that start is aborted and nothing of it is recorded, so the
   * task still waits to start and the next executor starts it (or adopts what
   * did start).
   */
  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.safetyNet);
    for (const timer of this.timers.values()) clearTimeout(timer);
    this.timers.clear();
    for (const stop of this.detach.splice(0)) stop();
    for (const controller of this.starting.values()) controller.abort(SHUTDOWN);
    await this.work.drain();
    for (const stop of this.unwatch.values()) stop();
    this.unwatch.clear();
    this.events.removeAllListeners();
  }

  /** Every task, sorted by name: a shared, immutable view rebuilt only after a change. */
  list(): readonly TaskRecord[] {
    this.sorted ??= [...this.tasks.values()].sort(byName);
    return this.sorted;
  }

  get(name: string): TaskRecord {
    validateName(name);
    return this.require(name);
  }

  /** The task if it exists, without throwing. */
  find(name: string): TaskRecord | undefined {
    return this.tasks.get(name);
  }

  /** Where a task's output is captured; NOT_FOUND for an unknown task, undefined before it started. */
  logLocation(name: string): LogLocation | undefined {
    return this.bound(this.get(name))?.logs();
  }

  /**
   * Resource usage of the task's current run; undefined before it started.
   * NOT_FOUND for an unknown task, FAILED_PRECONDITION when its backend does not measure usage.
   */
  async sample(name: string): Promise<RunSample | undefined> {
    const record = this.get(name);
    const task = this.bound(record);
    if (task && !task.stats) throw failedPrecondition(`the ${task.runtime} backend does not report resource usage`);
    if (!task?.stats) return undefined;
    return { run: record.restartCount ?? 0, sample: await task.stats() };
  }

  subscribe(listener: (event: TaskEvent) => void): () => void {
    this.events.on('event', listener);
    return () => this.events.off('event', listener);
  }

  async create(name: string, spec: TaskSpec | undefined): Promise<TaskRecord> {
    validateName(name, 'task.name');
    validateSpec(spec, 'task.spec');
    await this.options.runtimes.check([{ spec, field: 'task.spec' }]);
    const { record, launched } = await this.admission.runExclusive(async () => {
      const existing = this.tasks.get(name);
      if (existing) {
        const deleting = existing.deletionRequestedAt ? ' and is being deleted; create it again once it is gone' : '';
        throw alreadyExists(`task "${name}" already exists${deleting}`);
      }
      this.checkCapacity(1);
      this.options.runtimes.forSpec(spec);
      // The record's write and the start's preparation overlap: the backend
      // gets ready in the new directory and lets the task run once the record
      // is on disk (StartRequest.admitted), so a Create pays for one of them.
      const [pending] = this.pendingRecords([{ name, spec }]);
      await this.options.store.prepareNew([pending!]);
      const admitted = this.commitAdmission([pending!]);
      // The reply waits for the start's outcome in memory; a durable one is there before its record is on disk.
      let show!: () => void;
      const shown = new Promise<void>((resolve) => {
        show = resolve;
      });
      const launching = this.work.run(name, () => this.launch(name, { record: pending!, admitted, shown: show }));
      try {
        await admitted;
      } catch (error) {
        // Nothing ran (the start was abandoned at its gate); whatever it left in the directory goes too.
        await launching;
        await this.options.store.remove(name).catch(() => undefined);
        throw error;
      }
      return { record: pending!, launched: Promise.race([launching, shown]) };
    });
    // The reply shows the started task, unless its start is slow (an image
    // pull): then it shows why it still waits, and the start goes on.
    await Promise.race([launched, sleep(CREATE_REPLY_WAIT_MS, undefined, { ref: false })]);
    return this.tasks.get(name) ?? record;
  }

  async delete(name: string): Promise<TaskRecord> {
    validateName(name);
    const record = this.require(name);
    await this.markForDeletion(name);
    this.schedule(name);
    return this.tasks.get(name) ?? record;
  }

  /**
   * Makes the set of tasks match `desired`: unknown names are created, names
   * missing from `desired` are deleted, known names are left alone. Checks
   * everything before changing anything, so a rejected call changes nothing.
   * Returns once the new tasks have started (in parallel).
   */
  async setTasks(desired: DesiredTask[]): Promise<readonly TaskRecord[]> {
    const seen = new Set<string>();
    desired.forEach((task, i) => {
      validateName(task.name, `tasks[${i}].name`);
      validateSpec(task.spec, `tasks[${i}].spec`);
      if (seen.has(task.name)) throw invalidArgument(`tasks[${i}].name "${task.name}" appears more than once`);
      seen.add(task.name);
    });
    // Only the new tasks' (an existing task's spec was checked when it was created).
    await this.options.runtimes.check(desired.flatMap((task, i) => (this.tasks.has(task.name) ? [] : [{ spec: task.spec!, field: `tasks[${i}].spec` }])));
    const created = await this.admission.runExclusive(async () => {
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
      const toCreate = desired.filter((task) => !this.tasks.has(task.name)).map((task) => ({ name: task.name, spec: task.spec! }));
      for (const task of toCreate) this.options.runtimes.forSpec(task.spec);
      this.checkCapacity(toCreate.length);
      const toDelete = [...this.tasks.keys()].filter((name) => !seen.has(name));
      // New tasks first: their write is the step that can fail (a full disk),
      // and a failed call must not have deleted anything.
      await this.admit(toCreate);
      await Promise.all(toDelete.map((name) => this.markForDeletion(name)));
      const marked = toDelete.map((name) => this.tasks.get(name)).filter((record) => record !== undefined);
      for (const name of toDelete) this.schedule(name);
      return { toCreate, marked };
    });
    await Promise.all(created.toCreate.map((task) => this.work.run(task.name, () => this.launch(task.name))));
    // The reply shows every task this call deleted, with its deletion mark,
    // even one whose deletion already finished while the new tasks started.
    const gone = created.marked.filter((record) => !this.tasks.has(record.name));
    if (gone.length === 0) return this.list();
    return [...this.list(), ...gone].sort(byName);
  }

  private require(name: string): TaskRecord {
    const record = this.tasks.get(name);
    if (!record) throw notFound(`task "${name}" not found`);
    return record;
  }

  /** The task's current run, bound to its backend; undefined before it started or when its backend is not enabled. */
  private bound(record: TaskRecord): BoundTask | undefined {
    return record.runtime && this.options.runtimes.bind(record.runtime, { name: record.name, taskDir: this.options.store.taskDir(record.name) });
  }

  private checkCapacity(adding: number): void {
    const max = this.options.maxTasks;
    if (max === undefined || this.tasks.size + adding <= max) return;
    const deleting = [...this.tasks.values()].filter((r) => r.deletionRequestedAt).length;
    throw new TaskError(
      'ResourceExhausted',
      `this executor holds at most ${max} tasks (--max-tasks); it has ${this.tasks.size} (${deleting} being deleted) ` +
        `and the request adds ${adding}: wait for deletions to finish or delete tasks first`,
    );
  }

  /** Writes the first records of new tasks (one batch), then makes them visible. */
  private async admit(tasks: readonly { name: string; spec: TaskSpec }[]): Promise<TaskRecord[]> {
    if (tasks.length === 0) return [];
    const records = this.pendingRecords(tasks);
    await this.options.store.prepareNew(records);
    await this.commitAdmission(records);
    return records;
  }

  private pendingRecords(tasks: readonly { name: string; spec: TaskSpec }[]): TaskRecord[] {
    const createdAt = new Date().toISOString();
    return tasks.map(({ name, spec }): TaskRecord => ({ name, spec, state: { phase: 'waiting', reason: Reason.Pending }, createdAt }));
  }

  /** Writes the first records of tasks whose directories exist, then makes them visible. */
  private async commitAdmission(records: readonly TaskRecord[]): Promise<void> {
    await this.options.store.commitNew(records);
    for (const record of records) {
      this.publish('added', record);
      this.options.log.info({ task: record.name }, 'task created');
    }
  }

  /**
   * Picks a task up after a restart. A record without a runtime handle was
   * admitted (or set to restart) by an executor that died before recording
   * the start: adopt the task if it did start, otherwise start it now (unless
   * it is being deleted), so that it runs exactly once.
   */
  private async resume(name: string): Promise<void> {
    const record = this.tasks.get(name);
    if (!record) return;
    if (!record.runtime && !record.restartAt && record.state.phase === 'waiting') {
      const runtime = this.runtimeFor(record);
      const request = { name, taskDir: this.options.store.taskDir(name), spec: record.spec };
      let adopted;
      try {
        adopted = runtime && (await runtime.recover?.(request));
      } catch (error) {
        if (!isUnavailable(error)) throw error;
        await this.waitForRuntime(name, error);
        return;
      }
      if (runtime && adopted) {
        await this.update(name, (r) => ({ ...r, runtime: adopted.ref, warnings: adopted.warnings, state: stateFromObservation(r, adopted.observation) }));
        this.options.log.info({ task: name }, 'adopted a task whose start was not recorded before a restart');
        this.watch(name);
      } else if (!record.deletionRequestedAt) {
        this.options.log.info({ task: name }, 'starting a task admitted before a restart but never started');
        await this.launch(name);
        return;
      }
    } else {
      this.watch(name);
    }
    await this.step(name);
  }

  /**
   * Stops whatever an unreadable record's task still runs, then moves the
   * record aside (or, for an admission that never wrote its record, removes
   * the empty directory).
   */
  private async reclaimUnreadable({ name, reason, missing }: UnreadableRecord): Promise<void> {
    const taskDir = this.options.store.taskDir(name);
    for (const runtime of this.options.runtimes.all()) {
      try {
        const stopped = await runtime.reclaim?.(name, taskDir);
        if (stopped) this.options.log.warn({ task: name, runtime: runtime.name, stopped }, 'stopped the processes of a task whose record is unreadable');
      } catch (error) {
        this.options.log.error({ task: name, runtime: runtime.name, err: error }, 'cannot stop what a task with an unreadable record runs');
      }
    }
    try {
      if (missing) {
        await this.options.store.remove(name);
        this.options.log.info({ task: name }, 'removed the directory of an admission interrupted before its record was written');
      } else {
        await this.options.store.quarantine(name, reason);
      }
    } catch (error) {
      this.options.log.error({ task: name, err: error }, 'cannot quarantine an unreadable task record');
    }
  }

  private runtimeFor(record: TaskRecord): Backend | undefined {
    try {
      return this.options.runtimes.forSpec(record.spec);
    } catch {
      return undefined;
    }
  }

  /**
   * Starts (or restarts) a task that has no run yet, and records the outcome.
   * Runs in the task's actor. `admission`: a new task whose first record is
   * being written meanwhile; nothing is recorded (or run) unless that write
   * succeeds; `shown` is called once the start's outcome is in memory.
   */
  private async launch(name: string, admission?: { record: TaskRecord; admitted: Promise<void>; shown?: () => void }): Promise<void> {
    const record = admission?.record ?? this.tasks.get(name);
    if (!record || record.runtime || record.deletionRequestedAt || isTerminated(record.state)) return;
    const runtime = this.runtimeFor(record);
    if (!runtime) {
      await this.setState(name, startFailedState(`no backend of this executor runs this task any more`));
      return;
    }
    // Artifacts come first, outside the start slots: a slow download must not hold one. A fetch
    // writes into the task's directory and takes a while: only for a task whose record exists.
    if (record.spec.artifacts?.length && admission && !(await resolvedOk(admission.admitted))) return;
    if (!(await this.fetchArtifacts(name, record))) return;
    let next: (r: TaskRecord) => TaskRecord;
    let durable = false;
    try {
      // A start slot bounds the starts that work on this machine at once. A start
      // that reports a slow step (an image pull, its back-off) waits on something
      // else, so it gives its slot back: a dead registry must not hold up process tasks.
      const slot = await this.starts.acquire();
      let holding = true;
      const giveBack = () => {
        if (holding) slot[1]();
        holding = false;
      };
      const progress = (reason: string, message?: string) => {
        giveBack();
        void this.setState(name, { phase: 'waiting', reason, ...(message ? { message } : {}) });
      };
      // A deletion during the start (e.g. an image pull's back-off) ends it at once.
      const starting = this.abortOnDeletion(name);
      const request = {
        name,
        taskDir: this.options.store.taskDir(name),
        spec: record.spec,
        progress,
        signal: starting.signal,
        ...(admission && { admitted: admission.admitted }),
      };
      const started = await runtime.start(request).finally(() => {
        giveBack();
        this.doneBeforeRun(name, starting);
      });
      // A start the shutdown gave up (close) ran nothing: the task waits for the next executor.
      if (starting.signal.reason === SHUTDOWN && started.observation.state !== 'running' && started.durable !== true) {
        this.options.log.info({ task: name }, 'start interrupted by the shutdown; the next executor starts the task');
        return;
      }
      next = (r) => ({
        ...r,
        runtime: started.ref,
        warnings: started.warnings,
        state: stateFromObservation(r, started.observation),
      });
      durable = started.durable === true;
    } catch (error) {
      if (error instanceof AdmissionAbandoned) return;
      if (admission && !(await resolvedOk(admission.admitted))) return;
      if (isUnavailable(error)) {
        await this.waitForRuntime(name, error);
        return;
      }
      this.options.log.error({ task: name, err: error }, 'runtime failed to start task');
      const state = startFailedState(`the ${runtime.name} runtime could not start the task: ${errorMessage(error)}`);
      next = (r) => ({ ...r, state });
    }
    // A start that failed early, before its gate, is recorded once the task exists.
    if (admission && !(await resolvedOk(admission.admitted))) return;
    await this.update(name, next, durable ? { shown: admission?.shown } : undefined);
    this.watch(name);
    // An exit announced before the watch was registered would otherwise wait for the safety net.
    this.schedule(name);
  }

  // --- Artifacts (src/artifacts/): the one hook, called by launch before the start. ---

  /**
   * True once the task's artifacts are complete in its directory: start it.
   * Otherwise starts fetching them (waiting {FetchingArtifacts}) and answers
   * false. The fetch runs beside the task's actor, like a stop, and is kept
   * in `stopping`: the actor stays free (Delete, the resync and the
   * executor's start-up never wait for a download), finalize waits for it,
   * and its end queues a step, which launches the task again (now complete)
   * unless it failed (terminated ArtifactFetchFailed, exit 128, nothing ran),
   * was stopped by a deletion (then finalized) or by a shutdown (relaunched
   * after the restart: a fetch never leaves part of the artifacts in place).
   */
  private async fetchArtifacts(name: string, record: TaskRecord): Promise<boolean> {
    const stage = this.options.artifacts;
    if (!stage || !record.spec.artifacts?.length) return true;
    if (this.stopping.has(name)) return false;
    const taskDir = this.options.store.taskDir(name);
    if (await stage.isComplete(taskDir)) return true;
    const count = record.spec.artifacts.length;
    await this.setState(name, { phase: 'waiting', reason: Reason.FetchingArtifacts, message: `fetching ${count} artifact${count === 1 ? '' : 's'}` });
    const controller = this.abortOnDeletion(name);
    const fetch = stage
      .fetch(taskDir, record.spec, controller.signal)
      .catch(async (error: unknown) => {
        if (controller.signal.aborted || (error instanceof Error && error.name === 'AbortError')) return;
        this.options.log.warn({ task: name, err: error }, 'artifact fetch failed; the task does not run');
        await this.setState(name, {
          phase: 'terminated',
          exitCode: 128,
          signal: 0,
          reason: Reason.ArtifactFetchFailed,
          message: errorMessage(error),
          finishedAt: new Date().toISOString(),
        });
      })
      .finally(() => {
        this.doneBeforeRun(name, controller);
        this.stopping.delete(name);
        this.schedule(name);
      });
    this.stopping.set(name, fetch);
    return false;
  }

  /** A signal for work before the task runs, aborted by markForDeletion (at once if the task is marked already) and by close. */
  private abortOnDeletion(name: string): AbortController {
    const controller = new AbortController();
    this.starting.set(name, controller);
    if (this.tasks.get(name)?.deletionRequestedAt) controller.abort();
    else if (this.closed) controller.abort(SHUTDOWN);
    return controller;
  }

  private doneBeforeRun(name: string, controller: AbortController): void {
    if (this.starting.get(name) === controller) this.starting.delete(name);
  }

  /** The runtime cannot be reached: the task waits and its start is tried again shortly. */
  private async waitForRuntime(name: string, error: unknown): Promise<void> {
    await this.setState(name, { phase: 'waiting', reason: RUNTIME_UNAVAILABLE, message: errorMessage(error) });
    this.arm(name, UNAVAILABLE_RETRY_MS);
  }

  private async markForDeletion(name: string): Promise<void> {
    const requestedAt = new Date().toISOString();
    const marked = await this.update(name, (r) => {
      if (r.deletionRequestedAt) return r;
      // The stop is recorded in the same write as the deletion mark: one write per task.
      const stop = !isTerminated(r.state) && !r.stop && !r.restartAt ? { cause: 'deletion' as const, requestedAt } : r.stop;
      return { ...r, deletionRequestedAt: requestedAt, stop };
    });
    if (marked) this.options.log.info({ task: name }, 'task marked for deletion');
    this.starting.get(name)?.abort();
  }

  private watch(name: string): void {
    const record = this.tasks.get(name);
    if (!record?.runtime || isTerminated(record.state) || this.unwatch.has(name)) return;
    const stop = this.bound(record)?.watch?.(() => this.schedule(name));
    if (stop) this.unwatch.set(name, stop);
  }

  private unwatchTask(name: string): void {
    this.unwatch.get(name)?.();
    this.unwatch.delete(name);
  }

  /** Queues one reconcile step for a task; a step already queued covers this request too. */
  private schedule(name: string): void {
    if (this.closed || this.queued.has(name)) return;
    this.queued.add(name);
    void this.work.run(name, async () => {
      this.queued.delete(name);
      await this.step(name);
    });
  }

  /** A runtime is reachable again: tasks waiting for it start now. */
  private retryWaitingStarts(): void {
    for (const record of this.tasks.values()) {
      if (record.state.phase === 'waiting' && record.state.reason === RUNTIME_UNAVAILABLE) this.schedule(record.name);
    }
  }

  /**
   * The safety net: every task that is not at rest gets a step. A few at a
   * time, so a pass over thousands of tasks never holds the event loop for
   * long: pushed changes of other tasks are handled in between.
   */
  private async resyncAll(): Promise<void> {
    if (this.resyncing || this.closed) return;
    this.resyncing = true;
    try {
      for (const name of this.unsaved) void this.commits.run(name, () => this.retrySave(name));
      // A task whose runtime pushes its changes (a live watch) is checked on
      // every WATCHED_RESYNC_EVERY-th pass only: its check only guards against
      // a lost notification, and an idle node with thousands of tasks should
      // cost next to nothing.
      const thorough = this.passes++ % WATCHED_RESYNC_EVERY === 0;
      const names = [...this.tasks.values()]
        .filter((record) => !isTerminated(record.state) || record.deletionRequestedAt || record.restartAt)
        .filter((record) => thorough || !this.unwatch.has(record.name) || record.deletionRequestedAt)
        .map((record) => record.name);
      await Promise.all(names.map((name) => this.resyncGate.runExclusive(() => this.work.run(name, () => this.step(name)))));
    } finally {
      this.resyncing = false;
    }
  }

  /** One step of one task's state machine. Never throws: a failing task must not stall the others. */
  private async step(name: string): Promise<void> {
    try {
      await this.advance(name);
      this.reported.delete(name);
    } catch (error) {
      const message = errorMessage(error);
      // An unreachable runtime logs its outage itself, once; per-task lines would repeat it.
      if (!isUnavailable(error) && this.reported.get(name) !== message) {
        this.reported.set(name, message);
        this.options.log.error({ task: name, err: error }, 'reconcile failed; will retry');
      }
    }
    this.armNext(name);
  }

  private async advance(name: string): Promise<void> {
    let record = this.tasks.get(name);
    if (!record) return;
    const runtime = this.bound(record);
    if (record.runtime && !runtime && !isTerminated(record.state)) {
      await this.setState(name, {
        phase: 'terminated',
        exitCode: 128,
        signal: 0,
        reason: RUNTIME_UNAVAILABLE,
        message: `the "${record.runtime.runtime}" backend that ran this task is not enabled in this executor`,
        finishedAt: new Date().toISOString(),
      });
    }
    if (record.restartAt) {
      if (record.deletionRequestedAt) await this.giveUpRestart(name);
      else if (Date.parse(record.restartAt) <= Date.now() && runtime) return this.restart(name, runtime);
      else return;
    }
    record = this.tasks.get(name)!;
    if (!record.runtime && record.state.phase === 'waiting' && !record.deletionRequestedAt) return this.launch(name);
    if (runtime && record.runtime && !isTerminated(record.state)) {
      try {
        const observation = await runtime.inspect();
        const durable = observation.state === 'exited' && observation.durable === true;
        await this.setState(name, stateFromObservation(record, observation), durable);
      } catch (error) {
        // An unreachable runtime says nothing about the task: keep what is known (the runtime logs the outage).
        if (!isUnavailable(error)) throw error;
      }
    }
    await this.scheduleRestart(name);
    record = this.tasks.get(name)!;
    if (!isTerminated(record.state) && !record.stop && hasTimedOut(record, Date.now())) {
      await this.update(name, (r) => ({ ...r, stop: r.stop ?? { cause: 'timeout', requestedAt: new Date().toISOString() } }));
      this.options.log.info({ task: name }, 'task timed out; stopping it');
    }
    record = this.tasks.get(name)!;
    if (record.deletionRequestedAt && !isTerminated(record.state) && !record.stop) {
      await this.update(name, (r) => ({ ...r, stop: r.stop ?? { cause: 'deletion', requestedAt: new Date().toISOString() } }));
    }
    record = this.tasks.get(name)!;
    if (record.stop && !isTerminated(record.state) && runtime && record.runtime) {
      this.beginStop(record, runtime);
    } else if (record.deletionRequestedAt && !this.stopping.has(name) && (isTerminated(record.state) || !record.runtime)) {
      await this.finalize(record, runtime);
    }
  }

  /**
   * Starts the next run under the restart policy. The old run is released
   * first and the restart is recorded (without a handle) before the new run
   * starts, exactly like a first start: an executor that dies anywhere in
   * between finds either the old run (and restarts again) or a pending start
   * (and recovers or starts it), never two runs.
   */
  private async restart(name: string, run: BoundTask): Promise<void> {
    const record = this.tasks.get(name)!;
    this.unwatchTask(name);
    await run.release();
    const restartCount = (record.restartCount ?? 0) + 1;
    await this.update(name, (r) => ({
      ...r,
      runtime: undefined,
      restartAt: undefined,
      lastTermination: undefined,
      restartCount,
      state: { phase: 'waiting', reason: Reason.Pending, message: `restart ${restartCount} under the restart policy` },
    }));
    this.options.log.info({ task: name, restartCount }, 'restarting task under its restart policy');
    await this.launch(name);
  }

  private beginStop(record: TaskRecord, run: BoundTask): void {
    const { name } = record;
    if (this.stopping.has(name)) return;
    const signal = (record.spec.stopSignal && parseSignal(record.spec.stopSignal)) || this.options.stopSignal;
    const grace = record.spec.terminationGracePeriodSeconds;
    const fullGraceMs = grace !== undefined ? grace * 1000 : this.options.stopGraceMs;
    // The grace runs from the request, so a stop that an executor restart
    // interrupted SIGKILLs when it would have without the restart. The signal
    // is sent again all the same: the stop is recorded before it is sent, so
    // after a restart nothing tells whether it was; a grace already over goes
    // straight to the kill (graceMs 0, see StopOptions).
    const graceMs = remainingGraceMs(fullGraceMs, record.stop?.requestedAt, Date.now());
    this.options.log.info({ task: name, cause: record.stop?.cause, signal, graceMs, fullGraceMs }, 'stopping task');
    const stop = run
      .stop({ signal, graceMs })
      .catch((error: unknown) => {
        if (!isUnavailable(error)) this.options.log.error({ task: name, err: error }, 'stop failed; will retry');
      })
      .finally(() => {
        this.stopping.delete(name);
        this.schedule(name);
      });
    this.stopping.set(name, stop);
  }

  private async finalize(record: TaskRecord, run: BoundTask | undefined): Promise<void> {
    // A task that already ended is not stopped: processes it left in the
    // background on purpose keep running (the original's bootstrap pattern).
    if (run) await run.release();
    this.unwatchTask(record.name);
    await this.options.store.remove(record.name);
    this.tasks.delete(record.name);
    this.sorted = undefined;
    this.unsaved.delete(record.name);
    this.reported.delete(record.name);
    clearTimeout(this.timers.get(record.name));
    this.timers.delete(record.name);
    this.options.log.info({ task: record.name }, 'task deleted');
    this.emit('deleted', record);
  }

  /** Under RESTART_POLICY_ON_FAILURE, a failed run becomes a waiting task with a backoff. */
  private async scheduleRestart(name: string): Promise<void> {
    const record = this.tasks.get(name)!;
    if (record.state.phase !== 'terminated' || record.stop || record.deletionRequestedAt) return;
    const restart = nextRestart(record.spec, record.state, record.restartCount ?? 0);
    if (!restart) return;
    const { exitCode, reason } = record.state;
    const lastTermination = record.state;
    await this.update(name, (r) => ({
      ...r,
      lastTermination,
      restartAt: new Date(Date.now() + restart.delayMs).toISOString(),
      state: {
        phase: 'waiting',
        reason: Reason.BackOff,
        message: `exited with code ${exitCode} (${reason}); restart ${restart.attempt} of ${restart.of} in ${restart.delayMs / 1000}s`,
      },
    }));
  }

  /** A task waiting for a restart that gets deleted ends as it last ended. */
  private async giveUpRestart(name: string): Promise<void> {
    await this.update(name, (r) => ({
      ...r,
      restartAt: undefined,
      state: {
        ...(r.lastTermination ?? { phase: 'terminated', exitCode: 1, signal: 0, finishedAt: new Date().toISOString() }),
        reason: Reason.Stopped,
        message: 'deleted while waiting to restart',
      },
    }));
  }

  /** `durable`: the state is an exit the runtime keeps across a crash (see update). */
  private async setState(name: string, state: TaskState, durable = false): Promise<void> {
    const change = (r: TaskRecord) => (JSON.stringify(state) === JSON.stringify(r.state) ? r : { ...r, state });
    await this.update(name, change, durable ? {} : undefined);
  }

  /**
   * Applies `change` to the task's latest record and commits the result:
   * write, then swap into memory, then publish. Returns whether anything
   * changed. A write the disk refuses is kept in memory and retried (see
   * the file comment); it never throws for that.
   *
   * `durable`: the change is a start or an exit the runtime made durable
   * itself (Started.durable, an exited Observation.durable: after a crash,
   * recovery finds it from the runtime's own files, as long as the record on
   * disk is the one the start began from, or the run's). It is published
   * first, `shown` (if any) is called, and then it is written;
   * still in the task's commit order, so no later change overtakes it on
   * disk. Only while the task's latest record is on disk: after a refused
   * write, recovery would start from an older record.
   */
  private async update(name: string, change: (record: TaskRecord) => TaskRecord, durable?: { shown?: (() => void) | undefined }): Promise<boolean> {
    return this.commits.run(name, async () => {
      const current = this.tasks.get(name);
      if (!current) return false;
      const next = change(current);
      if (next === current) return false;
      const early = durable !== undefined && !this.unsaved.has(name);
      if (early) {
        this.applied(current, next);
        durable.shown?.();
      }
      try {
        await this.options.store.save(next);
        this.saved(name);
      } catch (error) {
        this.notSaved(name, error);
      }
      if (early) return true;
      if (this.tasks.get(name) !== current) return false; // finalized meanwhile
      this.applied(current, next);
      return true;
    });
  }

  /** Puts a committed change in memory, publishes it and logs a change of state. */
  private applied(current: TaskRecord, next: TaskRecord): void {
    this.publish('modified', next);
    if (current.state !== next.state && JSON.stringify(current.state) !== JSON.stringify(next.state)) {
      if (isTerminated(next.state)) this.unwatchTask(next.name);
      this.options.log.info({ task: next.name, from: current.state.phase, state: next.state }, 'task state changed');
    }
  }

  private async retrySave(name: string): Promise<void> {
    const record = this.tasks.get(name);
    if (!record || !this.unsaved.has(name)) return;
    try {
      await this.options.store.save(record);
      this.saved(name);
    } catch {
      // still refused; logged once when it first failed
    }
  }

  private saved(name: string): void {
    if (this.unsaved.delete(name)) this.options.log.info({ task: name }, 'task state saved again');
  }

  private notSaved(name: string, error: unknown): void {
    if (!this.unsaved.has(name)) {
      this.options.log.error({ task: name, err: error }, 'cannot save task state; keeping it in memory and retrying on every resync');
    }
    this.unsaved.add(name);
  }

  private publish(type: TaskEventType, record: TaskRecord): void {
    this.tasks.set(record.name, record);
    this.sorted = undefined;
    this.emit(type, record);
  }

  private emit(type: TaskEventType, task: TaskRecord): void {
    this.events.emit('event', { type, task } satisfies TaskEvent);
  }

  /** Arms the task's next timed wake-up from its record: a timeout, a due restart. */
  private armNext(name: string): void {
    const record = this.tasks.get(name);
    if (!record || this.closed) return;
    if (record.restartAt && !record.deletionRequestedAt) {
      this.arm(name, Date.parse(record.restartAt) - Date.now());
      return;
    }
    const seconds = timeoutSeconds(record);
    if (seconds !== undefined && record.state.phase === 'running' && !record.stop) {
      this.arm(name, Date.parse(record.state.startedAt) + seconds * 1000 - Date.now() + 1);
      return;
    }
    if (record.state.phase === 'waiting' && record.state.reason === RUNTIME_UNAVAILABLE) return; // armed by waitForRuntime
    clearTimeout(this.timers.get(name));
    this.timers.delete(name);
  }

  private arm(name: string, delayMs: number): void {
    if (this.closed) return;
    clearTimeout(this.timers.get(name));
    const timer = setTimeout(() => {
      this.timers.delete(name);
      this.schedule(name);
    }, Math.min(Math.max(delayMs, 0), MAX_TIMER_MS));
    timer.unref();
    this.timers.set(name, timer);
  }
}

/** The order of every list the manager hands out (names are unique). */
const byName = (a: TaskRecord, b: TaskRecord): number => (a.name < b.name ? -1 : 1);

function isUnavailable(error: unknown): boolean {
  return error instanceof TaskError && error.kind === 'Unavailable';
}
