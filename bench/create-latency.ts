// Create-to-running latency: Create through the real gRPC API (executor in
// this process) until the task reports running, against a bare
// child_process.spawn of the same command until 'spawn', measured side by side.
import { spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import { parseConfig } from '../src/config.js';
import { processTask, startTestExecutor, stateOf } from '../test/support/executor.js';

const N = Number(process.env.BENCH_N ?? 200);
const quantile = (xs: number[], q: number) => [...xs].sort((a, b) => a - b)[Math.floor(q * (xs.length - 1))]!;

async function bareSpawn(): Promise<number> {
  const start = process.hrtime.bigint();
  const child = spawn('sleep', ['30'], { stdio: 'ignore', detached: true });
  await new Promise((resolve) => child.once('spawn', resolve));
  const ms = Number(process.hrtime.bigint() - start) / 1e6;
  child.kill('SIGKILL');
  return ms;
}

// The safety net at its deployed interval (10 s), as in control-path.ts: the
// test executor's 100 ms would check every earlier task several times a
// second, between the Creates being timed, which no deployment does.
const te = await startTestExecutor({ logLevel: 'silent', reconcileIntervalMs: parseConfig([]).reconcileIntervalMs });
const spawnMs: number[] = [];
const createMs: number[] = [];
for (let i = 0; i < N; i++) {
  spawnMs.push(await bareSpawn());
  const start = process.hrtime.bigint();
  const { task } = await te.api.createTask({ task: processTask(`bench-${i}`, ['sleep', '30']) });
  createMs.push(Number(process.hrtime.bigint() - start) / 1e6);
  if (stateOf(task)?.$case !== 'running') throw new Error(`bench-${i} is not running: ${JSON.stringify(stateOf(task))}`);
}
await te.api.setTasks({ tasks: [] });
await te.close();
rmSync(te.dataDir, { recursive: true, force: true });

const rows = [
  ['bare child_process.spawn (baseline)', quantile(spawnMs, 0.5), quantile(spawnMs, 0.9)],
  ['Create until running', quantile(createMs, 0.5), quantile(createMs, 0.9)],
] as const;
console.log(`Create-to-running latency, ${N} runs each, interleaved`);
console.log('| path | median ms | p90 ms |\n|---|---|---|');
for (const [name, p50, p90] of rows) console.log(`| ${name} | ${p50.toFixed(2)} | ${p90.toFixed(2)} |`);
console.log(`ratio (median): ${(rows[1][1] / rows[0][1]).toFixed(1)}x   ratio (p90): ${(rows[1][2] / rows[0][2]).toFixed(1)}x`);
