// When the gRPC server gives up on a connection (--grpc-max-connection-idle,
// --grpc-keepalive-time/-timeout), against a real executor with small values;
// and that healthy clients do not notice.
import assert from 'node:assert/strict';
import type { EventEmitter } from 'node:events';
import { createServer, connect as netConnect, type Server, type Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { connectivityState, credentials } from '@grpc/grpc-js';
import { TaskExecutorServiceClient, WatchEventType, type WatchResponse } from '../../gen/taskexecutor/v1/task_executor_service.js';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { splitHostPort } from '../../src/util/host-port.js';
import { apiFor, shell, startTestExecutor, tempDir, type TestExecutor } from '../support/executor.js';
import { bytesOf, openLogs } from '../support/logs-rpc.js';
import { waitFor } from '../support/wait.js';

const HTTP2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');

function hostPort(te: TestExecutor): [string, number] {
  return splitHostPort(te.executor.address, 'address', '127.0.0.1:1');
}

/** A raw TCP connection to the executor that writes `send` (if anything) and then nothing. */
function rawConnection(te: TestExecutor, send?: Buffer): { closed: () => boolean; socket: Socket } {
  const [host, port] = hostPort(te);
  const socket = netConnect(port, host);
  let closed = false;
  socket.on('close', () => (closed = true)).on('error', () => {});
  socket.on('data', () => {}); // the server's SETTINGS and GOAWAY
  if (send) socket.once('connect', () => socket.write(send));
  return { closed: () => closed, socket };
}

/** The executor's listeners of task events: one per open Watch (and per other open stream). */
const subscribers = (te: TestExecutor) => (te.executor.manager as unknown as { events: EventEmitter }).events.listenerCount('event');

// Each client its own connection: grpc-js otherwise shares one among channels to the same address.
const clientFor = (address: string) =>
  new TaskExecutorServiceClient(address, credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 });

describe('gRPC connections: idle timeout', () => {
  let te: TestExecutor;
  before(async () => {
    te = await startTestExecutor({ grpcMaxConnectionIdleMs: 300, grpcKeepaliveTimeMs: 0 });
  });
  after(async () => te.close());

  test('a TCP connection that sends nothing is closed by the server', async () => {
    const raw = rawConnection(te);
    await waitFor('the server to close the silent connection', raw.closed);
  });

  test('a connection that sends the HTTP/2 preface and then nothing is closed by the server', async () => {
    const raw = rawConnection(te, HTTP2_PREFACE);
    await waitFor('the server to close the connection after the preface', raw.closed);
  });

  test('a client whose connection was closed for idleness succeeds on its next call', async () => {
    const client = clientFor(te.executor.address);
    try {
      const api = apiFor(client);
      await api.listTasks();
      const channel = client.getChannel();
      assert.equal(channel.getConnectivityState(false), connectivityState.READY);
      await waitFor('the server to close the idle connection', () => channel.getConnectivityState(false) !== connectivityState.READY);
      await api.createTask({ task: shell('after-idle', 'true') });
      assert.equal((await api.getTask({ name: 'after-idle' })).task?.name, 'after-idle');
    } finally {
      client.close();
    }
  });

  test('an open Watch stream with no traffic for longer than the idle timeout keeps its connection and gets the next event', async () => {
    const watcherClient = clientFor(te.executor.address);
    const witness = clientFor(te.executor.address);
    try {
      const before = subscribers(te);
      const events: WatchResponse[] = [];
      let ended = false;
      const call = watcherClient.watch({ sendInitial: false });
      call.on('data', (e: WatchResponse) => events.push(e));
      call.on('error', () => (ended = true)).on('end', () => (ended = true));
      await waitFor('the Watch to be subscribed', () => subscribers(te) > before);
      // A connection made after the Watch's, with no call open: once the server
      // has closed it, the Watch's connection has been quiet longer than the timeout.
      await apiFor(witness).listTasks();
      await waitFor('the server to close the idle witness connection', () => witness.getChannel().getConnectivityState(false) !== connectivityState.READY);
      assert.equal(ended, false, 'the Watch stream ended');
      assert.equal(watcherClient.getChannel().getConnectivityState(false), connectivityState.READY);
      await te.api.createTask({ task: shell('while-watched', 'true') });
      await waitFor('the Watch to get the new task', () =>
        events.some((e) => e.type === WatchEventType.WATCH_EVENT_TYPE_ADDED && e.task?.name === 'while-watched'),
      );
      call.cancel();
    } finally {
      watcherClient.close();
      witness.close();
    }
  });

  test('a following Logs stream with no output for longer than the idle timeout keeps its connection and gets the next line', async () => {
    const gate = join(tempDir(), 'go');
    await te.api.createTask({ task: shell('quiet-writer', `echo early; while [ ! -e ${gate} ]; do sleep 0.05; done; echo late`) });
    const follower = { client: clientFor(te.executor.address) };
    const witness = clientFor(te.executor.address);
    try {
      const logs = openLogs(follower, { name: 'quiet-writer', follow: true });
      const text = () => logs.messages.map((m) => bytesOf(m).toString()).join('');
      await waitFor('the first line', () => text().includes('early'));
      await apiFor(witness).listTasks();
      await waitFor('the server to close the idle witness connection', () => witness.getChannel().getConnectivityState(false) !== connectivityState.READY);
      writeFileSync(gate, '');
      await waitFor('the line written after the idle time', () => text().includes('late'));
      const { error } = await logs.done; // the task ended, so the follow ends
      assert.equal(error, undefined, `the Logs stream failed: ${error?.details}`);
    } finally {
      follower.client.close();
      witness.close();
    }
  });
});

/** A TCP relay to the executor that can go silent, as a client whose node vanished does (no FIN, no RST). */
async function freezableRelay(target: [string, number]): Promise<{ address: string; freeze(): void; upstreamClosed(): boolean; close(): void }> {
  const pairs: [Socket, Socket][] = [];
  let upstreamClosed = false;
  const server: Server = createServer((downstream) => {
    const upstream = netConnect(target[1], target[0]);
    upstream.on('close', () => (upstreamClosed = true)).on('error', () => {});
    downstream.on('error', () => {});
    downstream.pipe(upstream);
    upstream.pipe(downstream);
    pairs.push([downstream, upstream]);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  assert.ok(address && typeof address === 'object');
  return {
    address: `127.0.0.1:${address.port}`,
    freeze: () => {
      for (const [downstream, upstream] of pairs) {
        // Read and drop: nothing passes either way, but the relay still sees the server close.
        downstream.unpipe(upstream);
        upstream.unpipe(downstream);
        downstream.on('data', () => {}).resume(); // unpipe paused them
        upstream.on('data', () => {}).resume();
      }
    },
    upstreamClosed: () => upstreamClosed,
    close: () => {
      for (const pair of pairs) for (const socket of pair) socket.destroy();
      server.close();
    },
  };
}

describe('gRPC connections: keepalive', () => {
  let te: TestExecutor;
  before(async () => {
    te = await startTestExecutor({ grpcMaxConnectionIdleMs: 0, grpcKeepaliveTimeMs: 300, grpcKeepaliveTimeoutMs: 1000 });
  });
  after(async () => te.close());

  test('a Watch whose client stops answering (its node vanished) is ended and its subscription freed', async () => {
    const relay = await freezableRelay(hostPort(te));
    const client = clientFor(relay.address);
    try {
      const before = subscribers(te);
      const call = client.watch({ sendInitial: false });
      call.on('data', () => {}).on('error', () => {});
      await waitFor('the Watch to be subscribed', () => subscribers(te) > before);
      relay.freeze();
      await waitFor('the server to close the silent peer', relay.upstreamClosed);
      await waitFor('the Watch subscription to be freed', () => subscribers(te) === before);
    } finally {
      client.close();
      relay.close();
    }
  });

  test('a Watch whose client answers pings stays open past several keepalive intervals', async () => {
    const client = clientFor(te.executor.address);
    const witness = await freezableRelay(hostPort(te));
    const witnessClient = clientFor(witness.address);
    try {
      const events: WatchResponse[] = [];
      let ended = false;
      const call = client.watch({ sendInitial: false });
      call.on('data', (e: WatchResponse) => events.push(e));
      call.on('error', () => (ended = true)).on('end', () => (ended = true));
      // A frozen peer connected after the Watch: once the server has dropped it
      // (a ping time and a ping timeout), the Watch has been pinged at least once.
      await apiFor(witnessClient).listTasks();
      witness.freeze();
      await waitFor('the server to close the frozen witness', witness.upstreamClosed);
      assert.equal(ended, false, 'the Watch stream ended');
      await te.api.createTask({ task: shell('pinged-watch', 'true') });
      await waitFor('the Watch to get the new task', () => events.some((e) => e.task?.name === 'pinged-watch'));
      call.cancel();
    } finally {
      client.close();
      witnessClient.close();
      witness.close();
    }
  });
});
