// Compiles the per-task supervisor (task-shim) with the system C compiler.
// It is rebuilt only when the source is newer than the binary, so `npm test` stays fast.
import { spawnSync } from 'node:child_process';
import { mkdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const source = join(root, 'src/runtime/shim/task-shim.c');
const output = join(root, 'build/task-shim');

const mtime = (path) => {
  try {
    return statSync(path).mtimeMs;
  } catch {
    return -1;
  }
};

if (mtime(output) >= mtime(source) && process.argv[2] !== '--force') process.exit(0);

mkdirSync(dirname(output), { recursive: true });
const cc = process.env.CC || 'cc';
const result = spawnSync(cc, ['-O2', '-std=gnu11', '-Wall', '-Wextra', '-Werror', '-o', output, source], {
  stdio: 'inherit',
});
if (result.error) {
  console.error(`task-shim: cannot run the C compiler "${cc}" (${result.error.message}); install gcc (Debian: apt-get install gcc libc6-dev)`);
  process.exit(1);
}
process.exit(result.status ?? 1);
