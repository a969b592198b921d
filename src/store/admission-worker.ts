// The worker thread of admission-writer.ts: runs admission jobs
// (admission-job.ts: directories, records) one at a time, as they come. Blocking is its job: the
// main thread gets one message back instead of a trip through libuv's pool
// and an event-loop turn for each open, write, fsync, close, rename and
// directory fsync (8 ms for a Create on a busy loop, against 1.5 ms here).
import { parentPort } from 'node:worker_threads';
import { runJob } from './admission-job.js';
import type { ToAdmissionWorker } from './admission-protocol.js';

const port = parentPort;
if (!port) throw new Error('admission-worker.ts runs as a worker thread (see admission-writer.ts)');

port.on('message', (job: ToAdmissionWorker) => port.postMessage(runJob(job)));
port.postMessage({ type: 'ready' });
