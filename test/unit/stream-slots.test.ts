import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { StreamSlots } from '../../src/api/stream-slots.js';
import { TaskError } from '../../src/errors.js';

describe('stream slots', () => {
  test('one stream beyond the cap is ResourceExhausted, naming how many are open and the flag; a released slot is free again', () => {
    const slots = new StreamSlots('Logs', 2, '--max-log-streams');
    const first = slots.acquire();
    slots.acquire();
    assert.equal(slots.open, 2);
    assert.throws(
      () => slots.acquire(),
      (error: unknown) => error instanceof TaskError && error.kind === 'ResourceExhausted' && /2 are open/.test(error.message) && /--max-log-streams 2/.test(error.message),
    );
    first();
    assert.equal(slots.open, 1);
    slots.acquire();
    assert.equal(slots.open, 2);
  });

  test('releasing a slot twice frees it once', () => {
    const slots = new StreamSlots('Logs', 1, '--max-log-streams');
    const release = slots.acquire();
    release();
    release();
    assert.equal(slots.open, 0);
    slots.acquire();
    assert.throws(() => slots.acquire());
  });

  test('0 is no limit', () => {
    const slots = new StreamSlots('Logs', 0, '--max-log-streams');
    for (let i = 0; i < 10_000; i++) slots.acquire();
    assert.equal(slots.open, 10_000);
  });
});
