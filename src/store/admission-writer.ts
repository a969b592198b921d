// A Create's first record written in one trip off the main thread. Through
// fs/promises, each step of an atomic, durable write (open, write, fsync,
// close, rename, then two directory fsyncs) is a trip through libuv's
// thread pool and an event-loop turn, on a loop that is busy with the start
// at the same time: 8 ms for a Create, against 1.5 ms for the same system
// calls made synchronously in one go. A dedicated worker thread
// (admission-worker.ts) makes them synchronously and answers once.
//
// - The new tasks' directories are made there too, a trip of their own (a
//   backend gets ready in one while the record is written): a mkdir takes
//   about 1 ms on the test VM's ext4, which a mkdirSync would block the loop for.
// - One thread, started ahead of the first admission (warm()) or on demand;
//   jobs queue in its port and run one at a time, in order.
// - It never keeps the process alive by itself: it is referenced only while
//   a write is under way, and close() ends it.
// - A thread that dies (an uncaught error, terminate) rejects every write it
//   had not confirmed, once it has stopped (so nothing of it runs after the
//   caller cleans up), and the next write gets a new thread; both are logged.
import type { Worker } from 'node:worker_threads';
import type { Logger } from 'pino';
import { errorMessage } from '../errors.js';
import { siblingModuleUrl, startModuleWorker } from '../util/module-worker.js';
import type { AdmissionFailure, AdmissionJob, FromAdmissionWorker, ToAdmissionWorker } from './admission-protocol.js';

type Reply = Exclude<FromAdmissionWorker, { type: 'ready' }>;

const WORKER_URL = siblingModuleUrl(import.meta.url, 'admission-worker');

/** A failed step as the worker saw it: the system call's `code`, and which file (undefined: a directory's fsync). */
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

type DistributiveOmit<T, K extends keyof T> = T extends unknown ? Omit<T, K> : never;

const writeError = (failure: AdmissionFailure) => new AdmissionWriteError(failure.message, failure.code, failure.file);

interface Thread {
  readonly worker: Worker;
  readonly pending: Map<number, { resolve: (reply: Reply) => void; reject: (error: Error) => void }>;
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
   * Makes each directory (no fsync: write()'s directory fsyncs make them
   * durable); resolves with each one's failure (undefined: made), in order.
   */
  async mkdirs(dirs: string[]): Promise<(AdmissionWriteError | undefined)[]> {
    const reply = await this.send({ type: 'mkdir', dirs });
    if (reply.type !== 'made') throw new Error(`the admission writer answered a mkdir with ${reply.type}`);
    return reply.failures.map((failure) => failure && writeError(failure));
  }

  /**
   * Writes each file atomically and durably (temporary file, fsync, rename),
   * in order, then fsyncs `syncDirs`; resolves once all of it is done.
   * Rejects with an AdmissionWriteError when a step failed (the failed
   * file's temporary file is gone), or with an Error when the thread died.
   */
  async write(files: AdmissionJob['files'], syncDirs: string[]): Promise<void> {
    const reply = await this.send({ type: 'commit', files, syncDirs });
    if (reply.type !== 'done') throw new Error(`the admission writer answered a commit with ${reply.type}`);
    if (reply.failure) throw writeError(reply.failure);
  }

  private send(job: DistributiveOmit<ToAdmissionWorker, 'id'>): Promise<Reply> {
    if (this.closed) return Promise.reject(new Error('the admission writer is closed'));
    const thread = this.current();
    const id = this.nextId++;
    return new Promise<Reply>((resolve, reject) => {
      if (thread.pending.size === 0) thread.worker.ref();
      thread.pending.set(id, { resolve, reject });
      thread.worker.postMessage({ ...job, id } satisfies ToAdmissionWorker);
    });
  }

  /** Ends the thread; writes it had not confirmed are rejected. */
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
        return;
      }
      const waiting = thread.pending.get(message.id);
      if (!waiting) return;
      thread.pending.delete(message.id);
      if (thread.pending.size === 0) worker.unref();
      waiting.resolve(message);
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
    for (const { reject } of lost) reject(new Error(`the admission writer thread ended (${why}) before the record was durable`));
    if (this.closed) return;
    this.log.error(
      { err: thread.failure, exitCode: code, writesFailed: lost.length },
      'the admission writer thread ended; its unconfirmed writes failed (their Creates got an error), a new thread takes the next ones',
    );
    // A thread that failed before it was ready would fail again at once: the next write starts one instead.
    if (thread.ready) this.warm();
  }
}
