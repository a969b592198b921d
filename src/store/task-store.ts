// Persists one directory per task under the data dir:
//   <dataDir>/<name>/task.json   the task record (written atomically)
//   <dataDir>/<name>/...         runtime files (shim state, logs)
// A record that cannot be read is reported by load(); the manager stops what
// it owned and then moves it to <dataDir>/.quarantine/, so it neither crashes
// the executor nor blocks its name for ever.
//
// Writes that arrive together run together (bounded), so their fsyncs share
// the file system's journal commits instead of queueing one behind another,
// and a batch of new task directories costs one fsync of the data dir.
// A small admission (a Create, a SetTasks of a few tasks) instead makes its
// directories at once and writes its records in one trip to a thread of its
// own (admission-writer.ts): a client waits for it, on a busy event loop.
import { mkdirSync } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Semaphore } from 'async-mutex';
import type { Logger } from 'pino';
import { errorMessage, TaskError } from '../errors.js';
import { validateName, validateSpec } from '../model/validation.js';
import { runtimeRefProblem, type TaskRecord } from '../model/task.js';
import { fsyncDirectoriesAfter, fsyncDirectory, TEMP_MARKER, writeFileAtomic } from '../util/atomic-file.js';
import { errnoOf, isErrno } from '../util/errno.js';
import { AdmissionWriteError, AdmissionWriter, AdmissionWriterUnavailable } from './admission-writer.js';

const RECORD_FILE = 'task.json';
const QUARANTINE_DIR = '.quarantine';
const FORMAT_VERSION = 1;
/** File operations in flight at once: enough to keep the disk's queue full, few enough to bound memory and fds. */
const IO_CONCURRENCY = 32;
/** Directories commitNew opens ahead of its fsyncs, outside the I/O bound (a few Creates' worth). */
const EARLY_OPENED_DIRS = 8;
/**
 * New tasks' directories and first records go before other waiting file
 * operations: a client waits for them (Create, SetTasks), while a mass
 * delete queues thousands of saves and removals that nobody waits for one
 * by one. In order, a Create during a delete of 1000 waited 2 s for them.
 */
const ADMISSION_PRIORITY = 1;
/**
 * Admissions of at most this many tasks make their directories synchronously
 * (a mkdir without fsync: 1.0 ms median on the test VM's ext4, which beat a
 * trip to the admission writer's thread and back by about 0.6 ms per Create)
 * and write their records in the admission writer's thread. Larger batches (a SetTasks of hundreds)
 * go through the bounded async path, whose writes and fsyncs overlap.
 */
const ONE_TRIP_MAX = 8;
const DIR_MODE = 0o755;

export interface TaskStoreOptions {
  /** The admission writer's worker module (tests give one that fails on purpose). */
  admissionWorker?: URL;
}

export interface QuarantinedRecord {
  name: string;
  reason: string;
  movedTo: string;
}

export interface UnreadableRecord {
  name: string;
  reason: string;
  /**
   * No record file at all: the directory of an admission interrupted between
   * mkdir and the first write, which no client was ever told about.
   */
  missing: boolean;
}

export interface LoadResult {
  records: TaskRecord[];
  /** Task directories whose record cannot be read; see quarantine(). */
  unreadable: UnreadableRecord[];
}

export class TaskStore {
  private readonly io = new Semaphore(IO_CONCURRENCY);
  private readonly writer: AdmissionWriter;

  constructor(
    readonly root: string,
    private readonly log: Logger,
    options: TaskStoreOptions = {},
  ) {
    this.writer = new AdmissionWriter(log, options.admissionWorker);
    // Its start-up (tens of ms; hundreds from source, through tsx) is nobody's Create.
    this.writer.warm();
  }

  /** Ends the admission writer's thread (admissions after this take the async path). */
  async close(): Promise<void> {
    await this.writer.close();
  }

  /** Fails with a clear message when the data dir cannot be created or written. */
  static async ensureWritable(root: string): Promise<void> {
    await mkdir(root, { recursive: true, mode: 0o755 });
    const probe = join(root, `.write-test-${process.pid}`);
    await writeFile(probe, '');
    await rm(probe, { force: true });
  }

  taskDir(name: string): string {
    // Names are validated DNS-1123 subdomains, so this cannot leave the root;
    // checked again here because this is where a path is made from input.
    validateName(name);
    return join(this.root, name);
  }

  /** Reads every record, in parallel; the result is sorted by name. */
  async load(): Promise<LoadResult> {
    await TaskStore.ensureWritable(this.root);
    const entries = await readdir(this.root, { withFileTypes: true });
    const records: TaskRecord[] = [];
    const unreadable: UnreadableRecord[] = [];
    await Promise.all(
      entries
        .filter((entry) => entry.isDirectory() && !entry.name.startsWith('.'))
        .map((entry) =>
          this.io.runExclusive(async () => {
            try {
              await this.removeTempFiles(join(this.root, entry.name));
              records.push(await this.readRecord(entry.name));
            } catch (error) {
              const missing = isErrno(error, 'ENOENT');
              unreadable.push({ name: entry.name, reason: errorMessage(error), missing });
            }
          }),
        ),
    );
    records.sort((a, b) => (a.name < b.name ? -1 : 1));
    return { records, unreadable };
  }

  /**
   * Makes the (empty) directories of new tasks, so a backend can get ready in
   * one while commitNew writes its record. Nothing in it counts until then:
   * a directory without a record is removed at the next start.
   */
  async prepareNew(records: readonly TaskRecord[]): Promise<void> {
    const now = records.length <= ONE_TRIP_MAX;
    const made: string[] = [];
    try {
      await Promise.all(
        records.map((record) => {
          const make = async () => {
            const dir = this.taskDir(record.name);
            await makeTaskDir(dir, now).catch((error: unknown) => {
              throw storeError(error, `cannot create the directory of task "${record.name}"`);
            });
            made.push(dir);
          };
          return now ? make() : this.admissionIo(make);
        }),
      );
    } catch (error) {
      await this.removeUnadmitted(made);
      throw error;
    }
  }

  /**
   * Writes the first records of tasks whose directories prepareNew made. The
   * fsyncs that make them durable, of each new directory (its record's name)
   * and of the data dir (the new directories' names), are issued together, so
   * the file system can commit them as one. On failure the directories are
   * removed again.
   */
  async commitNew(records: readonly TaskRecord[]): Promise<void> {
    const dirs = records.map((record) => this.taskDir(record.name));
    try {
      const inOneTrip = records.length <= ONE_TRIP_MAX && this.writer.available && (await this.commitInOneTrip(records, dirs));
      if (!inOneTrip) await this.commitBounded(records, dirs);
    } catch (error) {
      await this.removeUnadmitted(dirs);
      throw error;
    }
  }

  /**
   * The admission writer's thread writes the records and fsyncs the
   * directories, the same steps in the same order. False: no thread could
   * run it and nothing was written; the async path must.
   */
  private async commitInOneTrip(records: readonly TaskRecord[], dirs: readonly string[]): Promise<boolean> {
    const files = records.map((record, i) => ({ path: join(dirs[i]!, RECORD_FILE), body: recordBody(record) }));
    try {
      await this.writer.write(files, [this.root, ...dirs]);
      return true;
    } catch (error) {
      if (error instanceof AdmissionWriterUnavailable) return false;
      const file = error instanceof AdmissionWriteError ? error.file : undefined;
      throw storeError(error, file === undefined ? 'cannot save the new tasks' : `cannot save task "${records[file]!.name}"`);
    }
  }

  private async commitBounded(records: readonly TaskRecord[], dirs: readonly string[]): Promise<void> {
    const written = Promise.all(records.map((record) => this.admissionIo(() => this.write(record, { syncDirectory: false }))));
    const toSync = [this.root, ...dirs];
    // A small batch's directories are opened while its records are written, so that their fsyncs
    // follow at once; a large batch's are bounded like any I/O.
    const synced =
      toSync.length <= EARLY_OPENED_DIRS
        ? fsyncDirectoriesAfter(toSync, written)
        : written.then(() => Promise.all(toSync.map((dir) => this.admissionIo(() => fsyncDirectory(dir)))));
    synced.catch(() => undefined); // a failed write is the error to report; see below
    await written;
    await synced.catch((error: unknown) => {
      throw storeError(error, 'cannot save the new tasks');
    });
  }

  /**
   * Replaces a task's record atomically. A task directory removed from under
   * the executor is made again, so one damaged task never blocks the others.
   */
  async save(record: TaskRecord): Promise<void> {
    await this.io.runExclusive(async () => {
      try {
        await this.write(record);
      } catch (error) {
        if ((error as TaskError).cause && causeCode(error) === 'ENOENT') {
          this.log.warn({ task: record.name }, 'the task directory was removed from under the executor; writing its record again');
          await mkdir(this.taskDir(record.name), { recursive: true, mode: DIR_MODE });
          await this.write(record);
          return;
        }
        throw error;
      }
    });
  }

  /** Removes a task's directory; among the bounded file operations, as a mass delete removes a thousand at once. */
  async remove(name: string): Promise<void> {
    await this.io.runExclusive(() => rm(this.taskDir(name), { recursive: true, force: true }));
  }

  /** Moves an unreadable task directory aside, freeing its name; the move is logged with the reason. */
  async quarantine(name: string, reason: string): Promise<QuarantinedRecord> {
    const target = join(this.root, QUARANTINE_DIR, `${name}.${new Date().toISOString().replace(/[:.]/g, '-')}`);
    await mkdir(join(this.root, QUARANTINE_DIR), { recursive: true });
    await rename(join(this.root, name), target);
    this.log.error({ task: name, reason, movedTo: target }, 'unreadable task record quarantined; the name is free again');
    return { name, reason, movedTo: target };
  }

  /**
   * Removes the directories of a failed admission. A removal that fails too
   * (the data dir turned read-only) is logged, not thrown: the admission's
   * own error is what the client must see, and a directory without a record
   * is removed at the next start.
   */
  private async removeUnadmitted(dirs: readonly string[]): Promise<void> {
    await Promise.all(
      dirs.map((dir) =>
        rm(dir, { recursive: true, force: true }).catch((error: unknown) => {
          this.log.warn({ dir, err: error }, 'cannot remove the directory of a failed admission; the next start removes it');
        }),
      ),
    );
  }

  private admissionIo<T>(work: () => Promise<T>): Promise<T> {
    return this.io.runExclusive(work, 1, ADMISSION_PRIORITY);
  }

  private async write(record: TaskRecord, options?: { syncDirectory: boolean }): Promise<void> {
    try {
      await writeFileAtomic(join(this.taskDir(record.name), RECORD_FILE), recordBody(record), options);
    } catch (error) {
      throw storeError(error, `cannot save task "${record.name}"`);
    }
  }

  private async readRecord(dirName: string): Promise<TaskRecord> {
    const raw = await readFile(join(this.root, dirName, RECORD_FILE), 'utf8');
    const parsed = JSON.parse(raw) as { version?: unknown; task?: TaskRecord };
    if (parsed.version !== FORMAT_VERSION) throw new Error(`unsupported record version ${String(parsed.version)}`);
    const record = parsed.task;
    if (!record || typeof record !== 'object') throw new Error('record has no task');
    if (record.name !== dirName) throw new Error(`record names task ${JSON.stringify(record.name)}, not its directory`);
    validateName(record.name);
    validateSpec(record.spec);
    if (!record.state || !['waiting', 'running', 'terminated'].includes(record.state.phase)) {
      throw new Error('record has no valid state');
    }
    if (typeof record.createdAt !== 'string') throw new Error('record has no creation time');
    // The handle inside is its backend's to read (RuntimeRegistry.bind); only the envelope is checked here.
    const runtimeProblem = record.runtime === undefined ? undefined : runtimeRefProblem(record.runtime);
    if (runtimeProblem) throw new Error(`record has no valid runtime reference: ${runtimeProblem}`);
    return record;
  }

  private async removeTempFiles(dir: string): Promise<void> {
    for (const file of await readdir(dir)) {
      if (file.includes(TEMP_MARKER)) await rm(join(dir, file), { force: true });
    }
  }
}

function recordBody(record: TaskRecord): string {
  return JSON.stringify({ version: FORMAT_VERSION, task: record }, null, 2) + '\n';
}

/**
 * Makes a new task's directory; `now`: with a synchronous mkdir (no fsync; 1.0 ms
 * median on the CI VM's ext4, still 0.6 ms less than a trip to the admission
 * writer's thread or libuv's pool for a Create), blocking the loop for that long.
 */
async function makeTaskDir(dir: string, now: boolean): Promise<void> {
  const make = async () => {
    if (now) mkdirSync(dir, { mode: DIR_MODE });
    else await mkdir(dir, { mode: DIR_MODE });
  };
  try {
    await make();
  } catch (error) {
    if (!isErrno(error, 'EEXIST')) throw error;
    // A directory without a loaded record is a leftover of a crash between
    // mkdir and the first write: nothing in it belongs to a known task.
    await rm(dir, { recursive: true, force: true });
    await make();
  }
}

function causeCode(error: unknown): string | undefined {
  const cause = error instanceof Error && error.cause !== undefined ? error.cause : error;
  return errnoOf(cause);
}

/**
 * A store failure as the caller should see it: a full data dir is a resource
 * problem, a read-only one makes the executor unavailable; both say what an
 * operator must do. Paths stay in the executor's log, not in client messages.
 */
function storeError(error: unknown, what: string): Error {
  const code = causeCode(error);
  if (code === 'ENOSPC' || code === 'EDQUOT') {
    return new TaskError('ResourceExhausted', `${what}: the executor's data dir has no space left; free space on the node`, { cause: error });
  }
  if (code === 'EROFS' || code === 'EACCES' || code === 'EPERM') {
    return new TaskError('Unavailable', `${what}: the executor cannot write its data dir (${code}); an operator must make it writable`, {
      cause: error,
    });
  }
  if (error instanceof TaskError) return error;
  return new TaskError('Internal', `${what}: ${code ?? errorMessage(error)}`, { cause: error });
}
