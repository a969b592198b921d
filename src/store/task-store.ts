// Persists one directory per task under the data dir:
//   <dataDir>/<name>/task.json   the task record (written atomically)
//   <dataDir>/<name>/...         runtime files (shim state, logs)
// A record that cannot be read is moved to <dataDir>/.quarantine/ and
// reported, so it neither crashes the executor nor blocks its name for ever.
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { errorMessage, TaskError } from '../errors.js';
import { validateName, validateSpec } from '../manager/validation.js';
import type { TaskRecord } from '../model/task.js';
import { TEMP_MARKER, writeFileAtomic } from '../util/atomic-file.js';

const RECORD_FILE = 'task.json';
const QUARANTINE_DIR = '.quarantine';
const FORMAT_VERSION = 1;

export interface QuarantinedRecord {
  name: string;
  reason: string;
  movedTo: string;
}

export interface LoadResult {
  records: TaskRecord[];
  quarantined: QuarantinedRecord[];
}

export class TaskStore {
  constructor(
    readonly root: string,
    private readonly log: Logger,
  ) {}

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

  async load(): Promise<LoadResult> {
    await TaskStore.ensureWritable(this.root);
    const entries = await readdir(this.root, { withFileTypes: true });
    const records: TaskRecord[] = [];
    const quarantined: QuarantinedRecord[] = [];
    for (const entry of entries) {
      if (!entry.isDirectory() || entry.name.startsWith('.')) continue;
      const dir = join(this.root, entry.name);
      await this.removeTempFiles(dir);
      try {
        records.push(await this.readRecord(entry.name));
      } catch (error) {
        quarantined.push(await this.quarantine(entry.name, errorMessage(error)));
      }
    }
    records.sort((a, b) => (a.name < b.name ? -1 : 1));
    return { records, quarantined };
  }

  /** Makes the task's directory and writes its first record. */
  async create(record: TaskRecord): Promise<void> {
    const dir = this.taskDir(record.name);
    // A directory without a loaded record is a leftover of a crash between
    // mkdir and the first write: nothing in it belongs to a known task.
    await rm(dir, { recursive: true, force: true });
    try {
      await mkdir(dir, { mode: 0o755 });
    } catch (error) {
      throw asStoreError(error, `cannot create the directory of task "${record.name}"`);
    }
    try {
      await this.save(record);
    } catch (error) {
      await rm(dir, { recursive: true, force: true });
      throw error;
    }
  }

  async save(record: TaskRecord): Promise<void> {
    const body = JSON.stringify({ version: FORMAT_VERSION, task: record }, null, 2) + '\n';
    try {
      await writeFileAtomic(join(this.taskDir(record.name), RECORD_FILE), body);
    } catch (error) {
      throw asStoreError(error, `cannot save task "${record.name}"`);
    }
  }

  async remove(name: string): Promise<void> {
    await rm(this.taskDir(name), { recursive: true, force: true });
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
    return record;
  }

  private async quarantine(name: string, reason: string): Promise<QuarantinedRecord> {
    const target = join(this.root, QUARANTINE_DIR, `${name}.${new Date().toISOString().replace(/[:.]/g, '-')}`);
    await mkdir(join(this.root, QUARANTINE_DIR), { recursive: true });
    await rename(join(this.root, name), target);
    this.log.error({ task: name, reason, movedTo: target }, 'unreadable task record quarantined; the name is free again');
    return { name, reason, movedTo: target };
  }

  private async removeTempFiles(dir: string): Promise<void> {
    for (const file of await readdir(dir)) {
      if (file.includes(TEMP_MARKER)) await rm(join(dir, file), { force: true });
    }
  }
}

/** A full data dir is the caller's resource problem, reported as such; anything else stays internal. */
function asStoreError(error: unknown, what: string): Error {
  const code = (error as NodeJS.ErrnoException).code;
  if (code === 'ENOSPC' || code === 'EDQUOT') {
    return new TaskError('ResourceExhausted', `${what}: the data dir has no space left (${errorMessage(error)})`, { cause: error });
  }
  return error instanceof Error ? error : new Error(String(error));
}
