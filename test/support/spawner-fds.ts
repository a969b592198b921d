// A process started with an extra descriptor, fd 100, that is not
// close-on-exec (as a shell's redirection or a service manager's socket
// reaches the executor; Node leaves such descriptors as they are): it starts
// a shim spawner keeping one shim ahead and the data dir lock's holder
// (`task-shim --lock-dir`), and prints, as JSON, what fd 100 is here and
// every descriptor above 2 that the spawner, its pooled shim and the lock's
// holder hold. Run by test/integration/shim-spawner.test.ts.
import { readdirSync, readlinkSync } from 'node:fs';
import { readStat } from '../../src/runtime/process/procfs.js';
import { ShimSpawner } from '../../src/runtime/process/shim-spawner.js';
import { flockDir } from '../../src/util/dir-flock.js';
import { tempDir } from './executor.js';
import { SHIM, silent } from './in-process.js';
import { argvOf, pooledShimsOf } from './processes.js';
import { waitFor } from './wait.js';

const linkOf = (path: string) => {
  try {
    return readlinkSync(path);
  } catch {
    return undefined; // closed meanwhile
  }
};
const descriptorsAbove2 = (pid: number) =>
  readdirSync(`/proc/${pid}/fd`)
    .filter((fd) => Number(fd) > 2)
    .map((fd) => linkOf(`/proc/${pid}/fd/${fd}`));
const children = () =>
  readdirSync('/proc')
    .filter((entry) => /^\d+$/.test(entry))
    .map(Number)
    .filter((pid) => readStat(pid)?.ppid === process.pid);

const spawner = new ShimSpawner(SHIM, silent, 1);
const cancel = spawner.watchPid(process.pid, () => true, () => {}); // starts the helper
const helper = await waitFor('the spawner', () => children().find((pid) => argvOf(pid)[1] === '--spawner'));
cancel();
const [pooled] = await waitFor('a pooled shim', () => (pooledShimsOf(helper).length > 0 ? pooledShimsOf(helper) : undefined));
const lock = await flockDir(SHIM, tempDir('te-fds-lock-'), 10_000);
const locker = children().find((pid) => argvOf(pid)[1] === '--lock-dir')!;
console.log(
  JSON.stringify({
    inherited: readlinkSync('/proc/self/fd/100'),
    spawner: descriptorsAbove2(helper),
    pooled: descriptorsAbove2(pooled!),
    locker: descriptorsAbove2(locker),
  }),
);
spawner.close();
await lock.release();
