// Load, as correctness under volume (timings are printed as diagnostics; speed
// targets live in bench/): 1,000 tasks through one SetTasks, 100 concurrent log
// followers, and List (every page) over 10,000 tasks in the store.
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { credentials } from '@grpc/grpc-js';
import { type ListResponse, LogStream, type LogsResponse, TaskExecutorServiceClient } from '../../gen/taskexecutor/v1/task_executor_service.js';
import { processTask, shell, startTestExecutor, stateOf, tempDir, type TestExecutor } from '../support/executor.js';
import { waitFor } from '../support/wait.js';

describe('load', () => {
  const executors: TestExecutor[] = [];
  after(async () => {
    for (const te of executors) await te.close();
  });

  test('1,000 tasks through one SetTasks all run, and an empty SetTasks removes them all', async (t) => {
    const te = await startTestExecutor({ stopGraceMs: 2000 });
    executors.push(te);
    const tasks = Array.from({ length: 1000 }, (_, i) => processTask(`load-${String(i).padStart(4, '0')}`, ['sleep', '120']));
    const started = Date.now();
    const { tasks: result } = await te.api.setTasks({ tasks });
    t.diagnostic(`SetTasks of 1000 tasks took ${Date.now() - started} ms`);
    assert.equal(result.length, 1000);
    assert.equal(result.filter((task) => stateOf(task)?.$case === 'running').length, 1000);
    const cleared = Date.now();
    await te.api.setTasks({ tasks: [] });
    await waitFor('every task to be removed', async () => (await te.api.listTasks()).tasks.length === 0, { timeoutMs: 120_000, intervalMs: 200 });
    t.diagnostic(`removing 1000 running tasks took ${Date.now() - cleared} ms`);
  });

  test('100 concurrent followers each receive every line', async () => {
    const te = await startTestExecutor();
    executors.push(te);
    await te.api.createTask({ task: shell('chatty', 'sleep 0.5; i=1; while [ $i -le 100 ]; do echo line-$i; i=$((i+1)); sleep 0.01; done') });
    const followers = Array.from({ length: 100 }, () => {
      const lines: string[] = [];
      const stream = te.client.logs({ name: 'chatty', follow: true, stream: LogStream.LOG_STREAM_UNSPECIFIED, timestamps: false, batch: false, chunks: false });
      const done = new Promise<string[]>((resolve, reject) => {
        stream.on('data', (m: LogsResponse) => m.content?.$case === 'text' && lines.push(m.content.value));
        stream.on('end', () => resolve(lines));
        stream.on('error', reject);
      });
      return done;
    });
    const results = await Promise.all(followers);
    const expected = Array.from({ length: 100 }, (_, i) => `line-${i + 1}`);
    for (const lines of results) assert.deepEqual(lines, expected);
  });

  test('List answers with 10,000 tasks in the store', async (t) => {
    const dataDir = tempDir();
    const now = new Date().toISOString();
    for (let i = 0; i < 10_000; i++) {
      const name = `stored-${String(i).padStart(5, '0')}`;
      mkdirSync(join(dataDir, name));
      const record = {
        name,
        spec: { process: { command: ['true'], args: [], env: [] } },
        state: { phase: 'terminated', exitCode: 0, signal: 0, reason: 'Succeeded', startedAt: now, finishedAt: now },
        createdAt: now,
      };
      writeFileSync(join(dataDir, name, 'task.json'), JSON.stringify({ version: 1, task: record }));
    }
    const loading = Date.now();
    const te = await startTestExecutor({}, dataDir);
    executors.push(te);
    t.diagnostic(`recovering 10,000 tasks took ${Date.now() - loading} ms`);
    // A default client (4 MiB receive limit), reading every page.
    const client = new TaskExecutorServiceClient(te.executor.address, credentials.createInsecure());
    const page = (pageToken: string) =>
      new Promise<ListResponse>((resolve, reject) => client.list({ pageSize: 1000, pageToken }, (e, r) => (e ? reject(e) : resolve(r))));
    const list = async () => {
      let count = 0;
      let token = '';
      do {
        const { tasks, nextPageToken } = await page(token);
        count += tasks.length;
        token = nextPageToken;
      } while (token);
      return count;
    };
    const timings: number[] = [];
    for (let i = 0; i < 5; i++) {
      const start = Date.now();
      assert.equal(await list(), 10_000);
      timings.push(Date.now() - start);
    }
    t.diagnostic(`List with 10,000 tasks: ${timings.join(', ')} ms`);
    client.close();
  });
});
