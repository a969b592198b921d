// Idle CPU and RSS of the executor as it is deployed: the compiled entry point
// (dist/src/main.js) in its own process, measured from /proc, with N running
// tasks against the same executor with none. The in-process figures of
// control-path.ts also count the bench, its client and the tsx loader.
import { spawn } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { setTimeout as delay } from 'node:timers/promises';
import { processTask, tempDir } from '../../test/support/executor.js';
import { connect, ROOT, spawnCommand } from '../../test/support/subprocess.js';

export interface Idle {
  cpuPercent: number;
  rssMiB: number;
}

const TICKS_PER_SECOND = 100; // USER_HZ on Linux

function cpuTicks(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(fields[11]) + Number(fields[12]); // utime + stime
}

function rssMiB(pid: number): number {
  const line = readFileSync(`/proc/${pid}/status`, 'utf8').split('\n').find((l) => l.startsWith('VmRSS:'));
  return Number(line?.split(/\s+/)[1] ?? 0) / 1024;
}

async function idle(pid: number, seconds: number): Promise<Idle> {
  const ticks = cpuTicks(pid);
  const start = performance.now();
  await delay(seconds * 1000);
  const used = (cpuTicks(pid) - ticks) / TICKS_PER_SECOND;
  return { cpuPercent: (used / ((performance.now() - start) / 1000)) * 100, rssMiB: rssMiB(pid) };
}

/** Builds dist/ (tsc), starts the executor, measures it idle with 0 and then with `n` running tasks. */
export async function standaloneIdle(n: number, seconds: number): Promise<{ empty: Idle; loaded: Idle }> {
  await run(process.execPath, [`${ROOT}/node_modules/typescript/bin/tsc`, '-p', `${ROOT}/tsconfig.build.json`]);
  const dataDir = tempDir('te-bench-standalone-');
  const executor = spawnCommand([process.execPath, `${ROOT}/dist/src/main.js`, '--data-dir', dataDir, '--listen-addr', '127.0.0.1:0']);
  const pid = executor.child.pid!;
  let session: Awaited<ReturnType<typeof connect>> | undefined;
  try {
    session = await connect(executor);
    const { api } = session;
    await delay(2000);
    const empty = await idle(pid, seconds);
    await api.setTasks({ tasks: Array.from({ length: n }, (_, i) => processTask(`idle-${i}`, ['sleep', '600'])) });
    await delay(2000); // let the start-up work settle
    const loaded = await idle(pid, seconds);
    await api.setTasks({ tasks: [] });
    while ((await api.listPage({ pageSize: 1000 })).tasks.length > 0) await delay(200);
    return { empty, loaded };
  } finally {
    session?.client.close();
    executor.child.kill('SIGTERM');
    await executor.exited;
    rmSync(dataDir, { recursive: true, force: true });
  }
}

function run(command: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: 'inherit' });
    child.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`${args.join(' ')} exited ${code}`))));
  });
}
