// src/api/server-stream.ts against a real grpc-js server and client: what the
// adapter promises about when a written message leaves the process.
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { test } from 'node:test';
import { Worker } from 'node:worker_threads';
import { type handleServerStreamingCall, Server, ServerCredentials } from '@grpc/grpc-js';
import pino from 'pino';
import { serverStream } from '../../src/api/server-stream.js';

const identity = (b: Buffer) => b;
const method = {
  path: '/test.Stream/Messages',
  requestStream: false,
  responseStream: true,
  requestSerialize: identity,
  requestDeserialize: identity,
  responseSerialize: identity,
  responseDeserialize: identity,
} as const;

/** A grpc-js client in a worker thread (its own event loop): sets flag[0] to 1 once the first message arrives, and posts every message's text. */
const CLIENT = `
const { workerData, parentPort } = require('node:worker_threads');
const grpc = require(workerData.grpc);
const id = (b) => b;
const Client = grpc.makeGenericClientConstructor({
  messages: { path: workerData.path, requestStream: false, responseStream: true, requestSerialize: id, requestDeserialize: id, responseSerialize: id, responseDeserialize: id },
});
const client = new Client(workerData.address, grpc.credentials.createInsecure());
const flag = new Int32Array(workerData.flag);
const call = client.messages(Buffer.alloc(0));
call.on('data', (message) => {
  Atomics.store(flag, 0, 1);
  Atomics.notify(flag, 0);
  parentPort.postMessage(message.toString());
});
call.on('error', (error) => parentPort.postMessage('error: ' + error.message));
call.on('end', () => { client.close(); parentPort.postMessage('end'); });
`;

test('a written message reaches the client before the handler is asked for the next one, even if producing it blocks the event loop', async () => {
  const flag = new Int32Array(new SharedArrayBuffer(4));
  const server = new Server();
  const handler = serverStream<Buffer, Buffer>(async function* () {
    yield Buffer.from('first');
    // Block this thread (as synchronous work before the next message does)
    // until the client, on its own thread, has received the first message.
    const outcome = Atomics.wait(flag, 0, 0, 10_000);
    yield Buffer.from(outcome === 'timed-out' ? 'first message held back' : 'first message delivered');
  }, pino({ level: 'silent' }));
  server.addService({ messages: method }, { messages: handler as handleServerStreamingCall<unknown, unknown> });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (error, bound) => (error ? reject(error) : resolve(bound))),
  );
  const worker = new Worker(CLIENT, {
    eval: true,
    workerData: { grpc: createRequire(import.meta.url).resolve('@grpc/grpc-js'), path: method.path, address: `127.0.0.1:${port}`, flag: flag.buffer },
  });
  try {
    const received: string[] = [];
    await new Promise<void>((resolve, reject) => {
      worker.on('message', (text: string) => (text === 'end' ? resolve() : received.push(text)));
      worker.on('error', reject);
    });
    assert.deepEqual(received, ['first', 'first message delivered']);
  } finally {
    await worker.terminate();
    server.forceShutdown();
  }
});
