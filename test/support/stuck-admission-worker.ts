// An admission writer worker (as src/store/admission-worker.ts) whose writes
// never finish, as one blocked on a slow disk would be: it takes a job and
// blocks its thread. Only terminate() (the store's close) ends it.
import { parentPort } from 'node:worker_threads';
import type { FromAdmissionWorker } from '../../src/store/admission-protocol.js';

const port = parentPort!;
port.on('message', () => {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0);
});
port.postMessage({ type: 'ready' } satisfies FromAdmissionWorker);
