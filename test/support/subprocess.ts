// Runs the real entry point (src/main.ts) as a child process, for tests that
// kill the executor or check its command line and logs.
import { type ChildProcess, spawn } from 'node:child_process';
import { join } from 'node:path';
import { credentials } from '@grpc/grpc-js';
import { TaskExecutorServiceClient } from '../../gen/taskexecutor/v1/task_executor_service.js';
import { apiFor, type Api } from './executor.js';
import { waitFor } from './wait.js';

export const ROOT = new URL('../..', import.meta.url).pathname;
export const MAIN = join(ROOT, 'src/main.ts');

export interface ExecutorProcess {
  child: ChildProcess;
  output: () => string;
  exited: Promise<number | null>;
}

export function spawnExecutor(args: string[], env: NodeJS.ProcessEnv = process.env, wrap: string[] = []): ExecutorProcess {
  return spawnCommand([...wrap, process.execPath, '--import', 'tsx', MAIN, ...args], env);
}

/** Any command whose output is an executor's log, e.g. an installed package's dist/src/main.js. */
export function spawnCommand(argv: string[], env: NodeJS.ProcessEnv = process.env, cwd = ROOT): ExecutorProcess {
  const child = spawn(argv[0]!, argv.slice(1), { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, output: () => output, exited };
}

/** Waits for the "listening" log line and returns a client for the address it names. */
export async function connect(executor: ExecutorProcess): Promise<{ client: TaskExecutorServiceClient; api: Api; address: string }> {
  const address = await waitFor(
    'the executor to listen',
    () => {
      if (executor.child.exitCode !== null) throw new Error(`executor exited: ${executor.output()}`);
      return /"address":"([^"]+)".*task-executor listening/.exec(executor.output())?.[1];
    },
    { timeoutMs: 20_000 },
  );
  const client = new TaskExecutorServiceClient(address, credentials.createInsecure());
  return { client, api: apiFor(client), address };
}
