// The TypeScript client as an application gets it: `npm pack` the package, install the
// tarball into a scratch project (dependency install scripts off, as npm does when an
// application denies them), start the executor from the installed package (it builds its
// shim at first start), and run a controller that imports only `task-executor/client`.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { killTaskTrees } from '../support/processes.js';
import { connect, type ExecutorProcess, ROOT, spawnCommand } from '../support/subprocess.js';
import { tempDir } from '../support/executor.js';

const npm = (args: string[], cwd: string) =>
  execFileSync('npm', [...args, '--no-audit', '--no-fund', '--loglevel=error'], { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });

/** Every @grpc/grpc-js in the project's node_modules tree, nested ones included. */
function grpcCopies(dir: string): string[] {
  const found: string[] = [];
  const walk = (modules: string) => {
    if (!existsSync(modules)) return;
    for (const entry of readdirSync(modules)) {
      if (entry.startsWith('@')) {
        for (const scoped of readdirSync(join(modules, entry))) visit(join(modules, entry, scoped), `${entry}/${scoped}`);
      } else visit(join(modules, entry), entry);
    }
  };
  const visit = (path: string, name: string) => {
    if (name === '@grpc/grpc-js') found.push(path);
    walk(join(path, 'node_modules'));
  };
  walk(join(dir, 'node_modules'));
  return found;
}

describe('the task-executor/client package', { timeout: 240_000 }, () => {
  const scratch = tempDir('te-client-pkg-');
  const app = join(scratch, 'app');
  const installed = join(app, 'node_modules', 'task-executor');
  let executor: ExecutorProcess | undefined;

  before(() => {
    const tarball = npm(['pack', '--pack-destination', scratch, '--silent'], ROOT).trim().split('\n').pop()!;
    mkdirSync(app);
    writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'scratch-controller', private: true, type: 'module' }));
    npm(['install', '--ignore-scripts', join(scratch, tarball)], app);
  });

  after(async () => {
    executor?.child.kill('SIGTERM');
    await executor?.exited;
    killTaskTrees(join(scratch, 'data'));
    rmSync(scratch, { recursive: true, force: true });
  });

  test('installs with exactly one @grpc/grpc-js (a peer dependency) and without a built shim', () => {
    assert.deepEqual(grpcCopies(app), [join(app, 'node_modules', '@grpc', 'grpc-js')]);
    assert.equal(existsSync(join(installed, 'build', 'task-shim')), false, 'the install scripts were meant to be skipped');
    for (const file of ['task-shim.c', 'spawner.c', 'spawner.h']) {
      assert.ok(existsSync(join(installed, 'src', 'runtime', 'shim', file)), `the shim source ${file} ships`);
    }
  });

  test('a controller creates a task, follows its logs and watches it through task-executor/client alone', async () => {
    executor = spawnCommand(
      [process.execPath, join(installed, 'dist', 'src', 'main.js'), '--listen-addr', '127.0.0.1:0', '--data-dir', join(scratch, 'data')],
      { ...process.env, LOG_LEVEL: 'info' },
      app,
    );
    const { client, address } = await connect(executor);
    client.close();
    assert.ok(existsSync(join(installed, 'build', 'task-shim')), 'the executor built its shim at start');
    assert.match(executor.output(), /task-shim not built yet/);

    copyFileSync(join(ROOT, 'test', 'support', 'client-package', 'controller.mjs'), join(app, 'controller.mjs'));
    const report: unknown = JSON.parse(execFileSync(process.execPath, ['controller.mjs', address, 'from-the-package'], { cwd: app, encoding: 'utf8' }));
    assert.deepEqual(report, {
      created: 'from-the-package',
      lines: ['hello', 'world'],
      events: (report as { events: string[] }).events, // checked below: the order of MODIFIED events is the server's
      watchEnd: 'seen the end',
      exitCode: 3,
      missing: 'NOT_FOUND',
      expired: 'DEADLINE_EXCEEDED',
      abortedWith: 'caller gave up',
      listed: ['from-the-package'],
      deletionRequested: true,
    });
    const events = (report as { events: string[] }).events;
    assert.equal(events.at(-1), 'WATCH_EVENT_TYPE_MODIFIED:terminated', `events: ${events.join(', ')}`);
    assert.ok(events[0]?.startsWith('WATCH_EVENT_TYPE_ADDED:'), `events: ${events.join(', ')}`);
  });

  test('a TypeScript project type-checks against the published declarations', () => {
    writeFileSync(
      join(app, 'check.ts'),
      [
        "import { TaskExecutorClient, processTask, type Task, type WatchResponse } from 'task-executor/client';",
        "const client = new TaskExecutorClient('localhost:5758', { token: 't', unaryTimeoutMs: 1000 });",
        "export const created: Promise<Task> = client.create(processTask('t1', ['true']), { signal: AbortSignal.timeout(1000) });",
        'export const events: AsyncIterable<WatchResponse> = client.watch({ sendInitial: true });',
        '// @ts-expect-error: a task name is a string',
        'export const wrong = client.get(42);',
      ].join('\n'),
    );
    writeFileSync(
      join(app, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: { module: 'NodeNext', moduleResolution: 'NodeNext', target: 'ES2022', strict: true, noEmit: true, typeRoots: [join(ROOT, 'node_modules', '@types')], types: ['node'] },
        files: ['check.ts'],
      }),
    );
    execFileSync(join(ROOT, 'node_modules', '.bin', 'tsc'), ['-p', 'tsconfig.json'], { cwd: app, encoding: 'utf8' });
  });
});
