// An executor installed without its install scripts builds its task-shim at start, or
// says what to do when it cannot. Runs the real build script in a copy of the package layout.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, cpSync, existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, test } from 'node:test';
import { createLogger } from '../../src/logger.js';
import { DEFAULT_PRIVILEGES } from '../../src/model/privileges.js';
import { ensureShim } from '../../src/runtime/shim/ensure-shim.js';
import { TaskPrivileges } from '../../src/runtime/shim/task-privileges.js';
import { tempDir } from '../support/executor.js';
import { ROOT } from '../support/subprocess.js';

function packageCopy(): string {
  const root = tempDir('te-shim-pkg-');
  mkdirSync(join(root, 'scripts'));
  cpSync(join(ROOT, 'scripts', 'build-shim.mjs'), join(root, 'scripts', 'build-shim.mjs'));
  // The sources package.json's "files" ships for the build (the shim and its spawner, its privilege helper and their shared part).
  for (const file of ['task-shim.c', 'spawner.c', 'spawner.h', 'task-privs.c', 'privileges.c', 'privileges.h']) {
    cpSync(join(ROOT, 'src', 'runtime', 'shim', file), join(root, 'src', 'runtime', 'shim', file), { recursive: true });
  }
  return root;
}

describe('the task-shim of an installed package', () => {
  const roots: string[] = [];
  const savedCc = process.env.CC;
  afterEach(() => {
    if (savedCc === undefined) delete process.env.CC;
    else process.env.CC = savedCc;
    for (const root of roots.splice(0)) rmSync(root, { recursive: true, force: true });
  });

  test('is built at start when the install scripts did not run', () => {
    const root = packageCopy();
    roots.push(root);
    const shim = ensureShim(root, createLogger('silent'));
    assert.equal(shim, join(root, 'build', 'task-shim'));
    assert.ok(existsSync(shim));
  });

  test('without a C compiler, start fails naming what to install and what to run', () => {
    const root = packageCopy();
    roots.push(root);
    process.env.CC = join(root, 'no-such-compiler');
    assert.throws(() => ensureShim(root, createLogger('silent')), (error: Error) => {
      assert.match(error.message, /task-shim is missing at .*build\/task-shim/);
      assert.match(error.message, /cannot run the C compiler/);
      assert.match(error.message, /apt-get install gcc libc6-dev/);
      assert.match(error.message, /TASK_SHIM_PATH/);
      return true;
    });
  });

  test('without the libcap-ng and libseccomp headers it is built without those features, and the executor says what is missing', () => {
    const root = packageCopy();
    roots.push(root);
    // A compiler that cannot find the two headers, as on a machine without libcap-ng-dev and libseccomp-dev.
    const cc = join(root, 'cc-without-headers');
    writeFileSync(
      cc,
      '#!/bin/sh\nfor a in "$@"; do [ "$a" = -E ] && { grep -qE "seccomp.h|cap-ng.h" && exit 1; exec cc "$@"; }; done\nexec cc "$@"\n',
    );
    chmodSync(cc, 0o755);
    const build = spawnSync(process.execPath, [join(root, 'scripts', 'build-shim.mjs')], { encoding: 'utf8', env: { ...process.env, CC: cc } });
    assert.equal(build.status, 0, build.stderr);
    assert.match(build.stderr, /seccomp\.h not found: building without the default seccomp profile \(Debian: apt-get install libseccomp-dev/);
    assert.match(build.stderr, /cap-ng\.h not found: building without capabilities \(Debian: apt-get install libcap-ng-dev/);
    const shim = join(root, 'build', 'task-shim');
    assert.equal(spawnSync(shim, ['--features'], { encoding: 'utf8' }).stdout.trim(), 'no-new-privs rlimits');
    const missing = TaskPrivileges.forShim(shim, DEFAULT_PRIVILEGES).describe().missing.join('\n');
    assert.match(missing, /capabilities are not limited: task-shim was built without libcap-ng \(Debian: libcap-ng-dev\)/);
    assert.match(missing, /no seccomp filter: task-shim was built without libseccomp \(Debian: libseccomp-dev\)/);
  });
});
