// When a stop looks at its task's tree during the grace period
// (src/runtime/process/grace-looks.ts): not while the task's pushed end is
// yet to come, every GRACE_POLL_MS while only its children live, and once
// more at the end of the grace period.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { GRACE_POLL_MS, graceLookDelay, PUSHED_FALLBACK_MS } from '../../src/runtime/process/grace-looks.js';

const LONG = 10_000;

describe('grace-period looks', () => {
  test('with pushes, the first look waits for the task to end (or the slow fallback), not for the poll interval', () => {
    assert.equal(graceLookDelay(undefined, true, LONG), PUSHED_FALLBACK_MS);
    assert.ok(PUSHED_FALLBACK_MS > GRACE_POLL_MS);
  });

  test('with pushes, a look that found the task alive waits for the next push', () => {
    assert.equal(graceLookDelay('task', true, LONG), PUSHED_FALLBACK_MS);
  });

  test('children outliving the task are not pushed: looked at every poll interval', () => {
    assert.equal(graceLookDelay('tree', true, LONG), GRACE_POLL_MS);
    assert.equal(graceLookDelay('tree', false, LONG), GRACE_POLL_MS);
  });

  test('without pushes, the first look is at once and the next after the poll interval', () => {
    assert.equal(graceLookDelay(undefined, false, LONG), 0);
    assert.equal(graceLookDelay('task', false, LONG), GRACE_POLL_MS);
  });

  test('no pause outlasts the grace period, and none is negative after it', () => {
    assert.equal(graceLookDelay(undefined, true, 120), 120);
    assert.equal(graceLookDelay('tree', false, 10), 10);
    assert.equal(graceLookDelay('task', true, -5), 0);
  });
});
