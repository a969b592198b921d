// The cgroup service's sweep of leftover cgroups, on a directory laid out like
// a v1 cgroup root (--cgroup-root accepts one): plain directories stand in for
// task cgroups, so these run anywhere, without root.
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import pino from 'pino';
import { CgroupManager, scopeOf } from '../../src/runtime/cgroups/index.js';
import { tempDir } from '../support/executor.js';

describe('sweep of leftover cgroups', () => {
  const root = tempDir('te-cgroup-root-');
  const scope = scopeOf(tempDir('te-cgroup-data-'));
  let cgroups: CgroupManager;
  let scopeDir: string;
  before(() => {
    mkdirSync(join(root, 'memory'));
    writeFileSync(join(root, 'memory', 'cgroup.procs'), '');
    cgroups = new CgroupManager({ root, log: pino({ level: 'silent' }) });
    scopeDir = cgroups.scopeDirs(scope)[0]!;
    assert.ok(scopeDir.startsWith(join(root, 'memory')), `the fake root is used: ${JSON.stringify(cgroups.describe())}`);
  });
  after(() => rmSync(root, { recursive: true, force: true }));

  test('many concurrent sweeps of one scope share at most two runs (a mass delete does not sweep once per task)', async () => {
    mkdirSync(join(scopeDir, 'live-task'), { recursive: true });
    // A run asks once per task cgroup whether its task still exists: with one cgroup, asks count runs.
    let runs = 0;
    const isLive = (name: string) => {
      runs++;
      return name === 'live-task';
    };
    await Promise.all(Array.from({ length: 50 }, () => cgroups.sweep(scope, isLive)));
    assert.ok(runs >= 1 && runs <= 2, `50 concurrent callers cost ${runs} sweeps`);
  });

  test('a sweep called while another runs returns only after a run that began after it', async () => {
    mkdirSync(join(scopeDir, 'live-task'), { recursive: true });
    const isLive = (name: string) => name === 'live-task';
    // The first run lists the scope at once, before the cgroup below exists...
    const first = cgroups.sweep(scope, isLive);
    mkdirSync(join(scopeDir, 'deleted-task'));
    // ...so the second caller must not be served by it.
    await cgroups.sweep(scope, isLive);
    assert.equal(existsSync(join(scopeDir, 'deleted-task')), false);
    await first;
    assert.equal(existsSync(join(scopeDir, 'live-task')), true);
  });
});
