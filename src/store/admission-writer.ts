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

  constructor(
    private readonly log: Logger,
    /** The worker's module; a test gives one that fails on purpose. */
    private readonly workerUrl: URL = WORKER_URL,
  ) {}

  /** False once closed: writes must take another way then. */
  get open(): boolean {
    return !this.closed;
  }

  /** Starts the thread now, so that the first admission does not wait for its start-up (tens of ms). */
  warm(): void {
    if (!this.closed) this.current();
  }

  /**
   * Writes each file atomically and durably (temporary file, fsync, rename),
   * in order, then fsyncs `syncDirs`; resolves once all of it is done.
   * Rejects with an AdmissionWriteError when a step failed (the failed
   * file's temporary file is gone), or with an Error when the thread died.
   */
  write(files: AdmissionJob['files'], syncDirs: string[]): Promise<void> {
    if (this.closed) return Promise.reject(new Error('the admission writer is closed'));
    const thread = this.current();
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
    const worker = startModuleWorker(this.workerUrl);
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
    // A thread that failed before it was ready would fail again at once: the next write starts one instead.
    if (thread.ready) this.warm();
  }
}
