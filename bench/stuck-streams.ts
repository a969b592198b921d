// What Logs follow streams whose client never reads cost the executor: a task
// writes a large log and keeps running; N follow streams (over a few
// connections) are opened and never read (test/support/stuck-client.ts); the
// executor's live memory (after a GC) is taken before and once it has stopped
// growing, per response form (one line per message, batch, chunks), with the
// streams held open by raising --max-log-streams. Also times one List while the
// streams are stuck. STUCK_STREAMS (default 200), STUCK_CONNECTIONS (5), STUCK_MODES (single,batch,chunks),
// STUCK_ARGS (extra executor flags, space-separated).
import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { processTask } from '../test/support/executor.js';
import { killTaskTrees } from '../test/support/processes.js';
import { StuckClient } from '../test/support/stuck-client.js';
import { liveMemory, type Memory, settledMemory, spawnMeasuredExecutor } from '../test/support/live-memory.js';
import { connect } from '../test/support/subprocess.js';
import { waitFor } from '../test/support/wait.js';

const STREAMS = Number(process.env.STUCK_STREAMS ?? 200);
const CONNECTIONS = Number(process.env.STUCK_CONNECTIONS ?? 5);
const MODES = (process.env.STUCK_MODES ?? 'single,batch,chunks').split(',');
const EXTRA = process.env.STUCK_ARGS ? process.env.STUCK_ARGS.split(' ') : [];

/** Bytes of every output.<N>.log under dir. */
function logBytes(dir: string): number {
  let total = 0;
  for (const name of readdirSync(dir, { recursive: true, encoding: 'utf8' })) if (/output\.\d+\.log$/.test(name)) total += statSync(join(dir, name)).size;
  return total;
}

const MiB = 1024 * 1024;

async function measure(mode: string): Promise<void> {
  const scratch = mkdtempSync(join(tmpdir(), 'te-bench-'));
  const dataDir = join(scratch, 'data');
  const executor = spawnMeasuredExecutor(['--data-dir', dataDir, '--listen-addr', '127.0.0.1:0', '--max-log-streams', '0', ...EXTRA]);
  const stuck: StuckClient[] = [];
  try {
    const { api, address } = await connect(executor);
    // ~40 MB of 100-byte lines, then the task keeps running (so follow never ends).
    const script = `i=0; while [ $i -lt 400 ]; do yes "$(printf '%099d' $i)" | head -n 1000; i=$((i+1)); done; exec sleep 100000`;
    await api.createTask({ task: processTask('big', ['sh', '-c', script]) });
    for (let i = 0; i < CONNECTIONS; i++) stuck.push(new StuckClient(address));
    await waitFor('the task to write its log', () => (logBytes(dataDir) >= 40_000_000 ? true : undefined), { timeoutMs: 120_000, intervalMs: 200 });
    await api.listTasks();
    const before = await liveMemory(executor);
    let failed = 0;
    for (let i = 0; i < STREAMS; i++) {
      const { status } = stuck[i % CONNECTIONS]!.logs({ name: 'big', follow: true, batch: mode === 'batch', chunks: mode === 'chunks' });
      void status.then(() => failed++);
    }
    const after = await settledMemory(executor); // stuck once it stops growing
    const t0 = performance.now();
    await api.listTasks();
    const listMs = performance.now() - t0;
    const per = (key: keyof Memory) => ((after[key] - before[key]) / Math.max(1, STREAMS - failed) / 1024).toFixed(0);
    console.log(
      `${mode.padEnd(7)} ${STREAMS - failed} stuck streams (${failed} refused): RSS ${(before.rss / MiB).toFixed(0)} -> ${(after.rss / MiB).toFixed(0)} MiB; per stream: RSS ${per('rss')} KiB, heap ${per('heapUsed')} KiB, external ${per('external')} KiB; List ${listMs.toFixed(0)} ms`,
    );
  } finally {
    for (const client of stuck) client.close();
    executor.child.kill('SIGTERM');
    await executor.exited;
    killTaskTrees(dataDir);
    rmSync(scratch, { recursive: true, force: true });
  }
}

for (const mode of MODES) await measure(mode);
