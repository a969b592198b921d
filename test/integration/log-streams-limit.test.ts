// Clients that open Logs streams and never read them (buggy, stuck or hostile)
// must not be able to take the executor down: --max-log-streams caps how many
// are open (one more is RESOURCE_EXHAUSTED, a slot comes back however a stream
// ends), and a stalled stream holds little memory. --max-streams does the same
// for Watch and Stats streams together.
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type ClientReadableStream, type ServiceError, status } from '@grpc/grpc-js';
import type { LogsRequest, LogsResponse, WatchResponse } from '../../gen/taskexecutor/v1/task_executor_service.js';
import { eventSubscribers, shell, startTestExecutor, type TestExecutor } from '../support/executor.js';
import { liveMemory, settledMemory, spawnMeasuredExecutor } from '../support/live-memory.js';
import { openLogs } from '../support/logs-rpc.js';
import { killTaskTrees } from '../support/processes.js';
import { StuckClient } from '../support/stuck-client.js';
import { connect } from '../support/subprocess.js';
import { waitFor } from '../support/wait.js';

/** Opens a follow stream of `task`: 'open' once its first message comes, or the status it ended with. */
function follow(te: TestExecutor, task: string): { call: ClientReadableStream<LogsResponse>; outcome: Promise<'open' | { code: number; details: string }> } {
  const { call, done } = openLogs(te, { name: task, follow: true }, () => {});
  const outcome = new Promise<'open' | { code: number; details: string }>((resolve) => {
    call.once('data', () => resolve('open'));
    void done.then(({ error }) => resolve(error ? { code: error.code, details: error.details } : { code: status.OK, details: '' }));
  });
  return { call, outcome };
}

describe('Logs streams: a cap on how many are open', () => {
  let te: TestExecutor;
  const MAX = 3;

  before(async () => {
    te = await startTestExecutor({ maxLogStreams: MAX });
    await te.api.createTask({ task: shell('talker', 'echo hello; exec sleep 1000') });
  });
  after(() => te.close());

  test('the stream beyond --max-log-streams is RESOURCE_EXHAUSTED saying how many are open and which flag raises it; a cancelled stream frees its slot', async () => {
    const open = Array.from({ length: MAX }, () => follow(te, 'talker'));
    for (const stream of open) assert.equal(await stream.outcome, 'open');

    const refused = await follow(te, 'talker').outcome;
    assert.notEqual(refused, 'open');
    if (refused === 'open') return;
    assert.equal(refused.code, status.RESOURCE_EXHAUSTED, `got ${status[refused.code]}: ${refused.details}`);
    assert.match(refused.details, /3 are open/);
    assert.match(refused.details, /--max-log-streams 3/);

    open[0]!.call.cancel();
    // The slot comes back once the executor has seen the cancellation: poll with new streams.
    const again = await waitFor('a new stream to be let in', async () => {
      const attempt = follow(te, 'talker');
      const outcome = await attempt.outcome;
      return outcome === 'open' ? attempt : undefined;
    });
    for (const stream of [...open.slice(1), again]) stream.call.cancel();
  });

  test('streams of a connection that drops free their slots', async () => {
    const address = te.executor.address;
    const stuck = new StuckClient(address);
    const streams = Array.from({ length: MAX }, () => stuck.logs({ name: 'talker', follow: true }));
    // All slots taken: a stream of another client is refused.
    await waitFor('the stuck client to hold every slot', async () => {
      const outcome = await follow(te, 'talker').outcome;
      return outcome !== 'open' && outcome.code === status.RESOURCE_EXHAUSTED ? true : undefined;
    });
    stuck.close();
    const again = await waitFor('a new stream to be let in', async () => {
      const attempt = follow(te, 'talker');
      return (await attempt.outcome) === 'open' ? attempt : undefined;
    });
    again.call.cancel();
    assert.equal(streams.length, MAX);
  });

  test('a stream that ends (the task never started: no output) does not keep its slot', async () => {
    // More ended streams than slots: each must have given its slot back.
    for (let i = 0; i < MAX * 2; i++) {
      const { error } = await openLogs(te, { name: 'no-such-task' }).done;
      assert.equal(error?.code, status.NOT_FOUND);
    }
    const attempt = follow(te, 'talker');
    assert.equal(await attempt.outcome, 'open');
    attempt.call.cancel();
  });
});

describe('Watch and Stats streams: a cap on how many are open, together', () => {
  let te: TestExecutor;
  const MAX = 2;

  before(async () => {
    te = await startTestExecutor({ maxStreams: MAX, maxLogStreams: 1 });
    await te.api.createTask({ task: shell('talker', 'echo hello; exec sleep 1000') });
  });
  after(() => te.close());

  /** Opens a Watch: 'open' once the executor has subscribed it, or the status it was refused with. */
  function watch(): { call: ClientReadableStream<WatchResponse>; outcome: Promise<'open' | { code: number; details: string }> } {
    const before = eventSubscribers(te);
    const call = te.client.watch({ sendInitial: false });
    const outcome = new Promise<'open' | { code: number; details: string }>((resolve) => {
      call.on('error', (error: ServiceError) => resolve({ code: error.code, details: error.details }));
      void waitFor('the Watch to be subscribed or refused', () => (eventSubscribers(te) > before ? true : undefined)).then(
        () => resolve('open'),
        () => {},
      );
    });
    return { call, outcome };
  }

  test('a Stats or Watch stream beyond --max-streams (Watch and Stats together) is RESOURCE_EXHAUSTED naming the flag; a cancelled one frees its slot; Logs streams count apart', async () => {
    const watches = [watch(), watch()];
    for (const w of watches) assert.equal(await w.outcome, 'open');

    const stats = await new Promise<ServiceError | undefined>((resolve) => {
      const call = te.client.stats({ name: 'talker', oneShot: false });
      call.on('data', () => {});
      call.on('error', resolve);
      call.on('end', () => resolve(undefined));
    });
    assert.equal(stats?.code, status.RESOURCE_EXHAUSTED, `got ${stats ? status[stats.code] : 'OK'}: ${stats?.details}`);
    assert.match(stats.details, /Watch and Stats streams: 2 are open/);
    assert.match(stats.details, /--max-streams 2/);
    const refused = await watch().outcome;
    assert.notEqual(refused, 'open');
    if (refused !== 'open') assert.equal(refused.code, status.RESOURCE_EXHAUSTED);
    // Logs has its own slots.
    const logs = follow(te, 'talker');
    assert.equal(await logs.outcome, 'open');
    logs.call.cancel();

    watches[0]!.call.cancel();
    const again = await waitFor('a new Watch to be let in', async () => {
      const attempt = watch();
      return (await attempt.outcome) === 'open' ? attempt : undefined;
    });
    watches[1]!.call.cancel();
    again.call.cancel();
  });
});

/** Bytes of every output.<N>.log under dir. */
function logBytes(dir: string): number {
  let total = 0;
  for (const name of readdirSync(dir, { recursive: true, encoding: 'utf8' })) if (/output\.\d+\.log$/.test(name)) total += statSync(join(dir, name)).size;
  return total;
}

/**
 * The executor (a child process) runs `script`, whose output is at least
 * `logBytes` bytes; `streams` follow streams with `request` are opened by
 * clients that never read. Returns the live memory each stalled stream adds.
 */
async function stalledStreamBytes(script: string, minLogBytes: number, streams: number, request: Partial<LogsRequest>): Promise<number> {
  const scratch = mkdtempSync(join(tmpdir(), 'te-stuck-'));
  const dataDir = join(scratch, 'data');
  const executor = spawnMeasuredExecutor(['--data-dir', dataDir, '--listen-addr', '127.0.0.1:0', '--max-log-streams', '0']);
  const clients: StuckClient[] = [];
  try {
    const { api, address } = await connect(executor);
    await api.createTask({ task: shell('big', script) });
    await waitFor('the log to be written', () => (logBytes(dataDir) >= minLogBytes ? true : undefined), { timeoutMs: 60_000, intervalMs: 100 });
    const before = await liveMemory(executor);
    for (let i = 0; i < 4; i++) clients.push(new StuckClient(address));
    for (let i = 0; i < streams; i++) clients[i % clients.length]!.logs({ name: 'big', follow: true, ...request });
    const stalled = await settledMemory(executor);
    return (stalled.heapUsed + stalled.external - (before.heapUsed + before.external)) / streams;
  } finally {
    for (const client of clients) client.close();
    executor.child.kill('SIGTERM');
    await executor.exited;
    killTaskTrees(dataDir);
    rmSync(scratch, { recursive: true, force: true });
  }
}

describe('Logs streams whose client does not read', () => {
  test('hold little memory each: the executor grows by well under 1 MiB per stalled batched follow stream over a large log', async (t) => {
    // ~20 MB of 100-byte lines, then the task keeps running (so a follow never ends).
    const perStream = await stalledStreamBytes(`yes "$(printf '%099d' 7)" | head -n 200000; exec sleep 1000`, 20_000_000, 40, { batch: true });
    t.diagnostic(`a stalled batched stream holds ${(perStream / 1024).toFixed(0)} KiB`);
    // Before the fix about 2.3 MiB each (two 256 KiB read buffers, sixteen 64 KiB messages queued in grpc-js,
    // a whole buffer's lines as objects); now about 0.6 MiB. Generous, for a loaded machine.
    assert.ok(perStream < 1024 * 1024, `a stalled stream holds ${(perStream / 1024).toFixed(0)} KiB`);
  });

  test('hold little memory each with one long line per message too: well under 1 MiB per stalled stream', async (t) => {
    // ~10 MB of 60 KB lines: one message each, not pre-encoded (sized by their content for the send bound).
    const script = `line=$(head -c 60000 /dev/zero | tr '\\0' x); i=0; while [ $i -lt 170 ]; do echo "$line"; i=$((i+1)); done; exec sleep 1000`;
    const perStream = await stalledStreamBytes(script, 10_000_000, 40, {});
    t.diagnostic(`a stalled line-per-message stream of long lines holds ${(perStream / 1024).toFixed(0)} KiB`);
    // Without a size for messages that are not pre-encoded, grpc-js queued 16 of them: about 1 MiB more.
    assert.ok(perStream < 1024 * 1024, `a stalled stream holds ${(perStream / 1024).toFixed(0)} KiB`);
  });
});
