// A small tmpfs for tests of a full data dir (needs root, as the fault tests do).
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { rmSync, statfsSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from './executor.js';

export interface Tmpfs {
  path: string;
  /** Writes a file named `name` until the filesystem is full. */
  fill(name?: string): void;
  /** Bytes still free. */
  free(): number;
  unmount(): void;
}

export function mountTmpfs(size: string): Tmpfs {
  const path = tempDir('te-tmpfs-');
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', path]);
  } catch (error) {
    assert.fail(`this test needs root to mount a small tmpfs: ${(error as Error).message}`);
  }
  return {
    path,
    fill(name = 'filler') {
      const result = spawnSync('sh', ['-c', `cat /dev/zero > "$1"`, 'sh', join(path, name)], { encoding: 'utf8' });
      assert.match(result.stderr, /No space left on device/, 'the filesystem is full');
    },
    free() {
      const stats = statfsSync(path);
      return stats.bavail * stats.bsize;
    },
    unmount() {
      execFileSync('umount', ['-l', path]);
      rmSync(path, { recursive: true, force: true });
    },
  };
}
