// Watch's per-watcher event backlog, on its own (the Watch RPC is in test/integration/watch.test.ts).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { EventBacklog } from '../../src/api/watch-handler.js';
import type { TaskEvent } from '../../src/manager/task-manager.js';

describe('Watch backlog', () => {
  test('a backlog takes events up to its count bound, then drops what it holds and takes nothing more', () => {
    const backlog = new EventBacklog({ maxEvents: 3, maxBytes: 2 ** 20 });
    const events = ['a', 'b', 'c', 'd', 'e'].map(
      (name): TaskEvent => ({ type: 'added', task: { name, spec: { process: { command: ['true'], args: [], env: [] } }, state: { phase: 'waiting', reason: 'Pending' }, createdAt: '' } }),
    );
    assert.ok(backlog.push(events[0]!) && backlog.push(events[1]!));
    assert.equal(backlog.shift(), events[0]);
    assert.ok(backlog.push(events[2]!) && backlog.push(events[3]!), 'three waiting: at the bound');
    const before = backlog.overflow;
    assert.equal(before, undefined);
    assert.equal(backlog.push(events[4]!), false, 'a fourth would pass the bound');
    assert.equal(backlog.overflow?.events, 4);
    assert.equal(backlog.shift(), undefined, 'what it held is dropped');
    assert.equal(backlog.push(events[0]!), false, 'and it takes nothing more');
  });
});
