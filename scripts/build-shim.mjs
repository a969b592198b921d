// Compiles the per-task supervisor (task-shim) with the system C compiler.
// It is rebuilt only when the source is newer than the binary, so `npm test` stays fast.
// Warnings never fail an install (a newer compiler may warn about what an older one did
// not); `npm run check` runs `node scripts/build-shim.mjs --check`, which builds a
// throwaway copy with -Werror instead.
//
// `--install` is the package's postinstall: a failure is reported but does not fail the
// install, because an application that only uses `task-executor/client` never needs the
// shim. The executor builds the shim at its first start when it is missing (npm 11 runs a
// dependency's install scripts only when the application allows them), and says clearly
// what is missing when it cannot (src/runtime/shim/ensure-shim.ts).
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const sourceDir = join(root, 'src/runtime/shim');
// The supervisor and its --spawner mode (spawner.c) are one binary.
const sources = ['task-shim.c', 'spawner.c'].map((file) => join(sourceDir, file));
const headers = ['spawner.h'].map((file) => join(sourceDir, file));
const check = process.argv[2] === '--check';
const install = process.argv[2] === '--install';
const scratch = check ? mkdtempSync(join(tmpdir(), 'task-shim-check-')) : undefined;
const output = scratch ? join(scratch, 'task-shim') : join(root, 'build/task-shim');

const mtime = (path) => {
  try {
    return statSync(path).mtimeMs;
  } catch {
    return -1;
  }
};

if (!check && [...sources, ...headers].every((file) => mtime(output) >= mtime(file)) && process.argv[2] !== '--force') process.exit(0);

mkdirSync(dirname(output), { recursive: true });
const cc = process.env.CC || 'cc';
const flags = ['-O2', '-std=gnu11', '-Wall', '-Wextra', ...(check ? ['-Werror'] : [])];
const result = spawnSync(cc, [...flags, '-o', output, ...sources], { stdio: 'inherit' });
if (scratch) rmSync(scratch, { recursive: true, force: true });
const failure = result.error
  ? `cannot run the C compiler "${cc}" (${result.error.message}); install gcc (Debian: apt-get install gcc libc6-dev)`
  : result.status !== 0
    ? `the C compiler "${cc}" failed (exit ${result.status}) on ${sources.join(' ')}`
    : undefined;
if (failure) {
  console.error(`task-shim: ${failure}`);
  if (install) {
    console.error('task-shim: not built. task-executor/client works without it; the executor tries again at its first start.');
    process.exit(0);
  }
  process.exit(1);
}
