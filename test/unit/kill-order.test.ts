// Whom one round of the one kill loop (src/runtime/process/task-tree.ts)
// SIGKILLs: everything, or leaves first, never what the exclude hook spares.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { victims } from '../../src/runtime/process/task-tree.js';

// shim 10 (not a member) -> nsenter 11 -> task 12 -> { 13 -> 14, 15 }; 20 an orphan adopted elsewhere.
const tree = new Map([
  [11, 10],
  [12, 11],
  [13, 12],
  [14, 13],
  [15, 12],
  [20, 1],
]);
const sorted = (pids: number[]) => [...pids].sort((a, b) => a - b);
const spareNsenter = (pid: number) => pid === 11;

describe('kill rounds', () => {
  test('all at once, every member is a victim', () => {
    assert.deepEqual(sorted(victims(tree, {})), [11, 12, 13, 14, 15, 20]);
  });

  test('the exclude hook spares its process in every mode', () => {
    assert.deepEqual(sorted(victims(tree, { exclude: spareNsenter })), [12, 13, 14, 15, 20]);
    assert.ok(!victims(tree, { exclude: spareNsenter, leavesFirst: true }).includes(11));
  });

  test('leaves first kills only members without children among the members', () => {
    assert.deepEqual(sorted(victims(tree, { leavesFirst: true })), [14, 15, 20]);
  });

  test('leaves first reaches the parents once their children are gone', () => {
    const after = new Map([...tree].filter(([pid]) => ![14, 15, 20].includes(pid)));
    assert.deepEqual(victims(after, { exclude: spareNsenter, leavesFirst: true }), [13]);
  });

  test('a parent whose only child is excluded counts as a leaf, so a round is never empty while it lives', () => {
    // 30 -> 31, with 31 spared: 30 must still be killed, or the loop would call the tree gone.
    const parents = new Map([
      [30, 1],
      [31, 30],
    ]);
    assert.deepEqual(victims(parents, { exclude: (pid) => pid === 31, leavesFirst: true }), [30]);
  });

  test('nothing but the excluded left: no victims, the tree counts as gone', () => {
    assert.deepEqual(victims(new Map([[11, 10]]), { exclude: spareNsenter, leavesFirst: true }), []);
  });
});
