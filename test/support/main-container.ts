// A fake "main container" for sidecar-mode tests: a process in fresh PID,
// mount, UTS and IPC namespaces (unshare), with its own hostname, a tmpfs on
// /mnt holding /mnt/work/marker that only exists inside it (and, when asked,
// a /tmp of its own), and the
// environment a main container would have (SANDBOX_MAIN_CONTAINER=<name>).
import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { readStat } from '../../src/runtime/process/procfs.js';
import { waitFor } from './wait.js';

export interface MainContainerOptions {
  /** Value of SANDBOX_MAIN_CONTAINER; leave out for a container discovery cannot find by environment. */
  name?: string;
  hostname?: string;
  /** Content of /mnt/work/marker. */
  marker?: string;
  env?: Record<string, string>;
  /**
   * false: no PID namespace of its own (like a Kubernetes pod with
   * shareProcessNamespace, where the main container shares the sidecar's).
   */
  pidNamespace?: boolean;
  /** A tmpfs on /tmp of its own, so that what the executor (or the test) writes there is the container's alone. */
  privateTmp?: boolean;
}

export interface MainContainer {
  /** The unshare process (stays in the host PID namespace when pidNamespace is on). */
  unsharePid: number;
  /** The process inside the namespaces (`sleep infinity`; PID 1 of its PID namespace when pidNamespace is on). */
  pid: number;
  /** The container's filesystem seen from the host. */
  root: string;
  hostname: string;
  /** True while `pid` runs. */
  alive(): boolean;
  /** SIGKILLs the container's init (and with it every process in its PID namespace) and waits until it is reaped. */
  kill(): Promise<void>;
}

const running = new Set<MainContainer>();

export async function startMainContainer(options: MainContainerOptions = {}): Promise<MainContainer> {
  const hostname = options.hostname ?? 'main-ctr';
  const marker = options.marker ?? 'target-only';
  const pidNamespace = options.pidNamespace ?? true;
  const script =
    `hostname ${hostname} && mount -t tmpfs tmpfs /mnt && mkdir /mnt/work && ` +
    (options.privateTmp ? 'mount -t tmpfs -o mode=1777 tmpfs /tmp && ' : '') +
    `echo ${marker} > /mnt/work/marker && exec sleep infinity`;
  const args = pidNamespace
    ? ['--pid', '--fork', '--kill-child', '--mount', '--uts', '--ipc', '--mount-proc', 'sh', '-c', script]
    : ['--mount', '--uts', '--ipc', 'sh', '-c', script];
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', TARGET_VAR: 'hello-from-target', ...options.env };
  if (options.name !== undefined) env.SANDBOX_MAIN_CONTAINER = options.name;
  // detached: setsid(), as `setsid unshare ...` would; unshare blocks SIGTERM, so it is stopped with SIGKILL.
  const child: ChildProcess = spawn('unshare', args, { env, detached: true, stdio: 'ignore' });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const unsharePid = child.pid!;
  const kill = async () => {
    try {
      process.kill(init, 'SIGKILL');
    } catch {
      // already gone
    }
    const timer = setTimeout(() => child.kill('SIGKILL'), 2000);
    await exited;
    clearTimeout(timer);
    running.delete(container);
  };
  let init = unsharePid;
  const container: MainContainer = {
    unsharePid,
    pid: unsharePid,
    root: '',
    hostname,
    alive: () => {
      const stat = readStat(init);
      return stat !== undefined && stat.state !== 'Z' && stat.state !== 'X';
    },
    kill,
  };
  running.add(container);
  try {
    init = await waitFor(
      'the fake main container to be set up',
      () => {
        if (child.exitCode !== null || child.signalCode !== null) throw new Error('unshare exited');
        const pid = pidNamespace ? firstChild(unsharePid) : unsharePid;
        // Set up once `sleep infinity` has replaced the shell.
        return pid !== undefined && comm(pid) === 'sleep' ? pid : undefined;
      },
      { timeoutMs: 10_000, intervalMs: 10 },
    );
  } catch (error) {
    await kill();
    throw error;
  }
  container.pid = init;
  container.root = `/proc/${init}/root`;
  return container;
}

/** Test hygiene: kills every fake main container still running. */
export async function killAllMainContainers(): Promise<void> {
  await Promise.all([...running].map((c) => c.kill()));
}

function firstChild(pid: number): number | undefined {
  try {
    const first = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/)[0];
    return first ? Number(first) : undefined;
  } catch {
    return undefined;
  }
}

function comm(pid: number): string | undefined {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return undefined;
  }
}
