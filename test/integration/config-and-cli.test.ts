import assert from 'node:assert/strict';
import { chownSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { after, describe, test } from 'node:test';
import { shell, tempDir } from '../support/executor.js';
import { killTaskTrees, pooledShimsOfExecutor } from '../support/processes.js';
import { connect, spawnExecutor } from '../support/subprocess.js';
import { waitFor } from '../support/wait.js';

describe('command line', () => {
  const cleanups: (() => unknown)[] = [];
  after(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup();
  });

  test('--help lists every flag and exits 0', async () => {
    const help = spawnExecutor(['--help']);
    assert.equal(await help.exited, 0);
    for (const flag of ['--data-dir', '--listen-addr', '--enable-sidecar-mode', '--main-container-name', '--enable-container-mode', '--cri-socket', '--reconcile-interval', '--stop-grace-period']) {
      assert.ok(help.output().includes(flag), `help mentions ${flag}`);
    }
  });

  test('a bad flag value is refused with a message and a non-zero exit', async () => {
    const bad = spawnExecutor(['--reconcile-interval', 'soon']);
    assert.notEqual(await bad.exited, 0);
    assert.match(bad.output(), /invalid duration "soon"/);
  });

  test('a gRPC keepalive or idle duration longer than a timer can wait is refused (a longer timer fires after 1 ms)', async () => {
    for (const flag of ['--grpc-keepalive-timeout', '--grpc-keepalive-time', '--grpc-max-connection-idle']) {
      // Where the value were taken, the executor would start and listen: stop it, then fail below.
      const bad = spawnExecutor([flag, '600h', '--data-dir', tempDir(), '--listen-addr', '127.0.0.1:0']);
      const started = waitFor('the executor to exit or listen', () => /listening|"address"/.test(bad.output()), { timeoutMs: 30_000 }).then(
        () => 'listening',
        () => 'neither',
      );
      const outcome = await Promise.race([bad.exited.then((code) => `exit ${code}`), started]);
      if (bad.child.exitCode === null) bad.child.kill('SIGKILL');
      await bad.exited;
      assert.notEqual(outcome, 'listening', `${flag} 600h: the executor started`);
      assert.notEqual(outcome, 'exit 0');
      assert.match(bad.output(), /at most 596h/, flag);
    }
  });

  test('an explicit data dir that cannot be written stops the start with a clear message', async () => {
    const bad = spawnExecutor(['--data-dir', '/etc/hostname/tasks', '--listen-addr', '127.0.0.1:0']);
    assert.equal(await bad.exited, 1);
    assert.match(bad.output(), /data dir \/etc\/hostname\/tasks is not writable/);
  });

  test('a non-root user starts with the default flags, falls back to a per-user data dir and says so', async () => {
    const home = tempDir('te-home-');
    mkdirSync(join(home, 'run'));
    chownSync(home, 65534, 65534);
    chownSync(join(home, 'run'), 65534, 65534);
    cleanups.push(() => rmSync(home, { recursive: true, force: true }));
    const env = { PATH: process.env.PATH, HOME: home };
    const socket = join(home, 'run', 'api.sock');
    const executor = spawnExecutor(['--listen-addr', `unix://${socket}`], env, ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups']);
    cleanups.push(() => executor.child.kill('SIGKILL'));
    const { api, client } = await connect(executor);
    const fallback = join(home, '.local/state/task-executor/tasks');
    assert.match(executor.output(), /default data dir is not writable; using per-user dir/);
    assert.ok(executor.output().includes(fallback));
    cleanups.push(() => killTaskTrees(fallback));
    await api.createTask({ task: shell('as-nobody', 'id -u') });
    const task = await waitFor('the task to end', async () => {
      const state = (await api.getTask({ name: 'as-nobody' })).task?.status?.state?.state;
      return state?.$case === 'terminated' ? state.value : undefined;
    });
    assert.equal(task.exitCode, 0);
    // The spawner keeps shims started ahead without any privilege: the next start is handed to one.
    const pooled = await waitFor('two pooled shims', () => {
      const found = pooledShimsOfExecutor(executor.child.pid ?? 0);
      return found.length === 2 && found;
    });
    await api.createTask({ task: shell('pooled-as-nobody', 'id -u') });
    const pooledRun = await waitFor('the pooled start to end', async () => {
      const state = (await api.getTask({ name: 'pooled-as-nobody' })).task?.status?.state?.state;
      return state?.$case === 'terminated' ? state.value : undefined;
    });
    assert.equal(pooledRun.exitCode, 0);
    const { shimPid } = JSON.parse(readFileSync(join(fallback, 'pooled-as-nobody', 'start.json'), 'utf8')) as { shimPid: number };
    assert.ok(pooled.includes(shimPid), 'a pooled shim ran it');
    client.close();
  });

  test('an unknown --metrics-auth is refused with the allowed values', async () => {
    const bad = spawnExecutor(['--metrics-auth', 'open']);
    assert.notEqual(await bad.exited, 0);
    assert.match(bad.output(), /--metrics-auth <mode>' argument 'open' is invalid. Allowed choices are api, none/);
  });

  test('the start-up log says which --metrics-auth is in force and what it requires', async () => {
    const tokenFile = join(tempDir('te-token-'), 'token');
    writeFileSync(tokenFile, 'a-very-secret-token-123');
    cleanups.push(() => rmSync(dirname(tokenFile), { recursive: true, force: true }));
    for (const [args, pattern] of [
      [['--auth-token-file', tokenFile], /metrics listening on \/metrics: --metrics-auth api \(plain HTTP, bearer token required\)/],
      [['--auth-token-file', tokenFile, '--metrics-auth=none'], /metrics listening on \/metrics: --metrics-auth none \(plain HTTP, no token\)/],
    ] as const) {
      const dataDir = tempDir();
      cleanups.push(() => rmSync(dataDir, { recursive: true, force: true }));
      const executor = spawnExecutor(['--data-dir', dataDir, '--listen-addr', '127.0.0.1:0', '--metrics-listen-addr', '127.0.0.1:0', ...args]);
      cleanups.push(() => executor.child.kill('SIGKILL'));
      const { client } = await connect(executor);
      client.close();
      assert.match(executor.output(), pattern);
    }
  });

  test('the start-up log states what tasks get: least privilege by default, the original with --task-capabilities all --task-seccomp unconfined', async () => {
    for (const [args, pattern] of [
      [[], /task privileges: root process tasks keep only CHOWN,DAC_OVERRIDE,FOWNER,FSETID,KILL,SETGID,SETUID,SETPCAP,NET_BIND_SERVICE,NET_RAW,SYS_CHROOT,MKNOD,AUDIT_WRITE,SETFCAP; non-root tasks none; the default seccomp profile/],
      [['--task-capabilities', 'all', '--task-seccomp', 'unconfined'], /task privileges: process tasks keep the executor's capabilities \(--task-capabilities all\); no seccomp filter \(--task-seccomp unconfined\)/],
    ] as const) {
      const dataDir = tempDir();
      cleanups.push(() => rmSync(dataDir, { recursive: true, force: true }));
      const executor = spawnExecutor(['--data-dir', dataDir, '--listen-addr', '127.0.0.1:0', ...args]);
      cleanups.push(() => executor.child.kill('SIGKILL'));
      const { client } = await connect(executor);
      client.close();
      assert.match(executor.output(), pattern);
    }
  });

  test('listening beyond loopback without authentication logs a loud warning', async () => {
    const dataDir = tempDir();
    const executor = spawnExecutor(['--data-dir', dataDir, '--listen-addr', '0.0.0.0:0']);
    cleanups.push(() => executor.child.kill('SIGKILL'));
    await connect(executor);
    assert.match(executor.output(), /"level":40.*no authentication/);
  });
});
