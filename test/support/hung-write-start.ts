// An executor of its own process in which one store write of a new task never
// finishes, holding a Create at a chosen moment for a test to SIGKILL the
// executor in (the crash). The manager, process runtime (with cgroups), spawner
// and store are the real ones; only the one write hangs. MODE picks it:
//
//   admission  TaskStore.commitNew (the task's first record) hangs: the moment
//              after the task's process was forked and prepared (in its cgroup,
//              waiting at its gate) and before `go`. Prints {"creating":NAME}
//              once Create was called.
//   start      TaskStore.save of a record with a run hangs: the moment after
//              `running` was published and before the executor's record of the
//              start is on disk. Prints {"phase": ...} of the record Create returned.
//
// Usage: node --import tsx test/support/hung-write-start.ts MODE DATA_DIR NAME SCRIPT
// Then waits to be killed.
import { specFromWire } from '../../src/api/convert.js';
import type { TaskRecord } from '../../src/model/task.js';
import { CgroupManager } from '../../src/runtime/cgroups/index.js';
import { TaskStore } from '../../src/store/task-store.js';
import { shell } from './executor.js';
import { silent, startManager } from './in-process.js';

const never = (): Promise<void> => new Promise<void>(() => {});

class NeverAdmitted extends TaskStore {
  override commitNew(): Promise<void> {
    return never();
  }
}

class StartNeverRecorded extends TaskStore {
  override save(record: TaskRecord): Promise<void> {
    return record.runtime ? never() : super.save(record);
  }
}

const [mode, dataDir, name, script] = process.argv.slice(2);
if ((mode !== 'admission' && mode !== 'start') || !dataDir || !name || !script) {
  throw new Error('usage: hung-write-start.ts admission|start DATA_DIR NAME SCRIPT');
}
const store = mode === 'admission' ? new NeverAdmitted(dataDir, silent) : new StartNeverRecorded(dataDir, silent);
const { manager } = await startManager(store, { cgroups: new CgroupManager({ log: silent }) });
const spec = specFromWire(shell(name, script).spec);
if (mode === 'admission') {
  void manager.create(name, spec);
  process.stdout.write(`${JSON.stringify({ creating: name })}\n`);
} else {
  const record = await manager.create(name, spec);
  process.stdout.write(`${JSON.stringify({ phase: record.state.phase })}\n`);
}
setInterval(() => {}, 1 << 30); // until killed
