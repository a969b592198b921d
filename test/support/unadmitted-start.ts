// An executor of its own process whose writes of a new task's first record
// never finish: it holds the moment after the task's process was forked and
// prepared (in its cgroup, waiting at its gate) and before `go`, for a test to
// SIGKILL it in (the crash). The manager, process runtime (with cgroups),
// spawner and store are the real ones; only TaskStore.commitNew hangs.
//
// Usage: node --import tsx test/support/unadmitted-start.ts DATA_DIR NAME SCRIPT
// Prints {"creating":NAME} once Create was called, then waits to be killed.
import { specFromWire } from '../../src/api/convert.js';
import { CgroupManager } from '../../src/runtime/cgroups/index.js';
import { TaskStore } from '../../src/store/task-store.js';
import { shell } from './executor.js';
import { silent, startManager } from './in-process.js';

class NeverAdmitted extends TaskStore {
  override commitNew(): Promise<void> {
    return new Promise<void>(() => {});
  }
}

const [dataDir, name, script] = process.argv.slice(2);
if (!dataDir || !name || !script) throw new Error('usage: unadmitted-start.ts DATA_DIR NAME SCRIPT');
const { manager } = await startManager(new NeverAdmitted(dataDir, silent), { cgroups: new CgroupManager({ log: silent }) });
void manager.create(name, specFromWire(shell(name, script).spec));
process.stdout.write(`${JSON.stringify({ creating: name })}\n`);
setInterval(() => {}, 1 << 30); // until killed
