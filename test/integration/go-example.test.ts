// examples/go against a real executor: the committed gen/go, compiled offline with Debian 12's Go
// packages (examples/go/build-debian.sh, GOPATH mode over /usr/share/gocode: grpc 1.33, protobuf
// 1.28, golang/protobuf 1.5). Without them it is skipped, except in CI (.ci/run installs them and
// sets CI).
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { startTestExecutor, tempDir, type TestExecutor } from '../support/executor.js';
import { ROOT } from '../support/subprocess.js';

const gocode = '/usr/share/gocode/src';
const goModOf = (module: string) => {
  const file = join(gocode, module, 'go.mod');
  return existsSync(file) ? readFileSync(file, 'utf8') : '';
};
const hasGo = spawnSync('go', ['version'], { stdio: 'ignore' }).status === 0;
const missing = [
  !hasGo && 'go (golang-go)',
  !existsSync(join(gocode, 'google.golang.org/grpc')) && 'grpc-go (golang-google-grpc-dev)',
  // golang/protobuf 1.4+ (APIv1 over APIv2; 1.3.5 panics on oneofs), whose go.mod requires APIv2.
  !goModOf('github.com/golang/protobuf').includes('google.golang.org/protobuf') && 'golang/protobuf 1.5 (golang-github-golang-protobuf-1-5-dev)',
].filter(Boolean);
const skip = missing.length > 0 && !process.env.CI ? `needs ${missing.join(', ')}` : false;

describe('the Go example controller', { skip, timeout: 300_000 }, () => {
  let te: TestExecutor;
  const build = tempDir('te-go-example-');
  const controller = join(build, 'controller');

  before(async () => {
    assert.deepEqual(missing, [], 'CI must install the Go client packages (.ci/run)');
    // Asynchronously, like the run below; the first build compiles grpc (about 10-60 s), later ones hit Go's cache.
    await promisify(execFile)(join(ROOT, 'examples', 'go', 'build-debian.sh'), [controller]);
    te = await startTestExecutor();
  });

  after(async () => {
    await te?.close();
    rmSync(build, { recursive: true, force: true });
  });

  test('creates a task, follows its logs and watches it to the end', async () => {
    // Asynchronously: the executor runs in this process and must keep answering.
    const { stdout: output } = await promisify(execFile)(controller, [te.executor.address, 'from-go'], { encoding: 'utf8' });
    const report = JSON.parse(output) as { events: string[] };
    assert.deepEqual(report, {
      created: 'from-go',
      lines: ['hello', 'world'],
      events: report.events,
      exitCode: 3,
      missing: 'NotFound',
      deletionRequested: true,
    });
    assert.ok(report.events[0]?.startsWith('WATCH_EVENT_TYPE_ADDED:'), report.events.join(', '));
    assert.equal(report.events.at(-1), 'WATCH_EVENT_TYPE_MODIFIED:terminated', report.events.join(', '));
  });
});

describe('a grpc-go client and the idle connection timeout', { skip, timeout: 300_000 }, () => {
  let te: TestExecutor;
  const build = tempDir('te-go-reconnect-');
  const program = join(build, 'go-reconnect');

  before(async () => {
    assert.deepEqual(missing, [], 'CI must install the Go client packages (.ci/run)');
    await promisify(execFile)(join(ROOT, 'examples', 'go', 'build-debian.sh'), [program, 'test/support/go-reconnect']);
    te = await startTestExecutor({ grpcMaxConnectionIdleMs: 300, grpcKeepaliveTimeMs: 0 });
  });

  after(async () => {
    await te?.close();
    rmSync(build, { recursive: true, force: true });
  });

  test('a call after the server closed the idle connection succeeds on the same ClientConn', async () => {
    const { stdout } = await promisify(execFile)(program, [te.executor.address], { encoding: 'utf8' });
    const report = JSON.parse(stdout) as { first: number; leftReady: string; second: number };
    assert.deepEqual(report, { first: 0, leftReady: report.leftReady, second: 0 });
    assert.notEqual(report.leftReady, 'READY');
  });
});
