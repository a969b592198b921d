// ListTasks pages and their tokens (src/api/paging.ts): every task exactly
// once, a token valid while tasks come and go, and a forged token refused.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Task } from '../../gen/taskexecutor/v1/task.js';
import { DEFAULT_PAGE_SIZE, listPage, MAX_PAGE_SIZE, MAX_REPLY_BYTES, takeWithinBound } from '../../src/api/paging.js';
import { taskToWire } from '../../src/api/convert.js';
import { TaskError } from '../../src/errors.js';
import type { TaskRecord } from '../../src/model/task.js';

const recordOf = (name: string, args: string[] = []): TaskRecord => ({
  name,
  spec: { process: { command: ['true'], args, env: [] } },
  state: { phase: 'waiting', reason: 'Pending' },
  createdAt: '2026-01-02T03:04:05.678Z',
});
const records = (count: number) => Array.from({ length: count }, (_, i) => recordOf(`task-${String(i).padStart(4, '0')}`));

/** Every page of `all`, `pageSize` at a time, by following next_page_token. */
function allPages(all: readonly TaskRecord[], pageSize: number): string[][] {
  const pages: string[][] = [];
  let pageToken = '';
  do {
    const page = listPage(all, { pageSize, pageToken });
    pages.push(page.tasks.map((t) => t.name));
    pageToken = page.nextPageToken;
  } while (pageToken && pages.length < 1000);
  return pages;
}

const invalidToken = (error: unknown) =>
  error instanceof TaskError && error.kind === 'InvalidArgument' && /is not a page token this service issued/.test(error.message);

describe('ListTasks paging', () => {
  test('following the tokens yields every task once, in order, and the last page has no token', () => {
    const all = records(25);
    const pages = allPages(all, 10);
    assert.deepEqual(pages.map((p) => p.length), [10, 10, 5]);
    assert.deepEqual(pages.flat(), all.map((r) => r.name));
    assert.equal(listPage(all, { pageSize: 25, pageToken: '' }).nextPageToken, '', 'one full page: no token');
  });

  test('page size: 0 means the default, more than the maximum means the maximum, negative is refused', () => {
    const all = records(MAX_PAGE_SIZE + 1);
    assert.equal(listPage(all, { pageSize: 0, pageToken: '' }).tasks.length, DEFAULT_PAGE_SIZE);
    assert.equal(listPage(all, { pageSize: MAX_PAGE_SIZE * 10, pageToken: '' }).tasks.length, MAX_PAGE_SIZE);
    assert.throws(() => listPage(all, { pageSize: -1, pageToken: '' }), (e: unknown) => e instanceof TaskError && /page_size must not be negative; got -1/.test(e.message));
  });

  test('a token resumes after the last name returned, even when that task is gone and others were added', () => {
    const all = records(6);
    const first = listPage(all, { pageSize: 3, pageToken: '' });
    assert.deepEqual(first.tasks.map((t) => t.name), ['task-0000', 'task-0001', 'task-0002']);
    const changed = [all[0]!, all[1]!, recordOf('task-0001a'), ...all.slice(3)]; // task-0002 deleted, task-0001a added before it
    const second = listPage(changed, { pageSize: 3, pageToken: first.nextPageToken });
    assert.deepEqual(second.tasks.map((t) => t.name), ['task-0003', 'task-0004', 'task-0005']);
  });

  test('a token the service did not issue is refused, however close to a real one', () => {
    const all = records(4);
    const token = listPage(all, { pageSize: 2, pageToken: '' }).nextPageToken;
    const forged = [
      'garbage',
      `${token}=`, // base64 padding the decoder would ignore
      `${token.slice(0, -1)}!`,
      Buffer.from('after:../etc').toString('base64url'), // not a task name
      Buffer.from('before:task-0001').toString('base64url'),
      'a'.repeat(10_000),
    ];
    for (const pageToken of forged) assert.throws(() => listPage(all, { pageSize: 2, pageToken }), invalidToken, pageToken.slice(0, 40));
  });

  test('a page stops before its encoded tasks pass the reply bound, but always holds at least one task', () => {
    const big = (name: string) => recordOf(name, Array.from({ length: 7 }, () => 'x'.repeat(128 * 1024)));
    const all = ['a', 'b', 'c', 'd'].map(big);
    const taken = takeWithinBound(all, (record) => taskToWire(record));
    const bytes = taken.reduce((sum, task) => sum + Task.encode(task).finish().length, 0);
    assert.ok(taken.length >= 1 && taken.length < all.length, `${taken.length} of ${all.length} taken`);
    assert.ok(bytes <= MAX_REPLY_BYTES, `${bytes} bytes`);
    const huge = recordOf('huge', Array.from({ length: 20 }, () => 'x'.repeat(128 * 1024)));
    assert.equal(takeWithinBound([huge], (record) => taskToWire(record)).length, 1, 'a task larger than the bound still goes out alone');
  });
});
