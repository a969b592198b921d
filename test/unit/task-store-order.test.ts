// The store's file operations are bounded (a mass delete queues thousands);
// new tasks' directories and records go before the saves and removals
// waiting then, so that a Create during a mass delete does not wait for all
// of them. Asserted by order, not time: how many of the saves queued before
// a new task's admission had finished when the admission did.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { Reason, type TaskRecord } from '../../src/model/task.js';
import { TaskStore } from '../../src/store/task-store.js';
import { silent } from '../support/in-process.js';

const SAVES = 400;
const record = (name: string): TaskRecord => ({
  name,
  spec: { process: { command: ['true'], args: [], env: [] } },
  state: { phase: 'waiting', reason: Reason.Pending },
  createdAt: '2026-01-02T03:04:05.678Z',
});

describe('store operation order', () => {
  const root = mkdtempSync(join(tmpdir(), 'te-store-order-'));
  after(() => rmSync(root, { recursive: true, force: true }));

  test("a new task's admission goes before the saves and removals queued ahead of it", async () => {
    const store = new TaskStore(root, silent);
    const existing = Array.from({ length: SAVES }, (_, i) => record(`old-${i}`));
    await store.prepareNew(existing);
    await store.commitNew(existing);

    let finished = 0;
    const queued = existing.map((r, i) => (i % 2 === 0 ? store.save(r) : store.remove(r.name)).then(() => finished++));
    const fresh = [record('fresh')];
    await store.prepareNew(fresh);
    await store.commitNew(fresh);
    const finishedBefore = finished;
    await Promise.all(queued);
    // In arrival order the admission's three operations would each wait for all ahead of them.
    assert.ok(finishedBefore < SAVES / 2, `${finishedBefore} of the ${SAVES} operations queued earlier finished before the admission`);
  });
});
