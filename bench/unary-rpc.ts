// Unary RPC cost: Get on the real executor against an empty grpc-js
// handler of the same service on the same machine, measured side by side.
import { credentials, Server, ServerCredentials } from '@grpc/grpc-js';
import { rmSync } from 'node:fs';
import { TaskExecutorServiceClient, TaskExecutorServiceService } from '../gen/taskexecutor/v1/task_executor_service.js';
import { processTask, startTestExecutor } from '../test/support/executor.js';

const N = Number(process.env.BENCH_N ?? 3000);

const empty = new Server();
empty.addService(TaskExecutorServiceService, {
  get: (_call: unknown, callback: (e: null, r: object) => void) => callback(null, { task: processTask('t', ['true']) }),
} as never);
const port = await new Promise<number>((resolve, reject) =>
  empty.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))),
);
const baseline = new TaskExecutorServiceClient(`127.0.0.1:${port}`, credentials.createInsecure());

const te = await startTestExecutor({ logLevel: 'silent' });
await te.api.createTask({ task: processTask('t', ['true']) });

const call = (client: TaskExecutorServiceClient) =>
  new Promise<void>((resolve, reject) => client.get({ name: 't' }, (e) => (e ? reject(e) : resolve())));

async function measure(client: TaskExecutorServiceClient): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < N; i++) {
    const start = process.hrtime.bigint();
    await call(client);
    out.push(Number(process.hrtime.bigint() - start) / 1e3);
  }
  return out;
}

for (const c of [baseline, te.client]) await measure(c); // warm up both
const base = await measure(baseline);
const real = await measure(te.client);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
console.log(`Unary RPC latency, ${N} sequential calls each`);
console.log('| server | median µs |\n|---|---|');
console.log(`| empty grpc-js handler (baseline) | ${median(base).toFixed(0)} |`);
console.log(`| task-executor Get | ${median(real).toFixed(0)} |`);
console.log(`ratio (median): ${(median(real) / median(base)).toFixed(2)}x`);
baseline.close();
empty.forceShutdown();
await te.close();
rmSync(te.dataDir, { recursive: true, force: true });
