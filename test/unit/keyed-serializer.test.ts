// Per-key serial work (src/manager/keyed-serializer.ts): one item at a time
// per key, in call order; keys independent; failures do not block the queue.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { KeyedSerializer } from '../../src/manager/keyed-serializer.js';

/** A promise and the function that settles it, so a test decides when work ends. */
function gate(): { opened: Promise<void>; open: () => void } {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => (open = resolve));
  return { opened, open };
}

describe('keyed serializer', () => {
  test('work for one key runs one item at a time, in call order, even when a later item would finish sooner', async () => {
    const serializer = new KeyedSerializer();
    const log: string[] = [];
    const slow = gate();
    const first = serializer.run('a', async () => {
      log.push('first starts');
      await slow.opened;
      log.push('first ends');
      return 1;
    });
    const second = serializer.run('a', async () => {
      log.push('second runs');
      return 2;
    });
    // Let every ready microtask run: the second must still wait for the first.
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(log, ['first starts']);
    slow.open();
    assert.deepEqual(await Promise.all([first, second]), [1, 2]);
    assert.deepEqual(log, ['first starts', 'first ends', 'second runs']);
  });

  test('work for another key is not held up by a key whose work is stuck', async () => {
    const serializer = new KeyedSerializer();
    const stuck = gate();
    const blocked = serializer.run('a', () => stuck.opened);
    assert.equal(await serializer.run('b', async () => 'b ran'), 'b ran');
    await new Promise((resolve) => setImmediate(resolve)); // b's bookkeeping settles after its result
    assert.equal(serializer.busyKeys, 1, 'only the stuck key is busy');
    stuck.open();
    await blocked;
  });

  test("a failed item rejects its own caller only, and the key's next item still runs", async () => {
    const serializer = new KeyedSerializer();
    const failing = serializer.run('a', async () => {
      throw new Error('boom');
    });
    const next = serializer.run('a', async () => 'next ran');
    await assert.rejects(failing, /boom/);
    assert.equal(await next, 'next ran');
  });

  test('drain waits for everything queued, and idle keys are forgotten', async () => {
    const serializer = new KeyedSerializer();
    const gates = [gate(), gate(), gate()];
    const done: number[] = [];
    gates.forEach((g, i) => void serializer.run(`k${i % 2}`, () => g.opened.then(() => void done.push(i))));
    assert.equal(serializer.busyKeys, 2);
    let drained = false;
    const draining = serializer.drain().then(() => (drained = true));
    gates[0]!.open();
    gates[1]!.open();
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(drained, false, 'k0 still has work queued');
    gates[2]!.open();
    await draining;
    assert.deepEqual(done.sort(), [0, 1, 2]);
    assert.equal(serializer.busyKeys, 0);
  });
});
