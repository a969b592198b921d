// A Create's first record written in one trip off the main thread. Through
// fs/promises, each step of an atomic, durable write (open, write, fsync,
// close, rename, then two directory fsyncs) is a trip through libuv's
// thread pool and an event-loop turn, on a loop that is busy with the start
// at the same time: 8 ms for a Create, against 1.5 ms for the same system
// calls made synchronously in one go. A dedicated worker thread
// (admission-worker.ts) makes them synchronously and answers once.
//
// - One thread, started ahead of the first admission (warm()) or on demand;
//   jobs queue in its port and run one at a time, in order.
// - It never keeps the process alive by itself: it is referenced only while
//   a write is under way, and close() ends it.
// - A thread that dies (an uncaught error, terminate) rejects every write it
//   had not confirmed, once it has stopped (so nothing of it runs after the
//   caller cleans up), and the next write gets a new thread; both are logged.
//   Those close() ended fail UNAVAILABLE (shutting down).
// - A thread that cannot start (its module fails to load, no thread can be
//   made) ran none of its jobs: they, and every write for the next
//   START_RETRY_MS, fail with AdmissionWriterUnavailable, which the store
//   answers by taking the async path (slower, same result), so a writer
//   that never starts never fails a Create.
import type { Worker } from 'node:worker_threads';
import type { Logger } from 'pino';
import { errorMessage, TaskError } from '../errors.js';
import { siblingModuleUrl, startModuleWorker } from '../util/module-worker.js';
import type { AdmissionJob, FromAdmissionWorker } from './admission-protocol.js';

const WORKER_URL = siblingModuleUrl(import.meta.url, 'admission-worker');

/** A failed write as the worker saw it: the system call's `code`, and which file (undefined: a directory's fsync). */
export class AdmissionWriteError extends Error {
  constructor(
    message: string,
    readonly code: string | undefined,
    readonly file: number | undefined,
  ) {
    super(message);
    this.name = 'AdmissionWriteError';
  }
}

/** The thread could not start and ran none of the write: take another way (the store's async path). */
export class AdmissionWriterUnavailable extends Error {
  constructor(why: string) {
    super(`the admission writer thread could not start (${why})`);
    this.name = 'AdmissionWriterUnavailable';
  }
}

/** How long writes take another way after a thread could not start, before the next one is tried. */
export const START_RETRY_MS = 30_000;

interface Thread {
  readonly worker: Worker;
  readonly pending: Map<number, { resolve: () => void; reject: (error: Error) => void }>;
  ready: boolean;
  failure: Error | undefined;
}

export class AdmissionWriter {
  private thread: Thread | undefined;
  private nextId = 1;
  private closed = false;
  /** performance.now() before which no thread is started (one could not start). */
  private startAgainAt = 0;

  constructor(
    private readonly log: Logger,
    /** The worker's module; a test gives one that fails on purpose. */
    private readonly workerUrl: URL = WORKER_URL,
  ) {}

  /** False once closed, and for a while after a thread could not start: writes must take another way then. */
  get available(): boolean {
    return !this.closed && performance.now() >= this.startAgainAt;
  }

  /** Starts the thread now, so that the first admission does not wait for its start-up (tens of ms). */
  warm(): void {
    if (!this.available) return;
    try {
      this.current();
    } catch {
      // Logged, and the writes take another way for a while (cannotStart).
    }
  }

  /**
   * Writes each file atomically and durably (temporary file, fsync, rename),
   * in order, then fsyncs `syncDirs`; resolves once all of it is done.
   * Rejects with an AdmissionWriteError when a step failed (the failed
   * file's temporary file is gone), with AdmissionWriterUnavailable when no
   * thread could run it (nothing was written), or with an Error when the
   * thread died.
   */
  write(files: AdmissionJob['files'], syncDirs: string[]): Promise<void> {
    if (this.closed) return Promise.reject(new Error('the admission writer is closed'));
    if (!this.available) return Promise.reject(new AdmissionWriterUnavailable(`one failed to start less than ${START_RETRY_MS / 1000} s ago`));
    let thread: Thread;
    try {
      thread = this.current();
    } catch (error) {
      return Promise.reject(error);
    }
    const id = this.nextId++;
    return new Promise<void>((resolve, reject) => {
      if (thread.pending.size === 0) thread.worker.ref();
      thread.pending.set(id, { resolve, reject });
      thread.worker.postMessage({ id, files, syncDirs } satisfies AdmissionJob);
    });
  }

  /** Ends the thread; writes it had not confirmed are rejected UNAVAILABLE (shutting down). */
  async close(): Promise<void> {
    this.closed = true;
    const thread = this.thread;
    this.thread = undefined;
    if (thread) await thread.worker.terminate();
  }

  private current(): Thread {
    if (this.thread) return this.thread;
    let worker: Worker;
    try {
      worker = startModuleWorker(this.workerUrl);
    } catch (error) {
      throw this.cannotStart(error);
    }
    worker.unref();
    const thread: Thread = { worker, pending: new Map(), ready: false, failure: undefined };
    this.thread = thread;
    worker.on('message', (message: FromAdmissionWorker) => {
      if (message.type === 'ready') {
        thread.ready = true;
        // Again: an unref() before the thread is online does not hold (Node 20: an idle executor's
        // store kept a test process from exiting).
        if (thread.pending.size === 0) worker.unref();
        return;
      }
      const waiting = thread.pending.get(message.id);
      if (!waiting) return;
      thread.pending.delete(message.id);
      if (thread.pending.size === 0) worker.unref();
      const { failure } = message;
      if (failure) waiting.reject(new AdmissionWriteError(failure.message, failure.code, failure.file));
      else waiting.resolve();
    });
    // 'exit' follows: the writes are rejected there, once the thread can no longer touch a file.
    worker.on('error', (error) => {
      thread.failure = error;
    });
    worker.on('exit', (code) => this.ended(thread, code));
    return thread;
  }

  private ended(thread: Thread, code: number): void {
    if (this.thread === thread) this.thread = undefined;
    const why = thread.failure ? errorMessage(thread.failure) : `exit code ${code}`;
    const lost = [...thread.pending.values()];
    thread.pending.clear();
    if (!thread.ready && !this.closed) {
      // It ran none of its jobs (it answers 'ready' before it takes one): they may take another way.
      const unavailable = this.cannotStart(thread.failure ?? new Error(`exit code ${code}`));
      for (const { reject } of lost) reject(unavailable);
      return;
    }
    // Ended by close(): the executor is shutting down, which the client must be told (not INTERNAL), and may retry.
    const error = this.closed
      ? new TaskError('Unavailable', 'the executor is shutting down before the task was admitted; create it again once the executor is back')
      : new Error(`the admission writer thread ended (${why}) before the record was durable`);
    for (const { reject } of lost) reject(error);
    if (this.closed) return;
    this.log.error(
      { err: thread.failure, exitCode: code, writesFailed: lost.length },
      'the admission writer thread ended; its unconfirmed writes failed (their Creates got an error), a new thread takes the next ones',
    );
    this.warm();
  }

  /** A thread could not start: writes take another way for START_RETRY_MS, then the next write tries again. */
  private cannotStart(error: unknown): AdmissionWriterUnavailable {
    this.startAgainAt = performance.now() + START_RETRY_MS;
    this.log.error(
      { err: error },
      `the admission writer thread could not start; Creates write their records on the slower async path, and a new thread is tried in ${START_RETRY_MS / 1000} s`,
    );
    return new AdmissionWriterUnavailable(errorMessage(error));
  }
}
