// The task-shim is C, compiled on the machine that runs it. The package's postinstall
// builds it, but npm 11 runs a dependency's install scripts only when the application
// allows them (allowScripts), and `--ignore-scripts` skips them too: so an executor
// whose shim is missing builds it once, at start, with the same script, and otherwise
// fails with what to do.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';

/** The path of the package's shim (`<root>/build/task-shim`), built now if it is missing. */
export function ensureShim(root: string, log: Logger): string {
  const shim = join(root, 'build', 'task-shim');
  if (existsSync(shim)) return shim;
  const script = join(root, 'scripts', 'build-shim.mjs');
  log.info({ shim }, 'task-shim not built yet (npm skipped the install script?): building it from src/runtime/shim/task-shim.c');
  const result = spawnSync(process.execPath, [script], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  if (result.status !== 0 || !existsSync(shim)) {
    const output = `${result.error?.message ?? ''}${result.stderr ?? ''}`.trim();
    throw new Error(
      `task-shim is missing at ${shim} and could not be built (${output || `exit ${result.status}`}). ` +
        'Install a C compiler (Debian: apt-get install gcc libc6-dev) and start again, or build it with ' +
        `"node ${script}", or point TASK_SHIM_PATH at a built task-shim.`,
    );
  }
  return shim;
}
