import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { shell, startTestExecutor, terminated, type TestExecutor } from './support/executor.js';
import { waitFor } from './support/wait.js';

describe('Prometheus metrics', () => {
  let te: TestExecutor;
  before(async () => {
    te = await startTestExecutor({ metricsListenAddr: '127.0.0.1:0' });
  });
  after(async () => te.close());

  const scrape = async () => (await fetch(`http://${te.executor.metricsAddress}/metrics`)).text();
  const value = (text: string, series: string) => {
    const line = text.split('\n').find((l) => l.startsWith(`${series} `));
    return line === undefined ? undefined : Number(line.slice(series.length + 1));
  };

  test('count tasks by state, starts, terminations by reason, and RPC latency by method and code', async () => {
    await te.api.createTask({ task: shell('ok', 'exit 0') });
    await te.api.createTask({ task: shell('bad', 'exit 2') });
    await te.api.createTask({ task: shell('long', 'sleep 30') });
    await te.api.getTask({ name: 'missing' }).catch(() => undefined);
    for (const name of ['ok', 'bad']) {
      await waitFor(`${name} to end`, async () => terminated((await te.api.getTask({ name })).task));
    }
    const text = await scrape();
    assert.equal(value(text, 'task_executor_tasks{state="terminated",deleting="false"}'), 2);
    assert.equal(value(text, 'task_executor_tasks{state="running",deleting="false"}'), 1);
    assert.equal(value(text, 'task_executor_task_starts_total'), 3);
    assert.equal(value(text, 'task_executor_task_terminations_total{reason="Succeeded"}'), 1);
    assert.equal(value(text, 'task_executor_task_terminations_total{reason="Failed"}'), 1);
    assert.equal(value(text, 'task_executor_rpc_duration_seconds_count{method="CreateTask",code="OK"}'), 3);
    assert.equal(value(text, 'task_executor_rpc_duration_seconds_count{method="GetTask",code="NOT_FOUND"}'), 1);
    assert.ok((value(text, 'task_executor_process_resident_memory_bytes') ?? 0) > 0);
    await te.api.deleteTask({ name: 'long' });
  });

  test('anything but GET /metrics is 404', async () => {
    assert.equal((await fetch(`http://${te.executor.metricsAddress}/`)).status, 404);
  });
});
