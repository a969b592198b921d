// The executor starts task-shims through one small helper (`task-shim
// --spawner`) instead of forking itself: these tests check what the helper
// relays, that shims outlive it, and that the executor gets over its loss.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { readStat } from '../../src/runtime/process/procfs.js';
import { ShimSpawner } from '../../src/runtime/process/shim-spawner.js';
import { shimsFor } from '../../src/runtime/process/stalled-shims.js';
import { processTask, shell, startTestExecutor, stateOf, tempDir, terminated, type TestExecutor } from '../support/executor.js';
import { argvOf, isAlive, pooledShimsOf } from '../support/processes.js';
import { SHIM, silent } from '../support/in-process.js';
import { waitFor } from '../support/wait.js';

/** The spawner helpers that are children of this test process. */
function helpers(): number[] {
  return readdirSync('/proc')
    .filter((entry) => /^\d+$/.test(entry))
    .map(Number)
    .filter((pid) => {
      try {
        const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
        return argv[1] === '--spawner' && readStat(pid)?.ppid === process.pid;
      } catch {
        return false;
      }
    });
}

const parentOf = (pid: number) => readStat(pid)?.ppid;

/** Starts a spawner keeping `size` shims ahead; resolves once its helper has them all. */
async function pooledSpawner(spawners: ShimSpawner[], size: number): Promise<{ s: ShimSpawner; helper: number }> {
  const s = new ShimSpawner(SHIM, silent, size);
  spawners.push(s);
  const before = new Set(helpers());
  // The helper starts with the first request: one that needs no shim.
  const cancel = s.watchPid(process.pid, () => true, () => {});
  const helper = await waitFor('the helper', () => helpers().find((pid) => !before.has(pid)));
  cancel();
  await waitFor(`${size} pooled shims`, () => pooledShimsOf(helper).length === size);
  return { s, helper };
}

describe('the shim spawner', () => {
  const spawners: ShimSpawner[] = [];
  const executors: TestExecutor[] = [];
  after(async () => {
    for (const spawner of spawners) spawner.close();
    for (const te of executors) await te.close();
  });
  const spawner = () => {
    const s = new ShimSpawner(SHIM, silent);
    spawners.push(s);
    return s;
  };

  test("relays a shim's event lines in order and its exit status", async () => {
    const dir = tempDir('te-spawner-');
    const shim = await spawner().spawn(['--dir', dir, '--', 'sh', '-c', 'exit 3'], { PATH: process.env.PATH });
    assert.equal(JSON.parse((await shim.nextLine())!).event, 'started');
    const exited = JSON.parse((await shim.nextLine())!);
    assert.equal(exited.event, 'exited');
    assert.equal(exited.exitCode, 3);
    assert.equal(await shim.nextLine(), undefined, 'stdout ended');
    assert.equal(await shim.exited, '0');
    assert.equal(shim.lost, false);
  });

  test("reports a shim that fails to set itself up with its stderr and exit code", async () => {
    const shim = await spawner().spawn(['--no-such-option'], {});
    assert.equal(await shim.nextLine(), undefined);
    assert.equal(await shim.exited, '2');
    assert.match(shim.stderr.join('\n'), /no-such-option|usage/i);
  });

  test("a CR in a shim's line is relayed as part of it, never read as a reply about another shim", async () => {
    const s = spawner();
    const waiting = await s.spawn(['--dir', tempDir('te-spawner-'), '--gate', '1', '--', 'true'], { PATH: process.env.PATH }, { gated: true });
    // The helper's replies are "ID KIND TEXT" lines; the usage message quotes this argument, CR and all.
    const bad = await s.spawn([`bogus\r1 exit 9`], {});
    assert.equal(await bad.exited, '2');
    assert.match(bad.stderr.join('\n'), /bogus\r1 exit 9/);
    const settled = await Promise.race([waiting.exited.then(() => 'exited'), Promise.resolve('running')]);
    assert.equal(settled, 'running', 'the gated shim is still waiting at its gate');
    waiting.abort();
    assert.equal(await waiting.exited, '0');
  });

  test('refuses an argument with a NUL byte, which exec could not pass', async () => {
    await assert.rejects(spawner().spawn(['--dir', 'a\0b'], {}), /NUL byte/);
  });

  test('a shim outlives the helper, which says its lines are lost; the next start begins a new helper', async () => {
    const s = spawner();
    const dir = tempDir('te-spawner-');
    const before = new Set(helpers());
    const shim = await s.spawn(['--dir', dir, '--', 'sleep', '1000'], { PATH: process.env.PATH });
    const started = JSON.parse((await shim.nextLine())!) as { event: string; pgid: number };
    assert.equal(started.event, 'started');
    const [helper] = helpers().filter((pid) => !before.has(pid));
    assert.ok(helper, 'a helper was started');
    assert.equal(parentOf(shim.pid), helper, 'the helper, not this process, forked the shim');
    process.kill(helper, 'SIGKILL');
    assert.equal(await shim.nextLine(), undefined);
    assert.equal(shim.lost, true);
    assert.ok(isAlive(shim.pid), 'the shim still runs');
    const next = await s.spawn(['--dir', tempDir('te-spawner-'), '--', 'true'], { PATH: process.env.PATH });
    assert.equal(JSON.parse((await next.nextLine())!).event, 'started');
    process.kill(-started.pgid, 'SIGKILL');
    await waitFor('the shim to end with its task', () => !isAlive(shim.pid));
  });

  test('the executor does not fork itself to start a task, and gets over the loss of its spawner', async () => {
    const before = new Set(helpers());
    const te = await startTestExecutor({ stopGraceMs: 1000 });
    executors.push(te);
    const gate = join(tempDir('te-gate-'), 'open');
    await te.api.createTask({ task: shell('survivor', `while [ ! -e ${gate} ]; do sleep 0.05; done; exit 5`) });
    const [helper] = helpers().filter((pid) => !before.has(pid));
    assert.ok(helper, 'the executor started a spawner');
    const start = JSON.parse(readFileSync(join(te.dataDir, 'survivor', 'start.json'), 'utf8')) as { shimPid: number };
    assert.equal(parentOf(start.shimPid), helper, "the shim is the spawner's child, not the executor's");

    process.kill(helper, 'SIGKILL');
    await waitFor('the spawner to be gone', () => !isAlive(helper));
    const { task } = await te.api.createTask({ task: processTask('after', ['sleep', '1000']) });
    assert.equal(stateOf(task)?.$case, 'running', `a task starts after the spawner was lost: ${JSON.stringify(stateOf(task))}`);
    writeFileSync(gate, '');
    const ended = await waitFor('the first task to end', async () => terminated((await te.api.getTask({ name: 'survivor' })).task));
    assert.equal(ended.exitCode, 5, 'its exit is still seen');
  });

  test('a Create whose start is under way when the spawner dies is started by the next spawner, once', async () => {
    const before = new Set(helpers());
    const te = await startTestExecutor({ stopGraceMs: 1000 });
    executors.push(te);
    await te.api.createTask({ task: processTask('first', ['sleep', '1000']) });
    const [helper] = helpers().filter((pid) => !before.has(pid));
    assert.ok(helper, 'the executor started a spawner');
    const runs = join(tempDir('te-runs-'), 'runs');
    // The request is written before the executor has seen the spawner's end (no turn of the loop between).
    process.kill(helper, 'SIGKILL');
    const { task } = await te.api.createTask({ task: shell('again', `echo ran >> ${runs}; exec sleep 1000`) });
    assert.equal(stateOf(task)?.$case, 'running', `the start is made again: ${JSON.stringify(stateOf(task))}`);
    await waitFor('the task to write its line', () => existsSync(runs));
    assert.equal(readFileSync(runs, 'utf8'), 'ran\n', 'the task ran once');
  });

  describe('with shims started ahead (--pool)', () => {
    test('a pooled shim starts its task with exactly the arguments and environment of the request', async () => {
      const { s, helper } = await pooledSpawner(spawners, 1);
      const [pooled] = pooledShimsOf(helper);
      const dir = tempDir('te-pool-');
      const env = { PATH: process.env.PATH, ONE: 'a b', EMPTY: '', 'WITH=EQUALS': 'x=y', TASK_SHIM_POOL_TEST: 'é\t' };
      const script = 'for a in "$0" "$@"; do printf "[%s]\\n" "$a"; done; exec env';
      const shim = await s.spawn(['--dir', dir, '--gate', '1', '--plain-logs', '1', '--', 'sh', '-c', script, 'zero', 'b c', '', '-x'], env, { gated: true });
      assert.equal(shim.pid, pooled, 'the pooled shim took the start');
      shim.go();
      assert.equal(JSON.parse((await shim.nextLine())!).event, 'started');
      assert.equal(JSON.parse((await shim.nextLine())!).event, 'exited');
      const [args, envOut] = readFileSync(join(dir, 'stdout.log'), 'utf8').split(/(?<=\[-x\]\n)/);
      assert.equal(args, '[zero]\n[b c]\n[]\n[-x]\n');
      const printed = envOut!.trimEnd().split('\n').filter((line) => !line.startsWith('PWD=')).sort(); // sh exports PWD itself
      assert.deepEqual(printed, Object.entries(env).map(([k, v]) => `${k}=${v}`).sort());
    });

    test("a task cannot read the executor's environment from its pooled shim's /proc environ", async () => {
      // Exec'ed for the request, a shim's initial environment was the task's own; a pooled one was exec'ed
      // ahead, and a task of the same user (cleanEnv or not) reads its parent's /proc/PID/environ.
      process.env.TE_POOL_EXECUTOR_SECRET = 'hunter2';
      let started: { s: ShimSpawner; helper: number };
      try {
        started = await pooledSpawner(spawners, 1);
      } finally {
        delete process.env.TE_POOL_EXECUTOR_SECRET;
      }
      const { s, helper } = started;
      const [pooled] = pooledShimsOf(helper);
      const dir = tempDir('te-pool-');
      const script = 'echo "$PPID"; tr "\\0" "\\n" < /proc/$PPID/environ';
      const shim = await s.spawn(['--dir', dir, '--gate', '1', '--plain-logs', '1', '--', '/bin/sh', '-c', script], { ONLY: 'this' }, { gated: true });
      assert.equal(shim.pid, pooled, 'the pooled shim took the start');
      shim.go();
      assert.equal(await shim.exited, '0');
      const [parent, ...environ] = readFileSync(join(dir, 'stdout.log'), 'utf8').split('\n');
      assert.equal(Number(parent), shim.pid, "the task read its pooled shim's environ");
      // Not printed on failure: it would be the whole environment of the test run.
      assert.ok(!environ.some((entry) => entry.startsWith('TE_POOL_EXECUTOR_SECRET=')), "the executor's variable is in the pooled shim's environ");
    });

    test('a pooled shim is found by its --dir while it waits at its gate, and the pool refills after use', async () => {
      const { s, helper } = await pooledSpawner(spawners, 1);
      const [pooled] = pooledShimsOf(helper);
      const dir = tempDir('te-pool-');
      const shim = await s.spawn(['--dir', dir, '--gate', '1', '--', 'true'], { PATH: process.env.PATH }, { gated: true });
      assert.equal(shim.pid, pooled);
      await waitFor('the shim to be found by its --dir', () => shimsFor(dir).some((found) => found.pid === pooled));
      assert.deepEqual(argvOf(shim.pid).slice(0, 5), [SHIM, '--dir', dir, '--gate', '1']);
      const [next] = await waitFor('a new pooled shim', () => (pooledShimsOf(helper).length === 1 ? pooledShimsOf(helper) : false));
      assert.notEqual(next, pooled);
      shim.go();
      assert.equal(JSON.parse((await shim.nextLine())!).event, 'started');
      assert.equal(await shim.exited, '0');
    });

    test('an aborted pooled start leaves without starting its task', async () => {
      const { s, helper } = await pooledSpawner(spawners, 1);
      const [pooled] = pooledShimsOf(helper);
      const dir = tempDir('te-pool-');
      const marker = join(dir, 'ran');
      const shim = await s.spawn(['--dir', dir, '--gate', '1', '--', 'touch', marker], { PATH: process.env.PATH }, { gated: true });
      assert.equal(shim.pid, pooled);
      shim.abort();
      assert.equal(await shim.exited, '0');
      assert.equal(await shim.nextLine(), undefined, 'no event');
      assert.equal(existsSync(marker), false);
      assert.equal(existsSync(join(dir, 'start.json')), false);
    });

    test('a go that comes before the pooled shim took its arguments is held: a shim the executor cannot find never starts its task', async () => {
      const { s, helper } = await pooledSpawner(spawners, 1);
      const [pooled] = pooledShimsOf(helper);
      process.kill(pooled!, 'SIGSTOP'); // it will not read its request, rewrite its command line or say it is ready
      const dir = tempDir('te-pool-');
      const marker = join(dir, 'ran');
      const shim = await s.spawn(['--dir', dir, '--gate', '1', '--', 'touch', marker], { PATH: process.env.PATH }, { gated: true });
      assert.equal(shim.pid, pooled);
      shim.go();
      // The helper answers requests in order: once this watch is open, it has handled the go.
      await new Promise<void>((resolve) => {
        s.watchPid(
          process.pid,
          () => {
            resolve();
            return true;
          },
          () => {},
        );
      });
      process.kill(helper, 'SIGKILL'); // as when the executor dies: the gate closes
      await waitFor('the helper to be gone', () => !isAlive(helper));
      process.kill(pooled!, 'SIGCONT');
      await waitFor('the pooled shim to leave', () => !isAlive(pooled!));
      assert.equal(existsSync(marker), false, 'the task never ran');
      assert.equal(existsSync(join(dir, 'start.json')), false);
    });

    test('a pooled shim killed while it waits is replaced without a word, and the next start works', async () => {
      const { s, helper } = await pooledSpawner(spawners, 1);
      const [pooled] = pooledShimsOf(helper);
      process.kill(pooled!, 'SIGKILL');
      const [replacement] = await waitFor('a replacement', () => (pooledShimsOf(helper).length === 1 && !pooledShimsOf(helper).includes(pooled!) ? pooledShimsOf(helper) : false));
      const shim = await s.spawn(['--dir', tempDir('te-pool-'), '--gate', '1', '--', 'true'], { PATH: process.env.PATH }, { gated: true });
      assert.equal(shim.pid, replacement);
      shim.go();
      assert.equal(JSON.parse((await shim.nextLine())!).event, 'started');
      assert.equal(await shim.exited, '0');
    });

    test("the spawner, its pooled shims and the data dir lock's holder do not keep descriptors the executor inherited without close-on-exec", () => {
      const script = new URL('../support/spawner-fds.ts', import.meta.url).pathname;
      const result = spawnSync('bash', ['-c', 'exec "$0" --import tsx "$1" 100<"$1"', process.execPath, script], { timeout: 30_000, encoding: 'utf8' });
      assert.equal(result.status, 0, result.stderr);
      const seen = JSON.parse(result.stdout.trim().split('\n').at(-1)!) as { inherited: string; spawner: string[]; pooled: string[]; locker: string[] };
      assert.equal(seen.inherited, script);
      assert.ok(!seen.spawner.includes(seen.inherited), `the spawner holds the executor's inherited ${seen.inherited}: ${seen.spawner.join(', ')}`);
      assert.ok(!seen.pooled.includes(seen.inherited), `a pooled shim holds the executor's inherited ${seen.inherited}: ${seen.pooled.join(', ')}`);
      assert.ok(!seen.locker.includes(seen.inherited), `the lock's holder holds the executor's inherited ${seen.inherited}: ${seen.locker.join(', ')}`);
    });

    test('shims started ahead and never used exit with the helper, leaving nothing', async () => {
      const { s, helper } = await pooledSpawner(spawners, 2);
      const pooled = pooledShimsOf(helper);
      assert.equal(pooled.length, 2);
      s.close();
      await waitFor('the pooled shims to exit', () => pooled.every((pid) => !isAlive(pid) || argvOf(pid)[1] !== '--pooled'));
      await waitFor('the helper to exit', () => !isAlive(helper));
    });

    test('a start whose --dir does not fit a pooled command line gets a shim of its own', async () => {
      const { s, helper } = await pooledSpawner(spawners, 1);
      const [pooled] = pooledShimsOf(helper);
      const dir = `/${'d'.repeat(4200)}`; // longer than PATH_MAX: no pooled command line has room for it
      const shim = await s.spawn(['--dir', dir, '--gate', '1', '--', 'true'], { PATH: process.env.PATH }, { gated: true });
      assert.notEqual(shim.pid, pooled);
      assert.equal(await shim.exited, '1', 'it cannot open that directory');
      assert.deepEqual(pooledShimsOf(helper), [pooled], 'the pooled shim still waits');
    });

    test('a start without a gate, which nothing holds back, gets a shim of its own, found by its --dir from its exec', async () => {
      const { s, helper } = await pooledSpawner(spawners, 1);
      const [pooled] = pooledShimsOf(helper);
      const shim = await s.spawn(['--dir', tempDir('te-pool-'), '--', 'true'], { PATH: process.env.PATH });
      assert.notEqual(shim.pid, pooled);
      assert.equal(JSON.parse((await shim.nextLine())!).event, 'started');
      assert.deepEqual(pooledShimsOf(helper), [pooled], 'the pooled shim still waits');
    });
  });
});
