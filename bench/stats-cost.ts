// What Stats streaming costs the executor: CPU of an in-process executor
// (process.cpuUsage) while N running tasks (`sleep 300`) are each streamed at
// a 1 s interval, against the same executor idle with the same tasks and no
// streams. The clients run in a child process so that decoding their messages
// is not counted. Measured with cgroups (if usable) and with the /proc
// fallback (cgroups off), which must walk the process table to find each tree.
//
//   node --import tsx bench/stats-cost.ts [--tasks 100] [--seconds 10]
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { credentials, type ServiceError, status } from '@grpc/grpc-js';
import { StatsRequest, TaskExecutorServiceClient } from '../gen/taskexecutor/v1/task_executor_service.js';
import { ProcessSpec, TaskSpec } from '../gen/taskexecutor/v1/task.js';
import { startExecutor } from '../src/app.js';
import { parseConfig } from '../src/config.js';
import { createLogger } from '../src/logger.js';
import { CGROUP_ROOT_ENV, detectLayout } from '../src/runtime/cgroups/index.js';

export interface StatsCostRow {
  /** "cgroup" or "procfs" (cgroups off). */
  mode: string;
  tasks: number;
  seconds: number;
  /** Executor CPU per wall second, idle with the tasks running and no streams. */
  idleCpuMsPerSecond: number;
  /** Executor CPU per wall second while every task is streamed. */
  streamingCpuMsPerSecond: number;
  /** streaming / idle. */
  ratio: number;
  /** Stats messages the clients received. */
  samples: number;
  /** Executor CPU per message, all of it (sampling, encoding, sending; plus the idle share). */
  cpuMsPerSample: number;
  /** Executor CPU per message beyond the idle baseline: what one task-sample costs. */
  extraCpuMsPerTaskSample: number;
}

export interface StatsCostOptions {
  tasks?: number;
  seconds?: number;
  intervalMs?: number;
  /** Modes to measure; default both where cgroups are usable, else procfs only. */
  modes?: ('cgroup' | 'procfs')[];
}

const SELF = fileURLToPath(import.meta.url);
const ROOT = join(SELF, '..', '..');

const cpuMs = (usage: NodeJS.CpuUsage) => (usage.user + usage.system) / 1000;
const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export async function run(options: StatsCostOptions = {}): Promise<StatsCostRow[]> {
  const tasks = options.tasks ?? 100;
  const seconds = options.seconds ?? 10;
  const intervalMs = options.intervalMs ?? 1000;
  const cgroupsUsable = process.getuid?.() === 0 && detectLayout().version !== 0;
  const modes = options.modes ?? (cgroupsUsable ? ['cgroup', 'procfs'] : ['procfs']);
  const rows: StatsCostRow[] = [];
  for (const mode of modes) rows.push(await measure(mode, tasks, seconds, intervalMs));
  return rows;
}

async function measure(mode: 'cgroup' | 'procfs', tasks: number, seconds: number, intervalMs: number): Promise<StatsCostRow> {
  const dataDir = mkdtempSync(join(tmpdir(), 'te-bench-stats-'));
  const previous = process.env[CGROUP_ROOT_ENV];
  if (mode === 'procfs') process.env[CGROUP_ROOT_ENV] = 'off';
  const config = { ...parseConfig([]), dataDir, dataDirExplicit: true, listenAddr: '127.0.0.1:0', logLevel: 'silent', stopGraceMs: 2000 };
  let executor;
  try {
    executor = await startExecutor(config, createLogger('silent'));
  } finally {
    if (previous === undefined) delete process.env[CGROUP_ROOT_ENV];
    else process.env[CGROUP_ROOT_ENV] = previous;
  }
  const client = new TaskExecutorServiceClient(executor.address, credentials.createInsecure());
  const call = <T>(fn: (cb: (error: ServiceError | null, response: T) => void) => void) =>
    new Promise<T>((resolve, reject) => fn((error, response) => (error ? reject(error) : resolve(response))));
  const names = Array.from({ length: tasks }, (_, i) => `bench-${i}`);
  try {
    const spec = TaskSpec.fromPartial({ runtime: { $case: 'process', value: ProcessSpec.fromPartial({ command: ['sleep', '300'] }) } });
    await call((cb) => client.setTasks({ tasks: names.map((name) => ({ name, spec })) }, cb));
    await delay(2000); // let start-up work (shims, first reconciles) settle

    const idleStart = process.cpuUsage();
    const idleWall = performance.now();
    await delay(seconds * 1000);
    const idleCpu = cpuMs(process.cpuUsage(idleStart));
    const idleSeconds = (performance.now() - idleWall) / 1000;

    const streamed = await streamFromChild(executor.address, names, intervalMs, seconds);
    const streamingCpuMsPerSecond = streamed.cpuMs / streamed.seconds;
    const idleCpuMsPerSecond = idleCpu / idleSeconds;
    return {
      mode,
      tasks,
      seconds,
      idleCpuMsPerSecond,
      streamingCpuMsPerSecond,
      ratio: streamingCpuMsPerSecond / idleCpuMsPerSecond,
      samples: streamed.samples,
      cpuMsPerSample: streamed.cpuMs / streamed.samples,
      extraCpuMsPerTaskSample: (streamed.cpuMs - idleCpuMsPerSecond * streamed.seconds) / streamed.samples,
    };
  } finally {
    await call((cb) => client.setTasks({ tasks: [] }, cb)).catch(() => undefined);
    const deadline = Date.now() + 30_000;
    while (executor.manager.list().length > 0 && Date.now() < deadline) await delay(100);
    client.close();
    await executor.close();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

/** Runs the clients in a child process; measures the executor's CPU between "streaming" and "done". */
async function streamFromChild(address: string, names: string[], intervalMs: number, seconds: number) {
  const child = spawn(process.execPath, ['--import', 'tsx', SELF, '--client', address, String(intervalMs), String(seconds), ...names], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const lines = createInterface({ input: child.stdout! });
  let start: NodeJS.CpuUsage | undefined;
  let wall = 0;
  for await (const line of lines) {
    if (line === 'streaming') {
      start = process.cpuUsage();
      wall = performance.now();
    } else if (line.startsWith('{')) {
      const cpu = cpuMs(process.cpuUsage(start));
      const elapsed = (performance.now() - wall) / 1000;
      const { samples } = JSON.parse(line) as { samples: number };
      child.kill();
      return { cpuMs: cpu, seconds: elapsed, samples };
    }
  }
  throw new Error('the stats client exited without a result');
}

/** Child process: one Stats stream per task for `seconds`, then prints how many messages arrived. */
async function client(address: string, intervalMs: number, seconds: number, names: string[]): Promise<void> {
  const stub = new TaskExecutorServiceClient(address, credentials.createInsecure());
  let samples = 0;
  let counting = false;
  const calls = names.map((name) => {
    const stream = stub.stats(StatsRequest.fromPartial({ name, interval: { seconds: Math.floor(intervalMs / 1000), nanos: (intervalMs % 1000) * 1e6 } }));
    stream.on('data', () => counting && samples++);
    stream.on('error', (error: ServiceError) => {
      if (error.code !== status.CANCELLED) console.error(`stats ${name}: ${error.message}`);
    });
    return stream;
  });
  // The first message of each stream comes ~100 ms after it opens (two quick samples for a rate): start counting after it.
  await delay(500);
  counting = true;
  process.stdout.write('streaming\n');
  await delay(seconds * 1000);
  counting = false;
  process.stdout.write(`${JSON.stringify({ samples })}\n`);
  for (const c of calls) c.cancel();
  stub.close();
}

export function printTable(rows: StatsCostRow[]): void {
  const header = ['mode', 'tasks', 'idle CPU ms/s', 'streaming CPU ms/s', 'ratio', 'samples', 'CPU ms/sample', 'extra CPU ms/task-sample'];
  const body = rows.map((r) => [
    r.mode,
    String(r.tasks),
    r.idleCpuMsPerSecond.toFixed(1),
    r.streamingCpuMsPerSecond.toFixed(1),
    `${r.ratio.toFixed(2)}x`,
    String(r.samples),
    r.cpuMsPerSample.toFixed(3),
    r.extraCpuMsPerTaskSample.toFixed(3),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((row) => row[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padStart(widths[i]!)).join('  ');
  console.log(line(header));
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const row of body) console.log(line(row));
}

function argValue(flag: string, fallback: number): number {
  const i = process.argv.indexOf(flag);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  if (process.argv[2] === '--client') {
    const [, , , address, interval, secs, ...names] = process.argv;
    await client(address!, Number(interval), Number(secs), names);
  } else {
    const rows = await run({ tasks: argValue('--tasks', 100), seconds: argValue('--seconds', 10) });
    console.log(`Stats streaming cost (${rows[0]?.tasks} tasks "sleep 300", 1 s interval, ${rows[0]?.seconds} s per phase)`);
    printTable(rows);
  }
}
