// Resource limits through cgroups, OOM detection, and the cgroup-wide kill of
// a stop, against a real executor and real processes. The cgroup tests need
// root and a cgroup filesystem (CI has both); elsewhere they are skipped.
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism, loadavg } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { after, before, describe, test } from 'node:test';
import { status, type ServiceError } from '@grpc/grpc-js';
import pino from 'pino';
import { StatsRequest, type StatsResponse } from '../../gen/taskexecutor/v1/task_executor_service.js';
import { CgroupManager, detectLayout, layoutFromProc, scopeOf } from '../../src/runtime/cgroups/index.js';
import { clockTicks, readStat } from '../../src/runtime/process/procfs.js';
import { shell, startTestExecutor, stateOf, tempDir, terminated, type TestExecutor } from '../support/executor.js';
import { isAlive } from '../support/processes.js';
import { waitFor } from '../support/wait.js';

const MiB = 1024 * 1024;
const isRoot = process.getuid?.() === 0;
const cgroupsUsable = isRoot && detectLayout().version !== 0;
const UNIFIED = '/sys/fs/cgroup/unified';
const silent = pino({ level: 'silent' });

interface Received {
  message: StatsResponse;
  /** When the test received it (monotonic ms), and CPU ticks the test read from /proc right then. */
  at: number;
  ticks?: number;
}

/** Every message of a Stats call until it ends (or until `stopAfter` messages). */
function collectStats(te: TestExecutor, request: Partial<StatsRequest>, stopAfter?: number, ticks?: () => number) {
  const call = te.client.stats(StatsRequest.fromPartial(request));
  const received: Received[] = [];
  return new Promise<{ received: Received[]; messages: StatsResponse[]; error?: ServiceError }>((resolve) => {
    const finish = (error?: ServiceError) => resolve({ received, messages: received.map((r) => r.message), error });
    call.on('data', (message: StatsResponse) => {
      received.push({ message, at: performance.now(), ticks: ticks?.() });
      if (stopAfter !== undefined && received.length >= stopAfter) call.cancel();
    });
    call.on('error', (error: ServiceError) => finish(error.code === status.CANCELLED ? undefined : error));
    call.on('end', () => finish());
  });
}

/** utime+stime of some processes, in clock ticks, read from /proc. */
const ticksOf = (pids: number[]) =>
  pids.reduce((sum, pid) => {
    const stat = readStat(pid);
    return stat ? sum + stat.utime + stat.stime : sum;
  }, 0);

/** CPU percent the test itself measured from /proc between two received messages. */
const percentBetween = (from: Received, to: Received) => (((to.ticks! - from.ticks!) / clockTicks()) * 1000 * 100) / (to.at - from.at);

const mean = (values: number[]) => values.reduce((a, b) => a + b, 0) / values.length;

/** The machine's 1-minute load average per core: above 1, CPU shares are contended. */
const loadPerCore = () => loadavg()[0]! / availableParallelism();

const readLog = (te: TestExecutor, name: string) => {
  const dir = join(te.dataDir, name, 'logs');
  return existsSync(dir)
    ? readdirSync(dir)
        .sort()
        .map((file) => readFileSync(join(dir, file), 'utf8'))
        .join('')
    : '';
};

const readPid = (file: string) => {
  try {
    const pid = Number(readFileSync(file, 'utf8').trim());
    return pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
};

const startRecord = (te: TestExecutor, name: string) =>
  JSON.parse(readFileSync(join(te.dataDir, name, 'start.json'), 'utf8')) as { pid: number; pgid: number; shimPid: number };

async function endOf(te: TestExecutor, name: string) {
  return waitFor(`${name} to terminate`, async () => terminated((await te.api.getTask({ name })).task), { timeoutMs: 15_000 });
}

async function deleteAndWait(te: TestExecutor, name: string) {
  await te.api.deleteTask({ name });
  await waitFor(`${name} to be removed`, () =>
    te.api.getTask({ name }).then(
      () => false,
      (error: ServiceError) => error.code === status.NOT_FOUND,
    ),
  );
}

/** Existing cgroup directories of an executor's data dir, in every hierarchy. */
function scopeDirsLeft(dataDir: string, cgroups = new CgroupManager({ log: silent })): string[] {
  return cgroups.scopeDirs(scopeOf(dataDir)).filter((dir) => existsSync(dir));
}

/** Test hygiene: kills whatever is left in the executor's task cgroups, then removes them. */
async function removeScope(dataDir: string, cgroups = new CgroupManager({ log: silent })): Promise<void> {
  for (const dir of scopeDirsLeft(dataDir, cgroups)) {
    // Every cgroup.procs below the scope: task cgroups and the cgroups tasks nested in them.
    const procsFiles = (readdirSync(dir, { recursive: true }) as string[]).filter((path) => path.endsWith('cgroup.procs'));
    for (const file of procsFiles) {
      for (const pid of readFileSync(join(dir, file), 'utf8').split('\n').filter(Boolean)) {
        try {
          process.kill(Number(pid), 'SIGKILL');
        } catch {
          // gone
        }
      }
    }
  }
  await waitFor('the cgroups to empty', async () => {
    await cgroups.sweep(scopeOf(dataDir), () => false);
    return scopeDirsLeft(dataDir, cgroups).length === 0;
  }).catch(() => undefined);
}

describe('resource limits through cgroups', { skip: !cgroupsUsable && 'needs root and a cgroup filesystem' }, () => {
  let te: TestExecutor;
  const scratch = tempDir('te-limits-');
  before(async () => {
    te = await startTestExecutor({ stopGraceMs: 500 });
  });
  after(async () => {
    await te.close();
    await removeScope(te.dataDir);
  });

  test('a task that exceeds its memory limit ends OOMKilled with exit code 137', async () => {
    // tail keeps the whole (newline-free) input in memory: 300 MiB against a 64 MiB limit.
    await te.api.createTask({ task: shell('memory-hog', 'head -c 300M /dev/zero | tail', {}, { resources: { memoryBytes: 64 * MiB } }) });
    const end = await endOf(te, 'memory-hog');
    assert.equal(end.reason, 'OOMKilled', JSON.stringify(end));
    assert.equal(end.exitCode, 137);
    assert.match(end.message, /memory limit of 64 MiB exceeded/);
    const { task } = await te.api.getTask({ name: 'memory-hog' });
    assert.deepEqual(task?.status?.warnings, []);
  });

  test('a task that is killed by SIGKILL without running out of memory is not reported as OOMKilled', async () => {
    await te.api.createTask({ task: shell('self-kill', 'kill -KILL $$', {}, { resources: { memoryBytes: 64 * MiB } }) });
    const end = await endOf(te, 'self-kill');
    assert.equal(end.exitCode, 137);
    assert.equal(end.reason, 'Failed');
  });

  test('a pids limit makes fork fail inside the task', async () => {
    // The subshell, its sleeps and the main shell count: with 4 allowed, the third sleep cannot be forked.
    const script = '(for i in 1 2 3 4 5 6; do sleep 300 & done) 2>&1; echo "subshell exit $?"; exec sleep 300';
    await te.api.createTask({ task: shell('fork-limited', script, {}, { resources: { pids: 4 } }) });
    const log = await waitFor('the subshell to report', () => {
      const text = readLog(te, 'fork-limited');
      return /subshell exit \d+/.test(text) && text;
    });
    assert.match(log, /Cannot fork/);
    assert.match(log, /subshell exit 2/);
    const { messages, error } = await collectStats(te, { name: 'fork-limited', oneShot: true });
    assert.equal(error, undefined);
    assert.equal(messages[0]?.pids?.limit, 4);
    assert.ok((messages[0]?.pids?.current ?? 99) <= 4, JSON.stringify(messages[0]?.pids));
    await deleteAndWait(te, 'fork-limited');
  });

  test('a CPU limit of 500 millicores holds a busy loop near 50% in Stats', async () => {
    await te.api.createTask({ task: shell('cpu-limited', 'while :; do :; done', {}, { resources: { cpuMillicores: 500 } }) });
    const { pid } = startRecord(te, 'cpu-limited');
    const { received, error } = await collectStats(te, { name: 'cpu-limited', interval: { seconds: 1, nanos: 0 } }, 4, () => ticksOf([pid]));
    assert.equal(error, undefined);
    // The first message covers only ~100 ms (one CFS period): judge the three 1 s windows after it.
    const percents = received.slice(1).map((r) => r.message.cpu?.usagePercent ?? NaN);
    const statsPercent = mean(percents);
    const procPercent = percentBetween(received[0]!, received[3]!);
    const detail = `Stats ${percents.map((p) => p.toFixed(1)).join(', ')}; /proc ${procPercent.toFixed(1)}`;
    assert.ok(statsPercent < 60, `the quota caps the loop at 50%: ${detail}`);
    assert.ok(Math.abs(statsPercent - procPercent) < 8, `Stats agrees with /proc: ${detail}`);
    // Only a machine busy with other work (parallel test runs) gives the loop less than its quota.
    if (loadPerCore() < 1) assert.ok(statsPercent > 40, detail);
    assert.equal(received[1]?.message.cpu?.limitMillicores, 500);
    await deleteAndWait(te, 'cpu-limited');
  });

  test('delete kills, through the cgroup, a SIGTERM-ignoring daemon that left the process group and its supervisor', async () => {
    const daemonPid = join(scratch, 'daemon.pid');
    // Double fork + setsid: the daemon leaves the process group and is adopted by the shim...
    const script = `(setsid sh -c 'trap "" TERM; echo $$ > ${daemonPid}; while :; do sleep 1; done' </dev/null >/dev/null 2>&1 &); exec sleep 1000`;
    await te.api.createTask({ task: shell('escaped-daemon', script) });
    const daemon = await waitFor('the daemon to start', () => readPid(daemonPid));
    const start = startRecord(te, 'escaped-daemon');
    assert.notEqual(Number(readFileSync(`/proc/${daemon}/stat`, 'utf8').split(') ')[1]!.split(' ')[2]), start.pgid);
    // ...and once the shim is gone it belongs to no tree the executor can walk: only the cgroup still holds it.
    process.kill(start.shimPid, 'SIGKILL');
    await waitFor('the shim to die', () => !isAlive(start.shimPid));
    assert.equal(stateOf((await te.api.getTask({ name: 'escaped-daemon' })).task)?.$case, 'running');
    await deleteAndWait(te, 'escaped-daemon');
    await waitFor('the daemon to be killed', () => !isAlive(daemon), { timeoutMs: 5000 });
  });

  test('delete kills a daemon that moved into cgroups nested in the task cgroups, and removes them all', async () => {
    const daemonPid = join(scratch, 'nested.pid');
    const escapeScript = join(scratch, 'escape-v1.sh');
    // In every hierarchy of the task's cgroup (the lines naming the executor's subtree in
    // /proc/self/cgroup), into a cgroup nested in it: out of each task cgroup.procs.
    writeFileSync(
      escapeScript,
      'grep task-executor /proc/self/cgroup | while IFS=: read -r _ controllers path; do\n' +
        '  mkdir "/sys/fs/cgroup/$controllers$path/escaped" && echo $$ > "/sys/fs/cgroup/$controllers$path/escaped/cgroup.procs" || exit 1\n' +
        'done || exit 1\ntrap "" TERM\necho $$ > "$1"\nwhile :; do sleep 1; done\n',
    );
    await te.api.createTask({ task: shell('nested-daemon', `(setsid sh ${escapeScript} ${daemonPid} </dev/null >/dev/null 2>&1 &); exec sleep 1000`) });
    const daemon = await waitFor('the daemon to start', () => readPid(daemonPid));
    const leaves = scopeDirsLeft(te.dataDir).map((dir) => join(dir, 'nested-daemon'));
    assert.ok(leaves.length > 0);
    for (const leaf of leaves) assert.ok(readFileSync(join(leaf, 'escaped', 'cgroup.procs'), 'utf8').split('\n').includes(String(daemon)), leaf);
    const { shimPid } = startRecord(te, 'nested-daemon');
    process.kill(shimPid, 'SIGKILL');
    await waitFor('the shim to die', () => !isAlive(shimPid));
    await deleteAndWait(te, 'nested-daemon');
    await waitFor('the daemon to be killed', () => !isAlive(daemon), { timeoutMs: 5000 });
    assert.deepEqual(leaves.filter((leaf) => existsSync(leaf)), []);
  });

  test('deleting a task that already exited keeps the processes it left running, and their cgroup', async () => {
    const pidFile = join(scratch, 'background.pid');
    await te.api.createTask({ task: shell('bootstrap', `sleep 1000 >/dev/null 2>&1 & echo $! > ${pidFile}`) });
    assert.equal((await endOf(te, 'bootstrap')).exitCode, 0);
    const background = readPid(pidFile)!;
    await deleteAndWait(te, 'bootstrap');
    assert.ok(isAlive(background), 'the background process of a finished task must survive its deletion');
    const left = scopeDirsLeft(te.dataDir).filter((dir) => existsSync(join(dir, 'bootstrap')));
    assert.ok(left.length > 0, 'the cgroup with a live process stays');
    process.kill(background, 'SIGKILL');
    await waitFor('the background process to die', () => !isAlive(background));
    // A sweep shortly after the next release removes the now empty cgroup of the deleted task.
    await te.api.createTask({ task: shell('sweeper', 'true') });
    await endOf(te, 'sweeper');
    await deleteAndWait(te, 'sweeper');
    await waitFor('the empty cgroup to be swept', () => scopeDirsLeft(te.dataDir).filter((dir) => existsSync(join(dir, 'bootstrap'))).length === 0);
  });

  test('deleting every finished task leaves no cgroup behind', async () => {
    await te.api.createTask({ task: shell('plain', 'sleep 30') });
    await te.api.setTasks({ tasks: [] });
    await waitFor('every task to be removed', async () => (await te.api.listTasks()).tasks.length === 0, { timeoutMs: 15_000 });
    assert.deepEqual(scopeDirsLeft(te.dataDir), []);
  });
});

describe('after an executor restart', { skip: !cgroupsUsable && 'needs root and a cgroup filesystem' }, () => {
  const dataDir = tempDir('te-limits-restart-');
  const go = join(dataDir, 'go');
  let te: TestExecutor | undefined;
  after(async () => {
    await te?.close();
    await removeScope(dataDir);
  });

  test('an OOM kill that happened while the executor was down is still reported as OOMKilled', async () => {
    const first = await startTestExecutor({ stopGraceMs: 500 }, dataDir);
    const script = `while [ ! -e ${go} ]; do sleep 0.05; done; head -c 300M /dev/zero | tail`;
    await first.api.createTask({ task: shell('late-hog', script, {}, { resources: { memoryBytes: 64 * MiB } }) });
    await first.stop(); // tasks keep running; the cgroup is in the persisted handle
    writeFileSync(go, '');
    await waitFor('the task to end while no executor runs', () => existsSync(join(dataDir, 'late-hog', 'exit.json')));
    te = await startTestExecutor({ stopGraceMs: 500 }, dataDir);
    const end = await endOf(te, 'late-hog');
    assert.equal(end.reason, 'OOMKilled');
    assert.equal(end.exitCode, 137);
    await deleteAndWait(te, 'late-hog');
    assert.deepEqual(scopeDirsLeft(dataDir), []);
  });
});

describe('without usable cgroups', () => {
  let te: TestExecutor;
  before(async () => {
    te = await startTestExecutor({ stopGraceMs: 500, cgroupRoot: '/nonexistent/cgroup-root' });
  });
  after(async () => te.close());

  test('a task with limits still runs and its status says the limits are not enforced', async () => {
    const resources = { memoryBytes: 64 * MiB, cpuMillicores: 500, pids: 10 };
    const { task } = await te.api.createTask({ task: shell('unlimited', 'while :; do :; done', {}, { resources }) });
    assert.equal(stateOf(task)?.$case, 'running');
    assert.deepEqual(task?.status?.warnings, ['resource limits not enforced: no cgroup filesystem found at /nonexistent/cgroup-root']);
    const { warnings } = (await te.api.getTask({ name: 'unlimited' })).task!.status!;
    assert.equal(warnings.length, 1);
  });

  test('Stats falls back to /proc: CPU, RSS and pids are measured, cgroup figures stay absent', async () => {
    const { pid } = startRecord(te, 'unlimited');
    const { received, error } = await collectStats(te, { name: 'unlimited', interval: { seconds: 0, nanos: 500_000_000 } }, 3, () => ticksOf([pid]));
    assert.equal(error, undefined);
    const last = received.at(-1)!.message;
    assert.ok((last.cpu?.usageNanoseconds ?? 0) > 0);
    const statsPercent = mean(received.slice(1).map((r) => r.message.cpu?.usagePercent ?? NaN));
    const procPercent = percentBetween(received[0]!, received[2]!);
    const detail = `Stats ${statsPercent.toFixed(1)}%, /proc ${procPercent.toFixed(1)}%`;
    assert.ok(Math.abs(statsPercent - procPercent) < Math.max(10, procPercent * 0.15), detail);
    if (loadPerCore() < 1) assert.ok(statsPercent > 60, `one unthrottled busy loop: about one core; ${detail}`);
    assert.ok((last.memory?.rssBytes ?? 0) > 0);
    assert.equal(last.memory?.usageBytes, undefined);
    assert.equal(last.memory?.limitBytes, undefined);
    assert.equal(last.pids?.current, 1);
    assert.equal(last.pids?.limit, undefined);
    assert.equal(last.cpu?.limitMillicores, undefined);
    await deleteAndWait(te, 'unlimited');
  });

  test('a task without limits has no warnings', async () => {
    const { task } = await te.api.createTask({ task: shell('no-limits', 'true') });
    assert.deepEqual(task?.status?.warnings, []);
    await endOf(te, 'no-limits');
    await deleteAndWait(te, 'no-limits');
  });
});

/**
 * A cgroup2 hierarchy to test the v2 implementation on, whatever this host
 * boots: the one mounted beside v1 (hybrid), the unified /sys/fs/cgroup, or,
 * when neither is mounted, a fresh `mount -t cgroup2` (the same hierarchy).
 */
function cgroup2Hierarchy(): { path: string; release(): void } {
  for (const path of [UNIFIED, '/sys/fs/cgroup']) {
    if (existsSync(join(path, 'cgroup.controllers'))) return { path, release: () => undefined };
  }
  const path = tempDir('te-cgroup2-');
  try {
    execFileSync('mount', ['-t', 'cgroup2', 'cgroup2', path], { stdio: 'pipe' });
  } catch (error) {
    const stderr = (error as { stderr?: Buffer }).stderr?.toString().trim();
    assert.fail(`no cgroup2 hierarchy is mounted and mounting one at ${path} failed (${stderr || String(error)}): the v2 tests need root and a kernel with cgroup2`);
  }
  return { path, release: () => execFileSync('umount', [path]) };
}

const cgroupEvents = (dir: string) => {
  const events = new Map<string, number>();
  for (const line of readFileSync(join(dir, 'cgroup.events'), 'utf8').split('\n')) {
    const [key, value] = line.split(' ');
    if (key && value) events.set(key, Number(value));
  }
  return events;
};
const procsOf = (dir: string) => readFileSync(join(dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean).map(Number);

describe('on a cgroup v2 hierarchy', { skip: !isRoot && 'needs root to create cgroups (and to mount cgroup2 where it is not mounted)' }, () => {
  // On a host that boots cgroup v1 the cgroup2 hierarchy has no v1-bound controller
  // (memory, cpu, io, pids): enough for membership, cgroup.events, cgroup.kill,
  // cgroup.freeze and cpu.stat, and a true test of the "controller not available" warning.
  let te: TestExecutor;
  let hierarchy: { path: string; release(): void };
  let controllers: Set<string>;
  const scratch = tempDir('te-limits-v2-');
  const cgroupsOn = () => new CgroupManager({ root: hierarchy.path, log: silent });
  const leafOf = (name: string) => join(cgroupsOn().scopeDirs(scopeOf(te.dataDir))[0]!, name);
  before(async () => {
    hierarchy = cgroup2Hierarchy();
    controllers = new Set(readFileSync(join(hierarchy.path, 'cgroup.controllers'), 'utf8').trim().split(/\s+/));
    te = await startTestExecutor({ stopGraceMs: 500, cgroupRoot: hierarchy.path });
  });
  after(async () => {
    await te?.close();
    if (te) await removeScope(te.dataDir, cgroupsOn());
    hierarchy?.release();
  });

  test('a task and the daemon it setsid-ed are members of its cgroup, which cgroup.events reports populated', async () => {
    const daemonPid = join(scratch, 'member.pid');
    const script = `(setsid sh -c 'echo $$ > ${daemonPid}; exec sleep 1000' </dev/null >/dev/null 2>&1 &); while :; do :; done`;
    const { task } = await te.api.createTask({ task: shell('v2-task', script, {}, { resources: { memoryBytes: 64 * MiB } }) });
    assert.equal(stateOf(task)?.$case, 'running');
    const leaf = leafOf('v2-task');
    if (controllers.has('memory')) {
      assert.deepEqual(task?.status?.warnings, []);
      assert.equal(readFileSync(join(leaf, 'memory.max'), 'utf8').trim(), String(64 * MiB));
    } else {
      assert.equal(task?.status?.warnings.length, 1);
      assert.match(task!.status!.warnings[0]!, /^resource limits not enforced: cgroup memory controller is not available/);
    }
    const { pid } = startRecord(te, 'v2-task');
    const daemon = await waitFor('the daemon to start', () => readPid(daemonPid));
    const members = procsOf(leaf);
    assert.ok(members.includes(pid) && members.includes(daemon), `${pid} and ${daemon} in ${members.join(' ')}`);
    assert.equal(cgroupEvents(leaf).get('populated'), 1);
    const { messages } = await collectStats(te, { name: 'v2-task', oneShot: true });
    assert.ok((messages[0]?.cpu?.usageNanoseconds ?? 0) > 0, 'cpu.stat usage_usec is read');
    assert.ok((messages[0]?.cpu?.usagePercent ?? 0) > 0, 'a busy loop uses CPU');
    await deleteAndWait(te, 'v2-task');
    assert.equal(isAlive(daemon), false);
    assert.equal(existsSync(leaf), false);
  });

  test('a stopped task leaves its cgroup unpopulated, and the delete removes it', async () => {
    const daemonPid = join(scratch, 'stopped.pid');
    const script = `(setsid sh -c 'trap "" TERM; echo $$ > ${daemonPid}; while :; do sleep 1; done' </dev/null >/dev/null 2>&1 &); exec sleep 1000`;
    await te.api.createTask({ task: shell('v2-timeout', script, { timeoutSeconds: 1 }) });
    const daemon = await waitFor('the daemon to start', () => readPid(daemonPid));
    const end = await endOf(te, 'v2-timeout');
    assert.equal(end.reason, 'TaskTimeout');
    // The task ends when its main process does; the stop kills what is left after the grace period.
    await waitFor('the SIGTERM-ignoring daemon to be killed', () => !isAlive(daemon), { timeoutMs: 5000 });
    const leaf = leafOf('v2-timeout');
    await waitFor('cgroup.events to say unpopulated', () => cgroupEvents(leaf).get('populated') === 0);
    assert.equal(existsSync(leaf), true, 'the cgroup stays until the task is deleted');
    await deleteAndWait(te, 'v2-timeout');
    assert.equal(existsSync(leaf), false);
  });

  test('delete kills with cgroup.kill a setsid-ed daemon that moved into a cgroup nested in the task cgroup, and removes both', async () => {
    const daemonPid = join(scratch, 'nested.pid');
    const escapeScript = join(scratch, 'escape.sh');
    // Out of the task's cgroup.procs, its process group and (once the shim is killed) any tree:
    // only a kill of the whole cgroup subtree reaches it.
    writeFileSync(
      escapeScript,
      'leaf="$2$(sed -n "s/^0:://p" /proc/self/cgroup)"\n' +
        'mkdir "$leaf/escaped" && echo $$ > "$leaf/escaped/cgroup.procs" || exit 1\n' +
        'trap "" TERM\necho $$ > "$1"\nwhile :; do sleep 1; done\n',
    );
    const script = `(setsid sh ${escapeScript} ${daemonPid} ${hierarchy.path} </dev/null >/dev/null 2>&1 &); exec sleep 1000`;
    await te.api.createTask({ task: shell('v2-daemon', script) });
    const daemon = await waitFor('the daemon to start', () => readPid(daemonPid));
    const leaf = leafOf('v2-daemon');
    assert.ok(procsOf(join(leaf, 'escaped')).includes(daemon));
    assert.equal(procsOf(leaf).includes(daemon), false);
    const { shimPid } = startRecord(te, 'v2-daemon');
    process.kill(shimPid, 'SIGKILL');
    await waitFor('the shim to die', () => !isAlive(shimPid));
    await deleteAndWait(te, 'v2-daemon');
    await waitFor('the daemon to be killed', () => !isAlive(daemon), { timeoutMs: 5000 });
    assert.equal(existsSync(leaf), false, 'the task cgroup and the nested one are removed');
    assert.deepEqual(scopeDirsLeft(te.dataDir, cgroupsOn()), []);
  });

  test('the service on v2: a cgroup is created, lists its members, is killed with its setsid-ed tree, and removed', async () => {
    const cgroups = cgroupsOn();
    const scope = scopeOf(scratch);
    const { cgroup, warnings } = cgroups.create(scope, 'direct', undefined);
    assert.deepEqual(warnings, []);
    assert.equal(cgroup?.version, 2);
    const leaf = cgroup!.dirs.unified!;
    // Joins the cgroup first, then starts two setsid-ed sessions (one with a child of its own).
    const shell = spawn('sh', ['-c', 'echo $$ > "$1/cgroup.procs"; setsid sleep 1000 & setsid sh -c "sleep 1000 & wait" & wait', 'sh', leaf], {
      detached: true,
      stdio: 'ignore',
    });
    const members = await waitFor('four processes in the cgroup', () => cgroups.pids(cgroup!)?.length === 4 && cgroups.pids(cgroup!)!);
    assert.ok(members.includes(shell.pid!));
    const groups = new Set(members.map((pid) => readStat(pid)?.pgid));
    assert.equal(groups.size, 3, 'the shell and two setsid-ed sessions: no process group holds the tree');
    assert.equal(cgroupEvents(leaf).get('populated'), 1);
    assert.ok(cgroups.usage(cgroup!).cpuNanoseconds! > 0, 'cpu.stat usage_usec');
    assert.equal(cgroups.oomKills(cgroup!), controllers.has('memory') ? 0 : undefined);
    assert.equal(await cgroups.kill(cgroup!), true);
    assert.equal(cgroupEvents(leaf).get('populated'), 0);
    assert.deepEqual(members.filter(isAlive), []);
    assert.deepEqual(await cgroups.remove(cgroup!), { busy: [] });
    assert.equal(existsSync(leaf), false);
    await cgroups.sweep(scope, () => false);
    assert.deepEqual(cgroups.scopeDirs(scope).filter(existsSync), []);
  });
});

describe('cgroup detection', () => {
  const selfV1 = '12:pids:/\n4:memory:/session/1\n2:cpu:/\n1:cpuacct:/\n0::/\n';
  const mount = (id: number, point: string, type: string, opts: string, root = '/') =>
    `${id} 1 0:${id} ${root} ${point} rw,relatime - ${type} ${type} rw,${opts}`;

  test('a hybrid host is v1, with task cgroups under the executor own cgroup of each hierarchy', () => {
    const mountinfo = [
      mount(32, '/sys/fs/cgroup/cpu', 'cgroup', 'cpu'),
      mount(33, '/sys/fs/cgroup/cpuacct', 'cgroup', 'cpuacct'),
      mount(35, '/sys/fs/cgroup/memory', 'cgroup', 'memory'),
      mount(39, '/sys/fs/cgroup/pids', 'cgroup', 'pids'),
      mount(41, '/sys/fs/cgroup/unified', 'cgroup2', 'nsdelegate'),
    ].join('\n');
    const layout = layoutFromProc(mountinfo, selfV1);
    assert.equal(layout.version, 1);
    if (layout.version !== 1) return;
    assert.equal(layout.parents.memory, '/sys/fs/cgroup/memory/session/1');
    assert.equal(layout.parents.cpu, '/sys/fs/cgroup/cpu');
    assert.equal(layout.parents.freezer, undefined);
    assert.equal(layout.missing.freezer, 'not mounted');
  });

  test('co-mounted cpu,cpuacct share one directory', () => {
    const layout = layoutFromProc(mount(32, '/sys/fs/cgroup/cpu,cpuacct', 'cgroup', 'cpu,cpuacct'), '3:cpu,cpuacct:/a\n');
    assert.ok(layout.version === 1 && layout.parents.cpu === '/sys/fs/cgroup/cpu,cpuacct/a' && layout.parents.cpuacct === layout.parents.cpu);
  });

  test('a unified host is v2; a container sees its own cgroup as the mount root', () => {
    assert.deepEqual(layoutFromProc(mount(30, '/sys/fs/cgroup', 'cgroup2', 'nsdelegate'), '0::/system.slice/te.service\n'), {
      version: 2,
      mountPoint: '/sys/fs/cgroup',
      parent: '/sys/fs/cgroup/system.slice/te.service',
    });
    const container = mount(30, '/sys/fs/cgroup', 'cgroup2', 'nsdelegate', '/kubepods/pod1/abc');
    const layout = layoutFromProc(container, '0::/kubepods/pod1/abc\n');
    assert.ok(layout.version === 2 && layout.parent === '/sys/fs/cgroup', JSON.stringify(layout));
  });

  test('no cgroup mount at all is "none", with a reason', () => {
    assert.deepEqual(layoutFromProc(mount(20, '/proc', 'proc', 'rw'), '0::/\n'), { version: 0, reason: 'no cgroup filesystem is mounted' });
  });
});
