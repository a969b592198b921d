// What the admission writer's thread does with one job (admission-worker.ts
// is its wiring), with synchronous system calls: make new tasks'
// directories; or write each file atomically and durably, then fsync the
// directories, where the first failure ends the job.
import { mkdirSync } from 'node:fs';
import { errorMessage } from '../errors.js';
import { fsyncDirectorySync, writeFileAtomicSync } from '../util/atomic-file.js';
import { errnoOf } from '../util/errno.js';
import type { AdmissionFailure, AdmissionJob, FromAdmissionWorker, MkdirJob, ToAdmissionWorker } from './admission-protocol.js';

export const TASK_DIR_MODE = 0o755;

/** The reply to a job. */
export function runJob(job: ToAdmissionWorker): FromAdmissionWorker {
  if (job.type === 'mkdir') return { type: 'made', id: job.id, failures: makeDirs(job) };
  return { type: 'done', id: job.id, failure: runAdmissionJob(job) };
}

/** Each directory on its own: one that exists already (a leftover) does not stop the others. */
function makeDirs(job: MkdirJob): (AdmissionFailure | undefined)[] {
  return job.dirs.map((dir) => {
    try {
      mkdirSync(dir, { mode: TASK_DIR_MODE });
      return undefined;
    } catch (error) {
      return failureOf(error);
    }
  });
}

function failureOf(error: unknown, file?: number): AdmissionFailure {
  const code = errnoOf(error);
  return { message: errorMessage(error), ...(code && { code }), ...(file !== undefined && { file }) };
}

/** The job's writes, then its directory fsyncs; a failed write leaves no temporary file. */
function runAdmissionJob(job: AdmissionJob): AdmissionFailure | undefined {
  let file: number | undefined;
  try {
    for (file = 0; file < job.files.length; file++) {
      const { path, body } = job.files[file]!;
      writeFileAtomicSync(path, body, { syncDirectory: false });
    }
    file = undefined;
    for (const dir of job.syncDirs) fsyncDirectorySync(dir);
    return undefined;
  } catch (error) {
    return failureOf(error, file);
  }
}
