// Waits bounded by a duration (src/util/poll.ts) measure it on the monotonic
// clock: a wall clock stepped back (NTP, an operator) must not stretch them.
import assert from 'node:assert/strict';
import { afterEach, describe, test } from 'node:test';
import { deadlineIn, pollUntil } from '../../src/util/poll.js';

const realNow = Date.now;

/** From now on the wall clock reads an hour earlier than it did. */
function stepWallClockBack(): void {
  const offset = 3_600_000;
  Date.now = () => realNow() - offset;
}

describe('waits bounded by a duration', () => {
  afterEach(() => {
    Date.now = realNow;
  });

  test('a poll gives up after its timeout even when the wall clock is stepped back an hour meanwhile', { timeout: 5000 }, async () => {
    let looks = 0;
    const held = await pollUntil(
      () => {
        if (++looks === 2) stepWallClockBack();
        return false;
      },
      100,
      5,
    );
    assert.equal(held, false);
  });

  test('a deadline counts down on the monotonic clock, whatever the wall clock does', async () => {
    const deadline = deadlineIn(50);
    stepWallClockBack();
    assert.ok(deadline.left() > 0 && deadline.left() <= 50);
    assert.equal(deadline.passed(), false);
    await new Promise((resolve) => setTimeout(resolve, 60));
    assert.ok(deadline.left() <= 0);
    assert.equal(deadline.passed(), true);
  });

  test('a poll answers true as soon as its condition holds, and checks once even with no time', async () => {
    let looks = 0;
    assert.equal(await pollUntil(() => ++looks === 3, 10_000, 1), true);
    assert.equal(looks, 3);
    assert.equal(await pollUntil(() => true, 0), true);
  });
});
