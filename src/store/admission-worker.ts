// The worker thread of admission-writer.ts: runs admission jobs
// (admission-job.ts) one at a time, as they come. Blocking is its job: the
// main thread gets one message back instead of a trip through libuv's pool
// and an event-loop turn for each open, write, fsync, close, rename and
// directory fsync (8 ms for a Create on a busy loop, against 1.5 ms here).
import { parentPort } from 'node:worker_threads';
import { runAdmissionJob } from './admission-job.js';
import type { AdmissionJob, FromAdmissionWorker } from './admission-protocol.js';

const port = parentPort;
if (!port) throw new Error('admission-worker.ts runs as a worker thread (see admission-writer.ts)');

const post = (message: FromAdmissionWorker) => port.postMessage(message);
port.on('message', (job: AdmissionJob) => post({ type: 'done', id: job.id, failure: runAdmissionJob(job) }));
post({ type: 'ready' });
