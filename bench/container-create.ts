// Container Create-to-running: Create of a busybox container task through the
// real gRPC API (executor in this process, container mode) until the task
// reports running, against the same CRI calls made directly by this bench
// over the same socket (RunPodSandbox, CreateContainer, StartContainer, with
// the sandbox and container configs the executor builds), interleaved, on the
// private containerd the tests use (test/support/containerd.ts; needs root,
// containerd, runc, busybox-static). The image is present in both paths.
// Also reports where the executor's time goes, per CRI call, from its own
// debug log lines ("CRI call" {rpc, ms}), and what a pool of pre-created
// sandboxes would leave to do (see pooledRun).
import { randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, realpathSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { credentials } from '@grpc/grpc-js';
import { pino } from 'pino';
import { TaskExecutorServiceClient } from '../gen/taskexecutor/v1/task_executor_service.js';
import { startExecutor } from '../src/app.js';
import type { TaskEvent } from '../src/manager/task-manager.js';
import { containerConfig, LABEL_OWNER, LABEL_POOL, ownerOf, runLabels, sandboxConfig } from '../src/runtime/container/mapping.js';
import { startPrivateContainerd } from '../test/support/containerd.js';
import { apiFor, containerTask, testConfig } from '../test/support/executor.js';
import { waitFor } from '../test/support/wait.js';

const N = Number(process.env.BENCH_N ?? 20);
const quantile = (xs: number[], q: number) => [...xs].sort((a, b) => a - b)[Math.floor(q * (xs.length - 1))]!;
const since = (start: bigint) => Number(process.hrtime.bigint() - start) / 1e6;
const COMMAND = ['sleep', '300'];

/** The executor's CRI call timings, from its debug lines. */
const criCalls: { rpc: string; ms: number }[] = [];
const sink = new Writable({
  write(chunk: Buffer, _encoding, done) {
    for (const line of chunk.toString().split('\n')) {
      if (!line.includes('"CRI call"') && !line.includes('"slow CRI call"')) continue;
      const { rpc, ms } = JSON.parse(line) as { rpc: string; ms: number };
      criCalls.push({ rpc, ms });
    }
    done();
  },
});

const load = [loadavg()];
const ctrd = await startPrivateContainerd();
const dir = mkdtempSync(join(tmpdir(), 'te-bench-ctr-'));
const config = testConfig(join(dir, 'data'), { enableContainerMode: true, criSocket: ctrd.socket, containerCgroupParent: ctrd.cgroupParent });
const executor = await startExecutor(config, pino({ level: 'debug' }, sink));
const client = new TaskExecutorServiceClient(executor.address, credentials.createInsecure());
const api = apiFor(client);
const running = new Set<string>();
executor.manager.subscribe((event: TaskEvent) => {
  if (event.task.state.phase === 'running') running.add(event.task.name);
});
// A second executor with --container-sandbox-pool 2 (its own data dir, same containerd).
const POOL = 2;
const poolConfig = { ...config, dataDir: join(dir, 'pool-data'), containerSandboxPool: POOL };
const poolExecutor = await startExecutor(poolConfig, pino({ level: 'silent' }));
const poolClient = new TaskExecutorServiceClient(poolExecutor.address, credentials.createInsecure());
const poolApi = apiFor(poolClient);
const poolOwner = ownerOf(realpathSync(poolConfig.dataDir));
poolExecutor.manager.subscribe((event: TaskEvent) => {
  if (event.task.state.phase === 'running') running.add(`pool/${event.task.name}`);
});
/** Waits until the pool is full again, so that its refill does not run beside another measurement. */
async function poolFull(): Promise<void> {
  await waitFor('the sandbox pool to be full', async () => {
    let idle = 0;
    for (const sandbox of await ctrd.cri.listPodSandbox({ [LABEL_OWNER]: poolOwner, [LABEL_POOL]: 'true' })) {
      if ((await ctrd.cri.listContainers({ podSandboxId: sandbox.id })).length === 0) idle++;
    }
    return idle >= POOL;
  });
}

/** The three CRI calls alone, timed each; the run is removed afterwards, untimed. */
async function rawRun(i: number): Promise<{ total: number; sandbox: number; create: number; start: number }> {
  const uid = randomUUID();
  const labels = runLabels(`raw-${i}`, uid, 'bench-raw');
  const logDirectory = join(dir, 'raw', String(i));
  mkdirSync(logDirectory, { recursive: true });
  const sandbox = sandboxConfig({ task: `raw-${i}`, uid, labels, logDirectory, cgroupParent: ctrd.cgroupParent });
  const container = containerConfig({
    spec: { image: ctrd.images.busybox, command: COMMAND, args: [], env: [], volumeMounts: [] },
    labels,
    mounts: [],
  });
  const t0 = process.hrtime.bigint();
  const sandboxId = await ctrd.cri.runPodSandbox(sandbox);
  const sandboxMs = since(t0);
  const t1 = process.hrtime.bigint();
  const containerId = await ctrd.cri.createContainer(sandboxId, container, sandbox);
  const createMs = since(t1);
  const t2 = process.hrtime.bigint();
  await ctrd.cri.startContainer(containerId);
  const startMs = since(t2);
  const total = since(t0);
  await ctrd.cri.stopContainer(containerId, 0);
  await ctrd.cri.removeContainer(containerId);
  await ctrd.cri.stopPodSandbox(sandboxId);
  await ctrd.cri.removePodSandbox(sandboxId);
  return { total, sandbox: sandboxMs, create: createMs, start: startMs };
}

/**
 * What a pool of pre-created sandboxes would leave per task: the sandbox is
 * made beforehand (untimed), then CreateContainer (with the task's own log
 * directory in the request's sandbox config, which containerd takes the log
 * path from) and StartContainer are timed. Checks the log lands in the task's
 * directory, not the sandbox's.
 */
async function pooledRun(i: number): Promise<{ total: number; create: number; start: number }> {
  const uid = randomUUID();
  const labels = runLabels(`pooled-${i}`, uid, 'bench-raw');
  const poolDirectory = join(dir, 'pool', String(i));
  const logDirectory = join(dir, 'pooled', String(i));
  mkdirSync(poolDirectory, { recursive: true });
  mkdirSync(logDirectory, { recursive: true });
  const pooled = sandboxConfig({ task: `pool-${i}`, uid, labels, logDirectory: poolDirectory, cgroupParent: ctrd.cgroupParent });
  const sandboxId = await ctrd.cri.runPodSandbox(pooled);
  const container = containerConfig({
    spec: { image: ctrd.images.busybox, command: ['sh', '-c', 'echo pooled; exec sleep 300'], args: [], env: [], volumeMounts: [] },
    labels,
    mounts: [],
  });
  const t0 = process.hrtime.bigint();
  const containerId = await ctrd.cri.createContainer(sandboxId, container, { ...pooled, logDirectory });
  const createMs = since(t0);
  const t1 = process.hrtime.bigint();
  await ctrd.cri.startContainer(containerId);
  const startMs = since(t1);
  const total = since(t0);
  await waitFor('the pooled container\'s log in the task\'s directory', () => existsSync(join(logDirectory, 'output.0.log')));
  await ctrd.cri.stopContainer(containerId, 0);
  await ctrd.cri.removeContainer(containerId);
  await ctrd.cri.stopPodSandbox(sandboxId);
  await ctrd.cri.removePodSandbox(sandboxId);
  return { total, create: createMs, start: startMs };
}

/** Create through the API until the task is running; deleted afterwards, untimed. */
async function executorRun(i: number, pooled = false): Promise<{ total: number; reply: number; calls: { rpc: string; ms: number }[] }> {
  const name = `ctr-${i}`;
  const [target, key] = pooled ? [poolApi, `pool/${name}`] : [api, name];
  const from = criCalls.length;
  const t0 = process.hrtime.bigint();
  await target.createTask({ task: containerTask(name, ctrd.images.busybox, { command: COMMAND }) });
  const reply = since(t0);
  await waitFor(`${name} running`, () => running.has(key), { intervalMs: 1 });
  const total = since(t0);
  const calls = criCalls.slice(from);
  await target.deleteTask({ name });
  const manager = (pooled ? poolExecutor : executor).manager;
  await waitFor(`${name} gone`, () => !manager.find(name), { timeoutMs: 30_000 });
  if (pooled) await poolFull();
  return { total, reply, calls };
}

// One of each first, untimed: the first sandbox and container pay for caches.
await rawRun(-1);
await executorRun(-1);
await poolFull();
await executorRun(-1, true);
await pooledRun(-1);
const raw: Awaited<ReturnType<typeof rawRun>>[] = [];
const ours: Awaited<ReturnType<typeof executorRun>>[] = [];
const pooled: Awaited<ReturnType<typeof pooledRun>>[] = [];
const oursPooled: Awaited<ReturnType<typeof executorRun>>[] = [];
for (let i = 0; i < N; i++) {
  raw.push(await rawRun(i));
  ours.push(await executorRun(i));
  pooled.push(await pooledRun(i));
  oursPooled.push(await executorRun(i, true));
}
load.push(loadavg());

client.close();
poolClient.close();
await executor.close();
await poolExecutor.close();
const leftovers = await ctrd.stop();
rmSync(dir, { recursive: true, force: true });

const row = (name: string, xs: number[]) => `| ${name} | ${quantile(xs, 0.5).toFixed(1)} | ${quantile(xs, 0.9).toFixed(1)} |`;
console.log(`Container Create-to-running, busybox \`${COMMAND.join(' ')}\`, ${N} runs each, interleaved`);
console.log(`load average (1 min) before/after: ${load.map((l) => l[0]!.toFixed(2)).join(' / ')}`);
console.log('| path | median ms | p90 ms |\n|---|---|---|');
console.log(row('direct CRI: RunPodSandbox + CreateContainer + StartContainer (baseline)', raw.map((r) => r.total)));
console.log(row('  RunPodSandbox', raw.map((r) => r.sandbox)));
console.log(row('  CreateContainer', raw.map((r) => r.create)));
console.log(row('  StartContainer', raw.map((r) => r.start)));
console.log(row('direct CRI into a pre-created sandbox: CreateContainer + StartContainer (what a pool leaves)', pooled.map((r) => r.total)));
console.log(row('  CreateContainer', pooled.map((r) => r.create)));
console.log(row('  StartContainer', pooled.map((r) => r.start)));
console.log(row('Create until running (executor)', ours.map((r) => r.total)));
console.log(row('  Create reply', ours.map((r) => r.reply)));
const rpcs = [...new Set(ours.flatMap((r) => r.calls.map((c) => c.rpc)))];
for (const rpc of rpcs) {
  const per = ours.map((r) => r.calls.filter((c) => c.rpc === rpc).reduce((sum, c) => sum + c.ms, 0));
  console.log(row(`  executor's ${rpc} (sum per run)`, per));
}
console.log(row(`Create until running (executor, --container-sandbox-pool ${POOL})`, oursPooled.map((r) => r.total)));
const criSum = ours.map((r) => r.calls.reduce((sum, c) => sum + c.ms, 0));
console.log(row('  all CRI calls of the executor (sum per run)', criSum));
const p50 = (xs: number[]) => quantile(xs, 0.5);
const p90 = (xs: number[]) => quantile(xs, 0.9);
console.log(
  `ratio (median): ${(p50(ours.map((r) => r.total)) / p50(raw.map((r) => r.total))).toFixed(2)}x   ` +
    `ratio (p90): ${(p90(ours.map((r) => r.total)) / p90(raw.map((r) => r.total))).toFixed(2)}x`,
);
console.log(
  `with the pool: ${(p50(oursPooled.map((r) => r.total)) / p50(raw.map((r) => r.total))).toFixed(2)}x / ` +
    `${(p90(oursPooled.map((r) => r.total)) / p90(raw.map((r) => r.total))).toFixed(2)}x of the three direct calls, ` +
    `${(p50(oursPooled.map((r) => r.total)) / p50(pooled.map((r) => r.total))).toFixed(2)}x / ` +
    `${(p90(oursPooled.map((r) => r.total)) / p90(pooled.map((r) => r.total))).toFixed(2)}x of the two calls into a pre-created sandbox`,
);
console.log(
  `pod sandbox share of the direct calls (median): ${((100 * p50(raw.map((r) => r.sandbox))) / p50(raw.map((r) => r.total))).toFixed(0)} %`,
);
if (leftovers.shims.length > 0) console.log(`leftover shims: ${leftovers.shims.join(', ')}`);
