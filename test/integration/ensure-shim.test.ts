// An executor installed without its install scripts builds its task-shim at start, or
// says what to do when it cannot. Runs the real build script in a copy of the package layout.
import assert from 'node:assert/strict';
import { cpSync, existsSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, test } from 'node:test';
import { createLogger } from '../../src/logger.js';
import { ensureShim } from '../../src/runtime/shim/ensure-shim.js';
import { tempDir } from '../support/executor.js';
import { ROOT } from '../support/subprocess.js';

function packageCopy(): string {
  const root = tempDir('te-shim-pkg-');
  mkdirSync(join(root, 'scripts'));
  cpSync(join(ROOT, 'scripts', 'build-shim.mjs'), join(root, 'scripts', 'build-shim.mjs'));
  for (const file of ['task-shim.c', 'spawner.c', 'spawner.h']) {
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
});
