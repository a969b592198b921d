// The cgroup service's sweep of leftover cgroups, on a directory laid out like
// a v1 cgroup root (--cgroup-root accepts one): plain directories stand in for
// task cgroups, so these run anywhere, without root.
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
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

  test('the own sweep lets the event loop turn while it works through many leftovers, keeps a cgroup a start creates meanwhile, and removes the rest', async () => {
    const own = scopeOf(tempDir('te-cgroup-own-'));
    const dir = cgroups.scopeDirs(own)[0]!;
    for (let i = 0; i < 500; i++) mkdirSync(join(dir, `gone-${i}`), { recursive: true });
    let leftAtFirstTurn: number | undefined;
    let starting: string | undefined;
    setImmediate(() => {
      leftAtFirstTurn = readdirSync(dir).length;
      // A start's cgroup, created while the sweep is under way, its task's directory not there yet.
      starting = cgroups.create(own, 'gone-499', undefined).cgroup!.dirs.memory!;
    });
    await cgroups.sweep(own, () => false);
    assert.ok(leftAtFirstTurn !== undefined && leftAtFirstTurn > 0, `the loop turned while leftovers remained (${leftAtFirstTurn} of 500 left then)`);
    assert.ok(starting && existsSync(starting), "the start's cgroup is kept");
    assert.deepEqual(readdirSync(dir), [starting.split('/').at(-1)], 'every leftover is gone');
  });

  /** `count` empty leftover cgroups of another (deleted) data dir's scope, an hour old; the scope's directory. */
  function foreignLeftovers(count: number): string {
    const dir = cgroups.scopeDirs(scopeOf(tempDir('te-cgroup-foreign-')))[0]!;
    for (let i = 0; i < count; i++) mkdirSync(join(dir, `gone-${i}`), { recursive: true });
    for (const leaf of [...readdirSync(dir).map((name) => join(dir, name)), dir]) age(leaf);
    return dir;
  }
  const age = (dir: string) => utimesSync(dir, new Date(Date.now() - 3600_000), new Date(Date.now() - 3600_000));
  const TEN_MINUTES = 10 * 60 * 1000;

  test('the foreign sweep lets the event loop turn while it works through many leftovers, and removes them all', async () => {
    const foreign = foreignLeftovers(500);
    let leftAtFirstTurn: number | undefined;
    setImmediate(() => {
      leftAtFirstTurn = readdirSync(foreign).length;
    });
    await cgroups.sweepForeign(scope, TEN_MINUTES);
    assert.ok(leftAtFirstTurn !== undefined && leftAtFirstTurn > 0, `the loop turned while leftovers remained (${leftAtFirstTurn} of 500 left then)`);
    assert.equal(existsSync(join(foreign, 'gone-0')) || existsSync(join(foreign, 'gone-499')), false, 'every leftover is gone');
  });

  test('the foreign sweep leaves alone every scope this executor uses, also one it begins to use during the sweep', async () => {
    // A second data dir of this executor: its scope is not foreign, even where a cgroup of it looks old.
    const used = foreignLeftovers(3);
    const usedScope = used.split('/').at(-1)!;
    const running = cgroups.create(usedScope, 'running', undefined).cgroup!.dirs.memory!;
    age(running);
    // One more that starts being used while the sweep is under way (after its first turn of the loop).
    const later = foreignLeftovers(200);
    const laterScope = later.split('/').at(-1)!;
    let starting: string | undefined;
    setImmediate(() => {
      starting = cgroups.create(laterScope, 'starting', undefined).cgroup!.dirs.memory!;
      age(starting); // even a cgroup that looks old
    });
    await cgroups.sweepForeign(scope, TEN_MINUTES);
    assert.ok(existsSync(running), 'the cgroup of a task of this executor in another scope is kept');
    assert.equal(readdirSync(used).length, 4, 'that scope is not swept at all');
    assert.ok(starting && existsSync(starting), 'the cgroup created during the sweep is kept');
    assert.ok(readdirSync(later).length > 1, 'the sweep stopped sweeping that scope once it was in use');
  });
});
