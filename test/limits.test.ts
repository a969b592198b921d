// Resource limits through cgroups, OOM detection, and the cgroup-wide kill of
// a stop, against a real executor and real processes. The cgroup tests need
// root and a cgroup filesystem (CI has both); elsewhere they are skipped.
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism, loadavg } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { after, before, describe, test } from 'node:test';
import { status, type ServiceError } from '@grpc/grpc-js';
import pino from 'pino';
import { StatsRequest, type StatsResponse } from '../gen/taskexecutor/v1/task_executor_service.js';
import { CgroupManager, detectLayout, layoutFromProc, scopeOf } from '../src/runtime/cgroups/index.js';
import { clockTicks, readStat } from '../src/runtime/process/procfs.js';
import { shell, startTestExecutor, stateOf, tempDir, terminated, type TestExecutor } from './support/executor.js';
import { isAlive } from './support/processes.js';
import { waitFor } from './support/wait.js';

const MiB = 1024 * 1024;
const isRoot = process.getuid?.() === 0;
const cgroupsUsable = isRoot && detectLayout().version !== 0;
const UNIFIED = '/sys/fs/cgroup/unified';
const hybridUnified = isRoot && existsSync(join(UNIFIED, 'cgroup.controllers')) && detectLayout().version === 1;
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
function scopeDirsLeft(dataDir: string, driver = new CgroupManager({ log: silent })): string[] {
  return driver.scopeDirs(scopeOf(dataDir)).filter((dir) => existsSync(dir));
}

/** Test hygiene: kills whatever is left in the executor's task cgroups, then removes them. */
async function removeScope(dataDir: string, driver = new CgroupManager({ log: silent })): Promise<void> {
  for (const dir of scopeDirsLeft(dataDir, driver)) {
    for (const leaf of readdirSync(dir, { withFileTypes: true })) {
      if (!leaf.isDirectory()) continue;
      for (const pid of readFileSync(join(dir, leaf.name, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean)) {
        try {
          process.kill(Number(pid), 'SIGKILL');
        } catch {
          // gone
        }
      }
    }
  }
  await waitFor('the cgroups to empty', async () => {
    await driver.sweep(scopeOf(dataDir), () => false);
    return scopeDirsLeft(dataDir, driver).length === 0;
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
    // The next release sweeps the now empty cgroup of the deleted task.
    await te.api.createTask({ task: shell('sweeper', 'true') });
    await endOf(te, 'sweeper');
    await deleteAndWait(te, 'sweeper');
    assert.deepEqual(
      scopeDirsLeft(te.dataDir).filter((dir) => existsSync(join(dir, 'bootstrap'))),
      [],
    );
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
    assert.ok(last.cpu?.usageNanoseconds! > 0);
    const statsPercent = mean(received.slice(1).map((r) => r.message.cpu?.usagePercent ?? NaN));
    const procPercent = percentBetween(received[0]!, received[2]!);
    const detail = `Stats ${statsPercent.toFixed(1)}%, /proc ${procPercent.toFixed(1)}%`;
    assert.ok(Math.abs(statsPercent - procPercent) < Math.max(10, procPercent * 0.15), detail);
    if (loadPerCore() < 1) assert.ok(statsPercent > 60, `one unthrottled busy loop: about one core; ${detail}`);
    assert.ok(last.memory?.rssBytes! > 0);
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

describe('on a cgroup v2 hierarchy', { skip: !hybridUnified && 'needs root and the hybrid cgroup2 mount at /sys/fs/cgroup/unified' }, () => {
  // The hybrid host's cgroup2 mount has no controllers: enough for cgroup.kill,
  // cgroup.procs and cpu.stat, and a true test of the "controller not available" warning.
  let te: TestExecutor;
  const scratch = tempDir('te-limits-v2-');
  const driver = () => new CgroupManager({ root: UNIFIED, log: silent });
  before(async () => {
    te = await startTestExecutor({ stopGraceMs: 500, cgroupRoot: UNIFIED });
  });
  after(async () => {
    await te.close();
    await removeScope(te.dataDir, driver());
  });

  test('a limit whose controller is not enabled is reported, and the task runs in its own cgroup', async () => {
    const { task } = await te.api.createTask({ task: shell('v2-task', 'while :; do :; done', {}, { resources: { memoryBytes: 64 * MiB } }) });
    assert.equal(stateOf(task)?.$case, 'running');
    assert.equal(task?.status?.warnings.length, 1);
    assert.match(task!.status!.warnings[0]!, /^resource limits not enforced: cgroup memory controller is not available/);
    const leaf = join(driver().scopeDirs(scopeOf(te.dataDir))[0]!, 'v2-task');
    const { pid } = startRecord(te, 'v2-task');
    assert.ok(readFileSync(join(leaf, 'cgroup.procs'), 'utf8').split('\n').includes(String(pid)));
    const { messages } = await collectStats(te, { name: 'v2-task', oneShot: true });
    assert.ok(messages[0]?.cpu?.usageNanoseconds! > 0, 'cpu.stat usage_usec is read');
    assert.ok(messages[0]?.cpu?.usagePercent! > 0, 'a busy loop uses CPU');
    await deleteAndWait(te, 'v2-task');
    assert.equal(existsSync(leaf), false);
  });

  test('delete kills an escaped daemon with cgroup.kill', async () => {
    const daemonPid = join(scratch, 'daemon.pid');
    const script = `(setsid sh -c 'trap "" TERM; echo $$ > ${daemonPid}; while :; do sleep 1; done' </dev/null >/dev/null 2>&1 &); exec sleep 1000`;
    await te.api.createTask({ task: shell('v2-daemon', script) });
    const daemon = await waitFor('the daemon to start', () => readPid(daemonPid));
    const { shimPid } = startRecord(te, 'v2-daemon');
    process.kill(shimPid, 'SIGKILL');
    await waitFor('the shim to die', () => !isAlive(shimPid));
    await deleteAndWait(te, 'v2-daemon');
    await waitFor('the daemon to be killed', () => !isAlive(daemon), { timeoutMs: 5000 });
    assert.deepEqual(scopeDirsLeft(te.dataDir, driver()), []);
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
