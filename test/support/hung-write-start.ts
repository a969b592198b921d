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
//   exit       TaskStore.save of a terminated record hangs: the moment after the
//              task's exit was shown and before the executor's record of it is
//              on disk. Prints {"terminated": {exitCode, reason, finishedAt}} once shown.
//
// Usage: node --import tsx test/support/hung-write-start.ts MODE DATA_DIR NAME SCRIPT
// Then waits to be killed.
import { specFromWire } from '../../src/api/convert.js';
import type { TaskRecord } from '../../src/model/task.js';
import { CgroupManager } from '../../src/runtime/cgroups/index.js';
import { TaskStore } from '../../src/store/task-store.js';
import { shell } from './executor.js';
import { silent, startManager } from './in-process.js';
import { waitFor } from './wait.js';

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

class ExitNeverRecorded extends TaskStore {
  override save(record: TaskRecord): Promise<void> {
    return record.state.phase === 'terminated' ? never() : super.save(record);
  }
}

const [mode, dataDir, name, script] = process.argv.slice(2);
if ((mode !== 'admission' && mode !== 'start' && mode !== 'exit') || !dataDir || !name || !script) {
  throw new Error('usage: hung-write-start.ts admission|start|exit DATA_DIR NAME SCRIPT');
}
const stores = { admission: NeverAdmitted, start: StartNeverRecorded, exit: ExitNeverRecorded };
const store = new stores[mode](dataDir, silent);
const { manager } = await startManager(store, { cgroups: new CgroupManager({ log: silent }) });
const spec = specFromWire(shell(name, script).spec);
if (mode === 'admission') {
  void manager.create(name, spec);
  process.stdout.write(`${JSON.stringify({ creating: name })}\n`);
} else if (mode === 'start') {
  const record = await manager.create(name, spec);
  process.stdout.write(`${JSON.stringify({ phase: record.state.phase })}\n`);
} else {
  await manager.create(name, spec);
  const state = await waitFor('the exit to be shown', () => {
    const { state } = manager.get(name);
    return state.phase === 'terminated' ? state : undefined;
  });
  const { exitCode, reason, finishedAt } = state;
  process.stdout.write(`${JSON.stringify({ terminated: { exitCode, reason, finishedAt } })}\n`);
}
setInterval(() => {}, 1 << 30); // until killed
