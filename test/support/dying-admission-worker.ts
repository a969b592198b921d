// An admission writer worker (as src/store/admission-worker.ts) that dies in
// the middle of writing the record of a task named "crash-*": it leaves a
// temporary file in the task's directory, as a thread killed mid-write
// would, then throws out of its message handler, which ends the thread.
// Every other job it runs as the real worker does.
import { writeFileSync } from 'node:fs';
import { parentPort } from 'node:worker_threads';
import { runAdmissionJob } from '../../src/store/admission-job.js';
import type { AdmissionJob, FromAdmissionWorker } from '../../src/store/admission-protocol.js';
import { TEMP_MARKER } from '../../src/util/atomic-file.js';

const port = parentPort!;
const post = (message: FromAdmissionWorker) => port.postMessage(message);
port.on('message', (job: AdmissionJob) => {
  const dying = job.files.find(({ path }) => path.includes('/crash-'));
  if (dying) {
    writeFileSync(`${dying.path}${TEMP_MARKER}dying`, dying.body.slice(0, 10));
    throw new Error('admission writer killed mid-write (test)');
  }
  post({ type: 'done', id: job.id, failure: runAdmissionJob(job) });
});
post({ type: 'ready' });
