// What the admission writer's thread does with one job (admission-worker.ts
// is its wiring): each file written atomically and durably, then the
// directories fsynced, with synchronous system calls; the first failure ends it.
import { errorMessage } from '../errors.js';
import { fsyncDirectorySync, writeFileAtomicSync } from '../util/atomic-file.js';
import { errnoOf } from '../util/errno.js';
import type { AdmissionFailure, AdmissionJob } from './admission-protocol.js';

/** The job's writes, then its directory fsyncs; a failed write leaves no temporary file. */
export function runAdmissionJob(job: AdmissionJob): AdmissionFailure | undefined {
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
    const code = errnoOf(error);
    return { message: errorMessage(error), ...(code && { code }), ...(file !== undefined && { file }) };
  }
}
