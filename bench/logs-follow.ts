// Logs RPC against plain-file baselines measured in the same run:
//  (a) follow latency: a task writes a line stamped with the wall clock every
//      20 ms; the time until a Logs(follow) client holds it, next to `tail -F`
//      following a plain file that a shell loop appends to at the same rate
//      (both run at the same time),
//      then the same with the generated Go client (bench/support/logs-follow-go)
//      following, against a second tail -F pass, where Debian's Go packages are there;
//      and, right after, a bare grpc-js server (bench/support/grpc-floor.ts)
//      writing the same messages from a timer: the floor of the gRPC leg alone;
//  (b) reading an existing ~50 MB log through Logs (no follow), chunked
//      (`chunks: true`: text runs), batched (`batch: true`) and one line per
//      message (as clients that predate `entries` get it), batched through
//      task-executor/client (its own decoder), next to `cat` of the same
//      files into this process, and src/logs alone (no gRPC).
// LOGS_BENCH_PARTS=b runs part (b) only (=a part (a) only); LOGS_BENCH_ROUNDS
// (default 2) sets the rounds of (b), LOGS_BENCH_SINGLE=0 leaves out its slow
// line-per-message row, LOGS_BENCH_ROWS=cat,chunked,chunkedPackage,chunkedGo,batched,batchedPackage,direct picks rows,
// LOGS_BENCH_VERBOSE=1 prints every run, LOGS_BENCH_CPU_PROF=<dir> runs the
// executor with --cpu-prof into that directory (run this file with
// `node --cpu-prof` for the client's side).
// The executor runs as its own process (src/main.ts), as in production, so the
// client's work does not share its event loop.
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { LogsRequest, type LogsResponse } from '../gen/taskexecutor/v1/task_executor_service.js';
import { TaskExecutorClient } from '../src/client/index.js';
import { streamLogs } from '../src/logs/stream-logs.js';
import { type Api, processTask, shell, terminated } from '../test/support/executor.js';
import { killTaskTrees } from '../test/support/processes.js';
import { connect, ROOT, spawnExecutor } from '../test/support/subprocess.js';
import { waitFor } from '../test/support/wait.js';
import { TaskExecutorServiceClient } from '../gen/taskexecutor/v1/task_executor_service.js';
import { credentials } from '@grpc/grpc-js';
import { wallNs } from './support/wall-clock.js';

interface Target {
  client: TaskExecutorServiceClient;
  /** task-executor/client on the same address. */
  packageClient: TaskExecutorClient;
  api: Api;
  /** The executor's gRPC address, for clients in other processes. */
  address: string;
  dataDir: string;
  /** The executor's process id, for its CPU time. */
  pid: number;
}

/** CPU seconds (user + system) a process (or, with `thread`, one of its threads) has used so far, from /proc (10 ms resolution). */
function processCpuSeconds(pid: number, thread?: number): number {
  const fields = readFileSync(thread === undefined ? `/proc/${pid}/stat` : `/proc/${pid}/task/${thread}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (USER_HZ = 100)
}

/** CPU seconds this process has used so far. */
function ownCpuSeconds(): number {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1e6;
}

const LINES = 200;
const GAP = '0.02';
const BIG_BYTES = 50_000_000;
const LINE = 120;

function stats(samplesMs: number[]) {
  const sorted = [...samplesMs].sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
  return { n: sorted.length, median: at(0.5), p90: at(0.9), p99: at(0.99), max: sorted.at(-1)! };
}

/** Latencies (ms) of lines that carry their write time (`date +%s%N`). */
function latencyOf(line: string, into: number[]): void {
  if (/^\d{19}$/.test(line)) into.push(Number(wallNs() - BigInt(line)) / 1e6);
}

/**
 * Follows task `name` and calls `ready` when it sees the line "ready";
 * resolves with the latency of each stamped line once the stream ends.
 */
type Follower = (te: Target, name: string, ready: () => void) => Promise<number[]>;

/** The bench's own client: the generated grpc-js client in this process. */
const nodeFollower: Follower = (te, name, ready) =>
  new Promise<number[]>((resolve, reject) => {
    const ms: number[] = [];
    const call = te.client.logs(LogsRequest.fromPartial({ name, follow: true, batch: true }));
    call.on('data', (m: LogsResponse) => {
      for (const entry of m.entries) {
        if (entry.content?.$case !== 'text') continue;
        if (entry.content.value === 'ready') ready();
        latencyOf(entry.content.value, ms);
      }
    });
    call.on('error', reject);
    call.on('end', () => resolve(ms));
  });

/**
 * The generated Go client in its own process (bench/support/logs-follow-go, built with
 * examples/go/build-debian.sh), which creates the gate file itself; undefined where
 * Debian's Go packages are not installed.
 */
async function goFollower(scratch: string): Promise<Follower | undefined> {
  const binary = join(scratch, 'logs-follow-go');
  try {
    await promisify(execFile)(join(ROOT, 'examples/go/build-debian.sh'), [binary, 'bench/support/logs-follow-go']);
  } catch (error) {
    console.log(`(no Go follower row: ${String(error).split('\n')[0]})`);
    return undefined;
  }
  return async (te, name) => {
    const { stdout } = await promisify(execFile)(binary, [te.address, name, join(scratch, 'go')]);
    return (JSON.parse(stdout) as { ms: number[] }).ms;
  };
}

async function followLatency(te: Target, scratch: string, name: string, follower: Follower) {
  const loop = (out: string) => `i=0; while [ $i -lt ${LINES} ]; do date +%s%N${out}; sleep ${GAP}; i=$((i+1)); done`;
  rmSync(join(scratch, 'go'), { force: true });

  // Baseline: tail -F on a plain file, written by a shell loop.
  const file = join(scratch, `${name}.log`);
  writeFileSync(file, '');
  const tail = spawn('tail', ['-F', '-n', '+1', file], { stdio: ['ignore', 'pipe', 'ignore'] });
  const tailMs: number[] = [];
  let rest = '';
  tail.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    const parts = (rest + chunk).split('\n');
    rest = parts.pop()!;
    for (const line of parts) latencyOf(line, tailMs);
  });
  const gate = `while [ ! -e ${scratch}/go ]; do sleep 0.01; done`;
  const writer = spawn('sh', ['-c', `${gate}; ${loop(` >> ${file}`)}`], { stdio: 'ignore' });
  const written = new Promise((resolve) => writer.on('exit', resolve));

  // The Logs RPC following a task; both writers start when the follower has seen "ready".
  await te.api.createTask({ task: shell(name, `echo ready; ${gate}; ${loop('')}`) });
  const [rpcMs] = await Promise.all([follower(te, name, () => writeFileSync(join(scratch, 'go'), '')), written]);
  await waitFor('tail to catch up', () => tailMs.length >= LINES, { timeoutMs: 5000 });
  tail.kill();
  return { rpc: stats(rpcMs), tail: stats(tailMs) };
}

/** The same client and messages against bench/support/grpc-floor.ts (its own process, like the executor). */
async function grpcFloor() {
  const server = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'bench/support/grpc-floor.ts')], {
    cwd: ROOT,
    env: { ...process.env, LINES: String(LINES), GAP_MS: String(Number(GAP) * 1000) },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  try {
    const port = await new Promise<string>((resolve, reject) => {
      server.stdout.setEncoding('utf8').once('data', (chunk: string) => resolve(chunk.trim()));
      server.once('exit', (code) => reject(new Error(`grpc-floor exited with ${code}`)));
    });
    const client = new TaskExecutorServiceClient(`127.0.0.1:${port}`, credentials.createInsecure());
    const ms: number[] = [];
    const call = client.logs(LogsRequest.fromPartial({ name: 'floor', follow: true, batch: true }));
    call.on('data', (m: LogsResponse) => {
      for (const entry of m.entries) if (entry.content?.$case === 'text') latencyOf(entry.content.value, ms);
    });
    await new Promise((resolve, reject) => {
      call.on('end', resolve);
      call.on('error', reject);
    });
    client.close();
    return stats(ms);
  } finally {
    server.kill();
  }
}

/** One timed read: wall time, and the CPU time of the executor (server) and of this process (client) where measured. */
interface Run {
  seconds: number;
  bytes: number;
  lines: number;
  serverCpu?: number;
  /** The executor's main thread (the event loop) alone. */
  serverMainCpu?: number;
  clientCpu?: number;
}

async function readThroughput(te: Target) {
  const script = `yes "$(head -c ${LINE - 1} /dev/zero | tr '\\0' x)" | head -c ${BIG_BYTES}`;
  await te.api.createTask({ task: processTask('big', ['sh', '-c', script], {}, { logs: { maxFileSizeBytes: 16 << 20, maxFiles: 10 } }) });
  await waitFor('the big task to finish', async () => terminated((await te.api.getTask({ name: 'big' })).task), { timeoutMs: 30_000 });
  const dir = join(te.dataDir, 'big', 'logs');
  const files = readdirSync(dir)
    .sort((a, b) => Number(a.split('.')[1]) - Number(b.split('.')[1]))
    .map((f) => join(dir, f));

  const cat = async (): Promise<Run> => {
    const start = process.hrtime.bigint();
    let bytes = 0;
    const child = spawn('cat', files, { stdio: ['ignore', 'pipe', 'ignore'] });
    child.stdout.on('data', (chunk: Buffer) => (bytes += chunk.length));
    await new Promise((resolve) => child.on('close', resolve));
    return { seconds: Number(process.hrtime.bigint() - start) / 1e9, bytes, lines: 0 };
  };
  const rpc = async (mode: 'batch' | 'chunks' | 'single'): Promise<Run> => {
    const start = process.hrtime.bigint();
    const serverCpu = processCpuSeconds(te.pid);
    const serverMainCpu = processCpuSeconds(te.pid, te.pid);
    const clientCpu = ownCpuSeconds();
    let bytes = 0;
    let lines = 0;
    const call = te.client.logs(LogsRequest.fromPartial({ name: 'big', batch: mode === 'batch', chunks: mode === 'chunks' }));
    call.on('data', (m: LogsResponse) => {
      if (mode === 'chunks') {
        // Output bytes with their newlines (a chunk is text as a file shows it); lines are not counted.
        bytes += m.chunk?.content?.$case === 'text' ? m.chunk.content.value.length : (m.chunk?.content?.value.length ?? 0);
        return;
      }
      for (const line of mode === 'batch' ? m.entries : [m]) {
        lines++;
        bytes += line.content?.$case === 'text' ? line.content.value.length : (line.content?.value.length ?? 0);
      }
    });
    await new Promise((resolve, reject) => {
      call.on('end', resolve);
      call.on('error', reject);
    });
    return {
      seconds: Number(process.hrtime.bigint() - start) / 1e9,
      bytes,
      lines,
      serverCpu: processCpuSeconds(te.pid) - serverCpu,
      serverMainCpu: processCpuSeconds(te.pid, te.pid) - serverMainCpu,
      clientCpu: ownCpuSeconds() - clientCpu,
    };
  };
  // The same reads through task-executor/client (its own Logs decoder for batches, a 1 MiB flow-control window).
  const viaPackageClient = async (mode: 'batch' | 'chunks'): Promise<Run> => {
    const start = process.hrtime.bigint();
    const serverCpu = processCpuSeconds(te.pid);
    const serverMainCpu = processCpuSeconds(te.pid, te.pid);
    const clientCpu = ownCpuSeconds();
    let bytes = 0;
    let lines = 0;
    for await (const m of te.packageClient.logs({ name: 'big', [mode]: true })) {
      for (const line of m.chunk ? [m.chunk] : m.entries) {
        lines++;
        bytes += line.content?.$case === 'text' ? line.content.value.length : (line.content?.value.length ?? 0);
      }
    }
    return {
      seconds: Number(process.hrtime.bigint() - start) / 1e9,
      bytes,
      lines: mode === 'chunks' ? 0 : lines,
      serverCpu: processCpuSeconds(te.pid) - serverCpu,
      serverMainCpu: processCpuSeconds(te.pid, te.pid) - serverMainCpu,
      clientCpu: ownCpuSeconds() - clientCpu,
    };
  };
  // The same chunked read through the generated Go client, in its own process (timed by itself, from the call to the end).
  let goBinary: string | undefined | null;
  const chunkedGo = async (): Promise<Run> => {
    if (goBinary === undefined) {
      goBinary = join(scratch, 'logs-read-go');
      try {
        await promisify(execFile)(join(ROOT, 'examples/go/build-debian.sh'), [goBinary, 'bench/support/logs-follow-go']);
      } catch (error) {
        console.log(`(no Go client row: ${String(error).split('\n')[0]})`);
        goBinary = null;
      }
    }
    if (goBinary === null) return { seconds: Number.NaN, bytes: 0, lines: 0 };
    const serverCpu = processCpuSeconds(te.pid);
    const serverMainCpu = processCpuSeconds(te.pid, te.pid);
    const { stdout } = await promisify(execFile)(goBinary, [te.address, 'big', '--read']);
    const { seconds, bytes } = JSON.parse(stdout) as { seconds: number; bytes: number };
    return { seconds, bytes, lines: 0, serverCpu: processCpuSeconds(te.pid) - serverCpu, serverMainCpu: processCpuSeconds(te.pid, te.pid) - serverMainCpu };
  };
  const direct = async (): Promise<Run> => {
    const start = process.hrtime.bigint();
    const cpu = ownCpuSeconds();
    let bytes = 0;
    let lines = 0;
    for await (const batch of streamLogs(
      { directory: dir, streams: ['stdout', 'stderr'], follow: false },
      { status: () => 'ended', onChange: () => () => {} },
      new AbortController().signal,
    )) {
      for (const line of batch) bytes += line.bytes.length;
      lines += batch.length;
    }
    return { seconds: Number(process.hrtime.bigint() - start) / 1e9, bytes, lines, clientCpu: ownCpuSeconds() - cpu };
  };
  // Rounds of every row in turn (best of each), so that load from elsewhere
  // on the machine hits the rows alike. One run of the line-per-message RPC: it is the slow one.
  const rounds = Number(process.env.LOGS_BENCH_ROUNDS ?? 2);
  const allRows = {
    cat,
    chunked: () => rpc('chunks'),
    chunkedPackage: () => viaPackageClient('chunks'),
    chunkedGo,
    batched: () => rpc('batch'),
    batchedPackage: () => viaPackageClient('batch'),
    direct,
  };
  const only = process.env.LOGS_BENCH_ROWS?.split(',');
  const rows = Object.entries(allRows).filter(([name]) => !only || only.includes(name)) as [keyof typeof allRows, () => Promise<Run>][];
  const best: Partial<Record<keyof typeof allRows, Run>> = {};
  for (let round = 0; round < rounds; round++) {
    for (const [name, run] of rows) {
      const result = await run();
      if (process.env.LOGS_BENCH_VERBOSE) {
        const cpu = result.serverCpu === undefined ? '' : ` (executor CPU ${result.serverCpu.toFixed(2)} s, main thread ${result.serverMainCpu?.toFixed(2)} s; client ${result.clientCpu?.toFixed(2)} s)`;
        console.log(`  round ${round + 1}: ${name} ${result.seconds.toFixed(3)} s${cpu}`);
      }
      if (!best[name] || result.seconds < best[name].seconds) best[name] = result;
    }
  }
  const single = process.env.LOGS_BENCH_SINGLE === '0' ? undefined : await rpc('single');
  return { ...best, single };
}

const scratch = mkdtempSync(join(tmpdir(), 'te-bench-'));
const dataDir = join(scratch, 'data');
const profileDir = process.env.LOGS_BENCH_CPU_PROF;
const executor = spawnExecutor(
  ['--data-dir', dataDir, '--listen-addr', '127.0.0.1:0'],
  { ...process.env, PROFILE_DIR: profileDir },
  profileDir ? ['sh', '-c', 'exec "$0" --cpu-prof --cpu-prof-dir="$PROFILE_DIR" "$@"'] : [],
);
try {
  const { client, api, address } = await connect(executor);
  const packageClient = new TaskExecutorClient(address);
  const te: Target = { client, api, address, dataDir, pid: executor.child.pid!, packageClient };
  const parts = process.env.LOGS_BENCH_PARTS ?? 'ab';
  if (parts.includes('a')) {
    const latency = await followLatency(te, scratch, 'latency', nodeFollower);
    const go = await goFollower(scratch);
    const goLatency = go && (await followLatency(te, scratch, 'latency-go', go));
    const floor = await grpcFloor();
    const row = (name: string, s: ReturnType<typeof stats>) =>
      `  ${name.padEnd(22)} ${s.median.toFixed(2).padStart(8)} ${s.p90.toFixed(2).padStart(8)} ${s.p99.toFixed(2).padStart(8)} ${s.max.toFixed(2).padStart(8)} ${String(s.n).padStart(5)}`;
    console.log(`(a) follow latency, ${LINES} lines every ${Number(GAP) * 1000} ms (ms from write to receipt)`);
    console.log(
      `  ${''.padEnd(22)} ${'median'.padStart(8)} ${'p90'.padStart(8)} ${'p99'.padStart(8)} ${'max'.padStart(8)} ${'lines'.padStart(5)}`,
    );
    console.log(row('tail -F (baseline)', latency.tail));
    console.log(row('Logs follow (gRPC)', latency.rpc));
    console.log(row('bare grpc-js (floor)', floor));
    console.log(
      `  ratio Logs/tail: median ${(latency.rpc.median / latency.tail.median).toFixed(2)}x, p90 ${(latency.rpc.p90 / latency.tail.p90).toFixed(2)}x, p99 ${(latency.rpc.p99 / latency.tail.p99).toFixed(2)}x`,
    );
    console.log(`  (floor: the gRPC leg alone, a grpc-js server writing the same messages from a timer, measured right after)`);
    if (goLatency) {
      console.log(row('tail -F (Go pass)', goLatency.tail));
      console.log(row('Logs follow (Go client)', goLatency.rpc));
      console.log(`  ratio Logs(Go client)/tail: median ${(goLatency.rpc.median / goLatency.tail.median).toFixed(2)}x, p90 ${(goLatency.rpc.p90 / goLatency.tail.p90).toFixed(2)}x, p99 ${(goLatency.rpc.p99 / goLatency.tail.p99).toFixed(2)}x`);
    }
  }
  if (parts.includes('b')) {
    const read = await readThroughput(te);
    const mbps = (r: { seconds: number; bytes: number }) => r.bytes / 1e6 / r.seconds;
    const cpu = (seconds: number | undefined) => (seconds === undefined ? '-' : seconds.toFixed(2)).padStart(8);
    const trow = (name: string, r: Run) =>
      `  ${name.padEnd(22)} ${r.seconds.toFixed(3).padStart(8)} ${(r.bytes / 1e6).toFixed(1).padStart(8)} ${mbps(r).toFixed(1).padStart(8)} ${(r.lines ? (r.lines / r.seconds / 1000).toFixed(0) : '-').padStart(8)} ${cpu(r.serverCpu)} ${cpu(r.serverMainCpu)} ${cpu(r.clientCpu)}`;
    console.log(
      `\n(b) reading an existing log of ${BIG_BYTES / 1e6} MB of output (${LINE}-byte lines; best of ${Number(process.env.LOGS_BENCH_ROUNDS ?? 2)}, the line-per-message RPC once)`,
    );
    console.log(
      `  ${''.padEnd(22)} ${'seconds'.padStart(8)} ${'MB'.padStart(8)} ${'MB/s'.padStart(8)} ${'klines/s'.padStart(8)} ${'srv CPU'.padStart(8)} ${'srv main'.padStart(8)} ${'cli CPU'.padStart(8)}`,
    );
    const labels = { cat: 'cat files (baseline)', direct: 'src/logs, no gRPC', chunked: 'Logs RPC, chunks', chunkedPackage: 'chunks, package client', chunkedGo: 'chunks, Go client', batched: 'Logs RPC, batch', batchedPackage: 'batch, package client', single: 'Logs RPC, line/message' };
    for (const [name, label] of Object.entries(labels)) {
      const run = read[name as keyof typeof labels];
      if (run) console.log(trow(label, run));
    }
    console.log(`  (MB: file bytes for cat, output bytes with newlines for chunks, payload bytes otherwise;`);
    console.log(`   CPU: seconds of the executor (srv; srv main: its main thread alone) and of this process (cli) in that run, which are steadier than wall time on a busy machine)`);
    const ratio = (name: string, r: Run | undefined) => (r && read.cat ? [`${name} ${(r.seconds / read.cat.seconds).toFixed(1)}x`] : []);
    const ratios = [...ratio('Logs chunks', read.chunked), ...ratio('chunks (package client)', read.chunkedPackage), ...ratio('chunks (Go client)', read.chunkedGo), ...ratio('batch', read.batched), ...ratio('batch (package client)', read.batchedPackage), ...ratio('line/message', read.single), ...ratio('src/logs alone', read.direct)];
    if (ratios.length > 0) console.log(`  ratio to cat time: ${ratios.join('; ')}`);
  }
  client.close();
  packageClient.close();
} finally {
  executor.child.kill('SIGTERM');
  await executor.exited;
  killTaskTrees(dataDir);
  rmSync(scratch, { recursive: true, force: true });
}
