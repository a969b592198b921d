// Compiles the per-task supervisor (task-shim) and its privilege helper for sidecar tasks
// (task-privs) with the system C compiler. They are rebuilt only when a source is newer than
// the binaries, so `npm test` stays fast. Warnings never fail an install (a newer compiler
// may warn about what an older one did not); `npm run check` runs
// `node scripts/build-shim.mjs --check`, which builds throwaway copies with -Werror instead.
//
// Least privilege (src/runtime/shim/privileges.c) uses libcap-ng for capabilities and
// libseccomp for the default seccomp profile. Each is used when its header is found
// (Debian: libcap-ng-dev, libseccomp-dev); without one the binaries are built without that
// feature, this script says so, and the executor reports it at start-up (`task-shim
// --features`) and on every task that would have used it. task-privs is linked statically
// (it runs inside the main container's filesystem, whose libc may differ or be missing);
// when that fails, sidecar tasks run without privilege settings and the executor says so.
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
const shimDir = join(root, 'src/runtime/shim');
// task-shim is the supervisor plus its --spawner mode (spawner.c) and the privilege code it shares
// with task-privs, the sidecar tasks' static helper.
const sources = ['task-shim.c', 'spawner.c', 'spawner.h', 'task-privs.c', 'privileges.c', 'privileges.h'].map((f) => join(shimDir, f));
const check = process.argv[2] === '--check';
const install = process.argv[2] === '--install';
const scratch = check ? mkdtempSync(join(tmpdir(), 'task-shim-check-')) : undefined;
const outDir = scratch ?? join(root, 'build');
const shim = join(outDir, 'task-shim');
const helper = join(outDir, 'task-privs');

const mtime = (path) => {
  try {
    return statSync(path).mtimeMs;
  } catch {
    return -1;
  }
};

const newest = Math.max(mtime(fileURLToPath(import.meta.url)), ...sources.map(mtime));
if (!check && Math.min(mtime(shim), mtime(helper)) >= newest && process.argv[2] !== '--force') process.exit(0);

mkdirSync(outDir, { recursive: true });
const cc = process.env.CC || 'cc';
const flags = ['-O2', '-std=gnu11', '-Wall', '-Wextra', ...(check ? ['-Werror'] : [])];

/** Whether `#include <header>` compiles (the preprocessor finds it). */
const hasHeader = (header) => spawnSync(cc, ['-E', '-x', 'c', '-'], { input: `#include <${header}>\n`, stdio: ['pipe', 'ignore', 'ignore'] }).status === 0;
const features = [
  { header: 'cap-ng.h', define: 'HAVE_CAPNG', lib: '-lcap-ng', feature: 'capabilities', debian: 'libcap-ng-dev' },
  { header: 'seccomp.h', define: 'HAVE_SECCOMP', lib: '-lseccomp', feature: 'the default seccomp profile', debian: 'libseccomp-dev' },
];
const found = [];
const compilerWorks = spawnSync(cc, ['--version'], { stdio: 'ignore' }).error === undefined;
for (const f of features) {
  if (!compilerWorks) break;
  if (hasHeader(f.header)) found.push(f);
  else console.error(`task-shim: ${f.header} not found: building without ${f.feature} (Debian: apt-get install ${f.debian}, then npm run build:shim -- --force)`);
}
const defines = found.map((f) => `-D${f.define}`);
const libs = found.map((f) => f.lib);
const privileges = join(shimDir, 'privileges.c');

const shimSources = ['task-shim.c', 'spawner.c', 'privileges.c'].map((f) => join(shimDir, f));
const result = spawnSync(cc, [...flags, ...defines, '-o', shim, ...shimSources, ...libs], { stdio: 'inherit' });
const failure = result.error
  ? `cannot run the C compiler "${cc}" (${result.error.message}); install gcc (Debian: apt-get install gcc libc6-dev)`
  : result.status !== 0
    ? `the C compiler "${cc}" failed (exit ${result.status}) on ${shimSources.join(' ')}`
    : undefined;
if (!failure) {
  const built = spawnSync(cc, [...flags, ...defines, '-static', '-o', helper, join(shimDir, 'task-privs.c'), privileges, ...libs], {
    stdio: ['ignore', 'inherit', 'pipe'],
    encoding: 'utf8',
  });
  // The linker warns that libcap-ng's capng_change_id (never called) would need glibc's NSS at run
  // time in a static binary: noise, so those lines are dropped; anything else is shown.
  const noise = /statically linked applications requires at runtime|in function `capng_change_id'/;
  const shown = (built.stderr ?? '').split('\n').filter((line) => line && !noise.test(line) && !/^\(\.text\+0x[0-9a-f]+\): warning: Using/.test(line));
  if (shown.length > 0) console.error(shown.join('\n'));
  if (built.status !== 0) {
    rmSync(helper, { force: true });
    console.error('task-shim: task-privs (the privilege helper of sidecar tasks) could not be linked statically (Debian: libc6-dev, libcap-ng-dev and libseccomp-dev hold the static libraries); sidecar tasks will run without privilege settings');
    if (check) process.exitCode = 1;
  }
}
if (scratch) rmSync(scratch, { recursive: true, force: true });
if (failure) {
  console.error(`task-shim: ${failure}`);
  if (install) {
    console.error('task-shim: not built. task-executor/client works without it; the executor tries again at its first start.');
    process.exit(0);
  }
  process.exit(1);
}
