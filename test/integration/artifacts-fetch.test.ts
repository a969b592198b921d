// The artifact fetcher (src/artifacts/) against a real HTTP server started
// here, real files, a real git repository and hostile archives: what lands in
// the task directory, what is refused and with which message.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { gzipSync } from 'node:zlib';
import { join } from 'node:path';
import { after, afterEach, before, beforeEach, describe, test } from 'node:test';
import { pino } from 'pino';
import { ArtifactCache } from '../../src/artifacts/cache.js';
import { ArtifactError } from '../../src/artifacts/errors.js';
import { ArtifactFetcher, COMPLETE_MARKER, STAGING_DIR } from '../../src/artifacts/fetcher.js';
import type { Artifact } from '../../src/model/task.js';
import { type ArchiveEntry, makeTar, makeZip } from '../support/archives.js';
import { mountTmpfs } from '../support/tmpfs.js';
import { waitFor } from '../support/wait.js';

const SCRIPT = 'echo "hello from the artifact"\n';
const sha256 = (data: string | Buffer) => `sha256:${createHash('sha256').update(data).digest('hex')}`;

/** Bodies by path, and how often each path was asked for. */
const files = new Map<string, Buffer>();
const hits = new Map<string, number>();
let server: Server;
let base: string;

before(async () => {
  server = createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    const count = (hits.get(path) ?? 0) + 1;
    hits.set(path, count);
    if (path === '/redirect/script.sh') {
      res.writeHead(302, { location: '/script.sh' }).end();
    } else if (path === '/flaky/script.sh' && count === 1) {
      res.writeHead(503).end('busy');
    } else if (path === '/flaky/script.sh') {
      res.end(SCRIPT);
    } else if (path === '/slow/script.sh') {
      // Headers and a little of the body, then nothing until the client gives up.
      res.writeHead(200, { 'content-length': '1000000' });
      res.write('echo');
    } else if (path === '/auth/script.sh') {
      if (req.headers.authorization === 'Bearer s3cret') res.end(SCRIPT);
      else res.writeHead(401).end();
    } else if (files.has(path)) {
      res.end(files.get(path));
    } else {
      res.writeHead(404).end('not found');
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  files.set('/script.sh', Buffer.from(SCRIPT));
});

after(() => {
  server.closeAllConnections();
  server.close();
});

let root: string;
let taskDir: string;
beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), 'artifacts-'));
  taskDir = join(root, 'task');
  mkdirSync(taskDir);
  hits.clear();
});
afterEach(() => rmSync(root, { recursive: true, force: true }));

const fetcher = (overrides: Partial<ConstructorParameters<typeof ArtifactFetcher>[0]> = {}) =>
  new ArtifactFetcher({ maxBytes: 1024 * 1024, maxEntries: 100, timeoutMs: 10_000, retryBackoffMs: 10, log: pino({ level: 'silent' }), ...overrides });

const fetchAll = (artifacts: Artifact[], options: Partial<ConstructorParameters<typeof ArtifactFetcher>[0]> = {}, signal = new AbortController().signal) =>
  fetcher(options).fetch(taskDir, { process: { command: ['true'], args: [], env: [] }, artifacts }, signal);

/** Rejects with an ArtifactError whose message matches; nothing of the artifacts is left in the task directory. */
async function refused(promise: Promise<void>, message: RegExp): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof ArtifactError, `an ArtifactError, not ${String(error)}`);
    assert.match(error.message, message);
    return true;
  });
  assert.ok(!existsSync(join(taskDir, 'artifacts')), 'no artifacts directory after a failure');
  assert.ok(!existsSync(join(taskDir, STAGING_DIR)), 'no staging directory after a failure');
  assert.ok(!existsSync(join(taskDir, COMPLETE_MARKER)), 'no completion marker after a failure');
}

describe('http sources', () => {
  test('a script is downloaded into artifacts/, its checksum verified, and the fetch marked complete', async () => {
    await fetchAll([{ source: `${base}/script.sh`, checksum: sha256(SCRIPT) }]);
    assert.equal(readFileSync(join(taskDir, 'artifacts/script.sh'), 'utf8'), SCRIPT);
    assert.ok(existsSync(join(taskDir, COMPLETE_MARKER)));
    assert.ok(!existsSync(join(taskDir, STAGING_DIR)));
  });

  test('a 404 fails at once, naming the status and the artifact', async () => {
    await refused(fetchAll([{ source: `${base}/script.sh` }, { source: `${base}/missing.sh` }]), /^artifacts\[1\] \(http:.*missing\.sh\): GET .* answered HTTP 404/);
    assert.equal(hits.get('/missing.sh'), 1, 'a 404 is not retried');
  });

  test('a redirect is followed', async () => {
    await fetchAll([{ source: `${base}/redirect/script.sh` }]);
    assert.equal(readFileSync(join(taskDir, 'artifacts/script.sh'), 'utf8'), SCRIPT);
  });

  test('a transient 503 is retried, and the second answer used', async () => {
    await fetchAll([{ source: `${base}/flaky/script.sh` }]);
    assert.equal(readFileSync(join(taskDir, 'artifacts/script.sh'), 'utf8'), SCRIPT);
    assert.equal(hits.get('/flaky/script.sh'), 2);
  });

  test('headers are sent', async () => {
    await fetchAll([{ source: `${base}/auth/script.sh`, headers: { Authorization: 'Bearer s3cret' } }]);
    assert.equal(readFileSync(join(taskDir, 'artifacts/script.sh'), 'utf8'), SCRIPT);
  });

  test('a server that stalls fails after the fetch timeout', async () => {
    await refused(fetchAll([{ source: `${base}/slow/script.sh` }], { timeoutMs: 300 }), /took longer than 0\.3s \(--artifact-fetch-timeout\)/);
  });

  test('a wrong checksum fails the artifact and nothing is kept', async () => {
    await refused(fetchAll([{ source: `${base}/script.sh`, checksum: `sha256:${'0'.repeat(64)}` }]), /checksum mismatch: expected sha256:0{64}, got sha256:[0-9a-f]{64}/);
  });

  test('a download larger than --artifact-max-bytes fails', async () => {
    files.set('/big.bin', Buffer.alloc(4096));
    await refused(fetchAll([{ source: `${base}/big.bin` }], { maxBytes: 1000 }), /more than 1000 \(--artifact-max-bytes\)|larger than 1000 bytes/);
  });

  test('an aborted fetch rejects with an AbortError and leaves no staging behind', async () => {
    const controller = new AbortController();
    const fetching = fetchAll([{ source: `${base}/slow/script.sh` }], {}, controller.signal);
    setImmediate(() => controller.abort());
    await assert.rejects(fetching, { name: 'AbortError' });
    assert.ok(!existsSync(join(taskDir, STAGING_DIR)));
    assert.ok(!existsSync(join(taskDir, 'artifacts')));
  });
});

describe('queueing', () => {
  test('a fetch queued behind a slow one ends at once when aborted, without waiting for a slot', async () => {
    const shared = fetcher({ concurrency: 1 });
    const spec = (source: string) => ({ process: { command: ['true'], args: [], env: [] }, artifacts: [{ source }] });
    const slow = new AbortController();
    const holding = shared.fetch(mkdtempSync(join(tmpdir(), 'te-artifacts-')), spec(`${base}/slow/script.sh`), slow.signal);
    const queued = new AbortController();
    const waiting = shared.fetch(mkdtempSync(join(tmpdir(), 'te-artifacts-')), spec(`${base}/script.sh`), queued.signal);
    queued.abort();
    // Settles while the slow download still holds the only slot (it would hold it for the 10 s timeout).
    await assert.rejects(waiting, { name: 'AbortError' });
    slow.abort();
    await assert.rejects(holding, { name: 'AbortError' });
  });
});

describe('completion across restarts', () => {
  test('a complete set is not fetched again', async () => {
    await fetchAll([{ source: `${base}/script.sh` }]);
    await fetchAll([{ source: `${base}/script.sh` }]);
    assert.equal(hits.get('/script.sh'), 1);
  });

  test('what an interrupted fetch left (staging, a half-moved destination) is replaced by a full fetch', async () => {
    mkdirSync(join(taskDir, STAGING_DIR, 'artifacts'), { recursive: true });
    writeFileSync(join(taskDir, STAGING_DIR, 'artifacts', 'partial'), 'x');
    mkdirSync(join(taskDir, 'artifacts'));
    writeFileSync(join(taskDir, 'artifacts', 'stale'), 'x');
    await fetchAll([{ source: `${base}/script.sh` }]);
    assert.deepEqual(execFileSync('ls', [join(taskDir, 'artifacts')], { encoding: 'utf8' }).trim(), 'script.sh');
    assert.ok(!existsSync(join(taskDir, STAGING_DIR)));
  });
});

describe('file:// and git sources', () => {
  test('a file on the node is copied, keeping it executable', async () => {
    const source = join(root, 'tool.sh');
    writeFileSync(source, SCRIPT, { mode: 0o755 });
    await fetchAll([{ source: `file://${source}`, destination: 'bin', checksum: sha256(SCRIPT) }]);
    assert.equal(statSync(join(taskDir, 'bin/tool.sh')).mode & 0o777, 0o755);
  });

  test('an artifact larger than the free space of the data dir fails saying so, without naming the server\'s paths', async () => {
    const tmpfs = mountTmpfs('1m');
    try {
      const dir = join(tmpfs.path, 'task');
      mkdirSync(dir);
      const big = Buffer.alloc(2 << 20, 1);
      // A download that does not fit, and small archives that unpack to more than fits.
      for (const [name, data] of [
        ['big.bin', big],
        ['big.tgz', makeTar([{ path: 'big', content: big }], { gzip: true })],
        ['big.zip', makeZip([{ path: 'big', content: big }])],
      ] as const) {
        const source = join(root, name);
        writeFileSync(source, data);
        const fetching = fetcher({ maxBytes: 4 << 20 }).fetch(dir, { process: { command: ['true'], args: [], env: [] }, artifacts: [{ source: `file://${source}` }] }, new AbortController().signal);
        await assert.rejects(fetching, (error: unknown) => {
          assert.ok(error instanceof ArtifactError, String(error));
          assert.match(error.message, /^artifacts\[0\] \(file:\/\/.*\): the executor's data dir has no space left for it; free space on the node$/);
          assert.ok(!error.message.includes(tmpfs.path), error.message);
          return true;
        });
        assert.ok(!existsSync(join(dir, STAGING_DIR)), 'the staging directory is removed, giving the space back');
      }
    } finally {
      tmpfs.unmount();
    }
  });

  test('a missing file fails with its path', async () => {
    await refused(fetchAll([{ source: `file://${root}/nope.sh` }]), /nope\.sh: no such file/);
  });

  test('a FIFO or a directory is refused at once as not a regular file (opening a FIFO must not wait for a writer)', { timeout: 30_000 }, async () => {
    const fifo = join(root, 'pipe.sh');
    execFileSync('mkfifo', [fifo]);
    // Without a writer, a blocking open never returns: the deadline is the fetch timeout, far above what the refusal takes.
    await refused(fetchAll([{ source: `file://${fifo}` }], { timeoutMs: 60_000 }), /pipe\.sh is not a regular file/);
    await refused(fetchAll([{ source: `file://${root}/`, mode: 'archive' }]), /is not a regular file/);
  });

  test("files of the kernel's pseudo file systems are refused at once (/proc/kmsg would block any read)", { timeout: 30_000 }, async () => {
    await refused(fetchAll([{ source: 'file:///proc/kmsg' }], { timeoutMs: 60_000 }), /\/proc\/kmsg is on the kernel's proc file system/);
    await refused(fetchAll([{ source: 'file:///proc/self/status' }]), /proc file system/);
    await refused(fetchAll([{ source: 'file:///sys/kernel/uevent_seqnum' }]), /sysfs file system/);
  });

  test('a git tag is fetched shallowly into the destination, without .git', async () => {
    const repo = join(root, 'repo');
    const git = (...args: string[]) =>
      execFileSync('git', ['-C', repo, '-c', 'user.name=t', '-c', 'user.email=t@example.com', ...args], { stdio: 'pipe' });
    mkdirSync(repo);
    git('init', '-q');
    writeFileSync(join(repo, 'run.sh'), 'echo v1\n');
    git('add', '.');
    git('commit', '-q', '-m', 'v1');
    git('tag', 'v1');
    writeFileSync(join(repo, 'run.sh'), 'echo v2\n');
    git('commit', '-q', '-am', 'v2');
    await fetchAll([{ source: `git::file://${repo}?ref=v1`, destination: 'src' }]);
    assert.equal(readFileSync(join(taskDir, 'src/run.sh'), 'utf8'), 'echo v1\n');
    assert.ok(!existsSync(join(taskDir, 'src/.git')));
  });

  test('a checkout is held to the archive rules: no symlink out, within the size limit', async () => {
    const repo = join(root, 'hostile-repo');
    const git = (...args: string[]) =>
      execFileSync('git', ['-C', repo, '-c', 'user.name=t', '-c', 'user.email=t@example.com', ...args], { stdio: 'pipe' });
    mkdirSync(repo);
    git('init', '-q');
    writeFileSync(join(repo, 'big.bin'), Buffer.alloc(5000));
    git('add', '.');
    git('commit', '-q', '-m', 'big');
    await refused(fetchAll([{ source: `git::file://${repo}` }], { maxBytes: 4096 }), /checkout was refused: it unpacks to more than 4096 bytes/);
    execFileSync('ln', ['-s', '/etc/passwd', join(repo, 'passwd')]);
    git('add', '.');
    git('commit', '-q', '-m', 'link');
    await refused(fetchAll([{ source: `git::file://${repo}` }]), /checkout was refused: entry "passwd" is a symlink to "\/etc\/passwd", outside/);
  });

  test('an unknown git ref fails with what git said', async () => {
    const repo = join(root, 'empty-repo');
    mkdirSync(repo);
    execFileSync('git', ['-C', repo, 'init', '-q']);
    await refused(fetchAll([{ source: `git::file://${repo}?ref=nope` }]), /git fetch of file:.* at nope failed: .*nope/);
  });
});

describe('archives', () => {
  const serve = (name: string, data: Buffer) => {
    files.set(`/${name}`, data);
    return `${base}/${name}`;
  };
  const good: ArchiveEntry[] = [
    { path: 'app/', type: 'Directory', mode: 0o750 },
    { path: 'app/run.sh', content: SCRIPT, mode: 0o755 },
    { path: 'app/data.txt', content: 'data', mode: 0o600 },
    { path: 'app/link', type: 'SymbolicLink', linkpath: 'run.sh' },
  ];

  for (const [name, data] of [
    ['good.tar', makeTar(good)],
    ['good.tar.gz', makeTar(good, { gzip: true })],
    ['good.zip', makeZip(good)],
  ] as const) {
    test(`${name} is unpacked with its modes and inside symlinks`, async () => {
      await fetchAll([{ source: serve(name, data), checksum: sha256(data) }]);
      const at = (p: string) => join(taskDir, 'artifacts', p);
      assert.equal(readFileSync(at('app/run.sh'), 'utf8'), SCRIPT);
      assert.equal(statSync(at('app/run.sh')).mode & 0o777, 0o755);
      assert.equal(statSync(at('app/data.txt')).mode & 0o777, 0o600);
      assert.equal(readlinkSync(at('app/link')), 'run.sh');
      assert.ok(lstatSync(at('app/link')).isSymbolicLink());
    });
  }

  test('an archive named without a suffix is unpacked in stated archive mode, recognised by its bytes', async () => {
    await fetchAll([{ source: serve('download', makeTar(good, { gzip: true })), mode: 'archive' }]);
    assert.ok(existsSync(join(taskDir, 'artifacts/app/run.sh')));
  });

  test('a tar.gz is read up to its end blocks only: what follows them is never inflated', async () => {
    // A small tar, then 8 MiB of zeros (a gzip bomb's usual payload), in one gzip member whose
    // checksum is broken: inflating past the end blocks would hit the broken checksum and fail.
    const data = gzipSync(Buffer.concat([makeTar(good), Buffer.alloc(8 << 20)]));
    data.writeUInt32LE(data.readUInt32LE(data.length - 8) ^ 1, data.length - 8);
    await fetchAll([{ source: serve('trailing.tgz', data) }]);
    assert.equal(readFileSync(join(taskDir, 'artifacts/app/run.sh'), 'utf8'), SCRIPT);
  });

  test('a file that is no archive fails in archive mode', async () => {
    await refused(fetchAll([{ source: `${base}/script.sh`, mode: 'archive' }]), /not a tar, tar\.gz or zip archive/);
  });

  const hostile: [string, ArchiveEntry[], RegExp][] = [
    ['dotdot', [{ path: '../evil.sh', content: 'x' }], /"\.\.\/evil\.sh" has "\.\." in its path|invalid relative path/],
    ['absolute', [{ path: '/tmp/evil.sh', content: 'x' }], /has an absolute path|absolute path/],
    ['symlink-out', [{ path: 'out', type: 'SymbolicLink', linkpath: '../../..' }], /symlink to "\.\.\/\.\.\/\.\.", outside the destination/],
    ['symlink-absolute', [{ path: 'etc', type: 'SymbolicLink', linkpath: '/etc' }], /symlink to "\/etc", outside the destination/],
    [
      'through-symlink',
      [
        { path: 'dir', type: 'SymbolicLink', linkpath: '.' },
        { path: 'dir/x', content: 'x' },
      ],
      /goes through the symlink "dir"/,
    ],
    ['too-many', Array.from({ length: 6 }, (_, i) => ({ path: `f${i}`, content: 'x' })), /more than 5 entries \(--artifact-max-entries\)/],
    ['too-large', [{ path: 'big', content: Buffer.alloc(3000) }], /unpacks to more than 2048 bytes \(--artifact-max-bytes\)/],
  ];
  for (const [name, entries, message] of hostile) {
    for (const format of ['tar', 'zip'] as const) {
      test(`a ${format} with ${name} is refused and nothing of it is used`, async () => {
        const data = format === 'tar' ? makeTar(entries, { gzip: true }) : makeZip(entries);
        const limits = { maxEntries: 5, maxBytes: name === 'too-large' ? 2048 : 1024 * 1024 };
        await refused(fetchAll([{ source: serve(`${name}.${format === 'tar' ? 'tgz' : 'zip'}`, data) }], limits), message);
        assert.ok(!existsSync(join(root, 'evil.sh')) && !existsSync('/tmp/evil.sh'), 'nothing written outside');
      });
    }
  }

  test("a zip's symlink is judged from where it lands on disk: an earlier artifact's `a` -> `.` cannot lift `a/a/a/l` -> `../../..` out", async () => {
    // Each archive alone passes the entry rules; together they made artifacts/l point three levels above artifacts/.
    const lift = serve('lift.zip', makeZip([{ path: 'a', type: 'SymbolicLink', linkpath: '.' }]));
    const out = serve('out.zip', makeZip([{ path: 'a/a/a/l', type: 'SymbolicLink', linkpath: '../../..' }]));
    await refused(fetchAll([{ source: lift }, { source: out }]), /entry "a\/a\/a\/l" is a symlink to "\.\.\/\.\.\/\.\.", outside the destination/);
    // The same climb that stays inside where it lands is kept.
    const inside = serve('inside.zip', makeZip([{ path: 'a/x/', type: 'Directory' }, { path: 'a/x/l', type: 'SymbolicLink', linkpath: '..' }]));
    await fetchAll([{ source: lift }, { source: inside }]);
    assert.equal(readlinkSync(join(taskDir, 'artifacts/x/l')), '..');
  });

  test('an archive colliding with an earlier artifact\'s file names the path in the task directory, not on the node', async () => {
    for (const [name, data] of [
      ['nested.tar', makeTar([{ path: 'script.sh/x', content: 'x' }])],
      ['nested.zip', makeZip([{ path: 'script.sh/x', content: 'x' }])],
    ] as const) {
      await assert.rejects(fetchAll([{ source: `${base}/script.sh` }, { source: serve(name, data) }]), (error: unknown) => {
        assert.ok(error instanceof ArtifactError, String(error));
        assert.match(error.message, /^artifacts\[1\] .*EEXIST: file already exists, mkdir 'artifacts\/script\.sh'$/);
        assert.ok(!error.message.includes(root), error.message);
        return true;
      });
    }
  });

  test('tar-only hostile entries: a hard link out and a device are refused', async () => {
    await refused(fetchAll([{ source: serve('hard.tar', makeTar([{ path: 'h', type: 'Link', linkpath: '../../etc/passwd' }])) }]), /hard link to "\.\.\/\.\.\/etc\/passwd", outside/);
    await refused(fetchAll([{ source: serve('dev.tar', makeTar([{ path: 'null', type: 'CharacterDevice' }])) }]), /is a CharacterDevice; only files, directories and links/);
  });
});

after(() => {
  if (root) rmSync(root, { recursive: true, force: true });
});

describe('the artifact cache', () => {
  test('tasks fetching the same checksummed artifact at once download it once, and later tasks not at all', async () => {
    const cache = new ArtifactCache(join(root, 'cache'), 1024 * 1024, pino({ level: 'silent' }));
    const shared = fetcher({ cache });
    const artifacts = [{ source: `${base}/script.sh`, checksum: sha256(SCRIPT) }];
    const dirs = Array.from({ length: 5 }, (_, i) => join(root, `task-${i}`));
    for (const dir of dirs) mkdirSync(dir);
    const spec = (a: Artifact[]) => ({ process: { command: ['true'], args: [], env: [] }, artifacts: a });
    await Promise.all(dirs.map((dir) => shared.fetch(dir, spec(artifacts), new AbortController().signal)));
    for (const dir of dirs) assert.equal(readFileSync(join(dir, 'artifacts/script.sh'), 'utf8'), SCRIPT);
    assert.equal(hits.get('/script.sh'), 1, 'one download for five tasks');
    mkdirSync(join(root, 'task-late'));
    await shared.fetch(join(root, 'task-late'), spec(artifacts), new AbortController().signal);
    assert.equal(hits.get('/script.sh'), 1, 'a later task is served from the cache');
  });

  test('a task waiting for another task\'s download of the same entry ends at once when aborted (Delete), not when that download ends', async () => {
    const cache = new ArtifactCache(join(root, 'cache'), 1024 * 1024, pino({ level: 'silent' }));
    const shared = fetcher({ cache, timeoutMs: 60_000 });
    const artifacts = [{ source: `${base}/slow/script.sh`, checksum: sha256('stalls') }];
    const spec = { process: { command: ['true'], args: [], env: [] }, artifacts };
    const [leaderDir, followerDir] = [join(root, 'leader'), join(root, 'follower')];
    mkdirSync(leaderDir);
    mkdirSync(followerDir);
    const leaderAbort = new AbortController();
    const leader = shared.fetch(leaderDir, spec, leaderAbort.signal).catch((error: unknown) => error);
    await waitFor('the leader downloading', () => hits.get('/slow/script.sh') === 1);
    const followerAbort = new AbortController();
    let settled: unknown;
    const follower = shared.fetch(followerDir, spec, followerAbort.signal).then(
      () => (settled = 'resolved'),
      (error: unknown) => (settled = error),
    );
    await waitFor('the follower at the cache', () => existsSync(join(followerDir, STAGING_DIR, 'artifacts')));
    followerAbort.abort();
    try {
      await waitFor('the aborted follower to end', () => settled !== undefined, { timeoutMs: 5000 });
      assert.equal((settled as Error).name, 'AbortError');
      assert.equal(hits.get('/slow/script.sh'), 1, 'the follower did not download on its own');
    } finally {
      leaderAbort.abort();
      await Promise.all([leader, follower]);
    }
  });

  test('a cache entry that no longer matches its checksum is dropped and the artifact downloaded again', async () => {
    const dir = join(root, 'cache');
    const cache = new ArtifactCache(dir, 1024 * 1024, pino({ level: 'silent' }));
    const checksum = sha256(SCRIPT);
    mkdirSync(dir);
    writeFileSync(join(dir, checksum.replace(':', '-')), 'rotted');
    await fetcher({ cache }).fetch(taskDir, { process: { command: ['true'], args: [], env: [] }, artifacts: [{ source: `${base}/script.sh`, checksum }] }, new AbortController().signal);
    assert.equal(readFileSync(join(taskDir, 'artifacts/script.sh'), 'utf8'), SCRIPT);
    assert.equal(hits.get('/script.sh'), 1);
    assert.equal(readFileSync(join(dir, checksum.replace(':', '-')), 'utf8'), SCRIPT, 'the entry is replaced by the verified download');
  });

  test('a partial copy left in the cache by an executor that died is removed before the next entry is stored', async () => {
    const dir = join(root, 'cache');
    mkdirSync(dir);
    // What a SIGKILL during store() leaves: a temporary file of another process, counted by no bound.
    const leftover = join(dir, `.tmp-${process.pid}-999`); // the same pid: an executor in a container is pid 1 each time
    writeFileSync(leftover, Buffer.alloc(4096));
    const cache = new ArtifactCache(dir, 1024 * 1024, pino({ level: 'silent' }));
    await fetcher({ cache }).fetch(taskDir, { process: { command: ['true'], args: [], env: [] }, artifacts: [{ source: `${base}/script.sh`, checksum: sha256(SCRIPT) }] }, new AbortController().signal);
    assert.ok(existsSync(join(dir, sha256(SCRIPT).replace(':', '-'))), 'the new entry is stored');
    assert.ok(!existsSync(leftover), 'the leftover is gone');
  });

  test('the least recently used entries are evicted beyond the size limit', async () => {
    const bodies = ['a'.repeat(400), 'b'.repeat(400), 'c'.repeat(400)];
    bodies.forEach((body, i) => files.set(`/lru-${i}.txt`, Buffer.from(body)));
    const dir = join(root, 'lru-cache');
    const cache = new ArtifactCache(dir, 1000, pino({ level: 'silent' }));
    for (const [i, body] of bodies.entries()) {
      const task = join(root, `lru-task-${i}`);
      mkdirSync(task);
      await fetcher({ cache }).fetch(task, { process: { command: ['true'], args: [], env: [] }, artifacts: [{ source: `${base}/lru-${i}.txt`, checksum: sha256(body) }] }, new AbortController().signal);
      // Distinct use times even on coarse file system clocks.
      const when = new Date(Date.now() - (10 - i) * 1000);
      utimesSync(join(dir, sha256(body).replace(':', '-')), when, when);
    }
    await cache.evict();
    const kept = execFileSync('ls', [dir], { encoding: 'utf8' }).trim().split('\n').sort();
    assert.deepEqual(kept, [sha256(bodies[1]!), sha256(bodies[2]!)].map((c) => c.replace(':', '-')).sort(), 'the oldest entry went first');
  });
});
