// The executor's shim pool size (ShimSpawner's poolSize, passed as `task-shim --spawner
// --pool N`) is checked where it is given, not found wrong by the helper at the first start.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ShimSpawner } from '../../src/runtime/process/shim-spawner.js';
import { SHIM, silent } from '../support/in-process.js';

test('a shim pool size outside 0 to 64 or not an integer is refused with the allowed range', () => {
  for (const size of [-1, 65, 1.5, Number.NaN]) {
    assert.throws(() => new ShimSpawner(SHIM, silent, size), { name: 'RangeError', message: `shim pool size must be 0 to 64, got ${size}` });
  }
  for (const size of [0, 2, 64]) assert.doesNotThrow(() => new ShimSpawner(SHIM, silent, size).close());
});
