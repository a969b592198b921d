// An executor of its own process whose writes of a started task's record never
// finish: it holds the moment after `running` was published and before the
// executor's record of the start is on disk, for a test to SIGKILL it in (the
// crash). The manager, process runtime (with cgroups), spawner and store are
// the real ones; only TaskStore.save of a record with a run hangs.
//
// Usage: node --import tsx test/support/unrecorded-start.ts DATA_DIR NAME SCRIPT
// Prints one line, {"phase": ...} of the record Create returned, then waits to be killed.
import { specFromWire } from '../../src/api/convert.js';
import type { TaskRecord } from '../../src/model/task.js';
import { CgroupManager } from '../../src/runtime/cgroups/index.js';
import { TaskStore } from '../../src/store/task-store.js';
import { shell } from './executor.js';
import { silent, startManager } from './in-process.js';

class StartNeverRecorded extends TaskStore {
  override save(record: TaskRecord): Promise<void> {
    return record.runtime ? new Promise<void>(() => {}) : super.save(record);
  }
}

const [dataDir, name, script] = process.argv.slice(2);
if (!dataDir || !name || !script) throw new Error('usage: unrecorded-start.ts DATA_DIR NAME SCRIPT');
const { manager } = await startManager(new StartNeverRecorded(dataDir, silent), { cgroups: new CgroupManager({ log: silent }) });
const record = await manager.create(name, specFromWire(shell(name, script).spec));
process.stdout.write(`${JSON.stringify({ phase: record.state.phase })}\n`);
setInterval(() => {}, 1 << 30); // until killed
