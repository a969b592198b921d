// The worker thread of admission-writer.ts: writes a new task's first record
// with synchronous system calls, one job at a time. Blocking is its job: the
// main thread gets one message back instead of a trip through libuv's pool
// and an event-loop turn for each open, write, fsync, close, rename and
// directory fsync (8 ms for a Create on a busy loop, against 1.5 ms here).
import { parentPort } from 'node:worker_threads';
import { errorMessage } from '../errors.js';
import { fsyncDirectorySync, writeFileAtomicSync } from '../util/atomic-file.js';
import { errnoOf } from '../util/errno.js';
import type { AdmissionFailure, AdmissionJob, FromAdmissionWorker } from './admission-protocol.js';

const port = parentPort;
if (!port) throw new Error('admission-worker.ts runs as a worker thread (see admission-writer.ts)');

const post = (message: FromAdmissionWorker) => port.postMessage(message);

port.on('message', (job: AdmissionJob) => post({ type: 'done', id: job.id, failure: run(job) }));

/** The job's writes, then its directory fsyncs; the first failure ends it (a failed write leaves no temporary file). */
function run(job: AdmissionJob): AdmissionFailure | undefined {
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

post({ type: 'ready' });
