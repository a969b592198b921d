// A private containerd (CRI enabled) for one test file: its own config, root,
// state, socket, runc root and cgroup parent under a fresh temp dir, the local
// busybox/pause image imported into the CRI namespace (k8s.io) without any
// registry, and a teardown that leaves no process, mount or cgroup behind.
//
// Needs root, containerd, runc and busybox-static (.ci/run installs them);
// when something is missing, start() throws a message saying what: the
// container tests fail rather than skip.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, openSync, closeSync, readdirSync, readFileSync, realpathSync, rmSync, rmdirSync, statSync, writeFileSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { CriClient } from '../../src/runtime/container/cri-client.js';
import { buildBusyboxImage } from './oci-image.js';

export interface PrivateContainerd {
  /** Absolute path of containerd's gRPC socket (CRI endpoint). */
  socket: string;
  dir: string;
  /** cgroup parent to give the executor (--container-cgroup-parent); nothing else uses it. */
  cgroupParent: string;
  images: { busybox: string; pause: string };
  /** A CRI client for assertions (closed by stop()). */
  cri: CriClient;
  /** The running containerd's pid (changes with restartDaemon). */
  readonly pid: number;
  /**
   * Stops containerd alone (SIGTERM, as a service manager would), leaving its
   * containers' shims running, and resolves once it exited and its socket is gone.
   */
  stopDaemon(): Promise<void>;
  /**
   * Kills containerd alone (SIGKILL: a crash or an OOM kill), leaving its
   * containers' shims running and its socket file behind; resolves once it exited.
   */
  killDaemon(): Promise<void>;
  /** Starts containerd again on the same config, state and socket; resolves once its CRI is ready. */
  startDaemon(): Promise<void>;
  /** Removes every sandbox, stops containerd, and cleans up; reports what was left over. */
  stop(): Promise<CleanupReport>;
}

export interface CleanupReport {
  /** Shims of this containerd still alive after teardown (should be empty). */
  shims: number[];
  /** Mount points under the temp dir still mounted (should be empty). */
  mounts: string[];
  /** cgroup directories under the cgroup parent still present (should be empty). */
  cgroups: string[];
  /**
   * What the executor's runs left once their sandboxes were removed and
   * containerd stopped, before teardown removed it: cgroups under the cgroup
   * parent, task bundles in containerd's state dir (should be empty).
   */
  leftovers: string[];
  /** What teardown had to force: useful when a test misbehaved. */
  forced: string[];
}

const REQUIRED = ['containerd', 'containerd-shim-runc-v2', 'ctr', 'runc'];
const CRI_NAMESPACE = 'k8s.io';
const SHIM_DIR = '/run/containerd';

function findBinary(name: string): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'];
  for (const dir of dirs) {
    if (!dir) continue;
    const path = join(dir, name);
    try {
      if (statSync(path).isFile()) return path;
    } catch {
      // not here
    }
  }
  return undefined;
}

/** Throws a clear message unless everything a private containerd needs is installed. */
export function requireContainerd(): Record<string, string> {
  const found: Record<string, string> = {};
  const missing: string[] = [];
  for (const name of REQUIRED) {
    const path = findBinary(name);
    if (path) found[name] = path;
    else missing.push(name);
  }
  if (!existsSync('/bin/busybox')) missing.push('/bin/busybox (busybox-static)');
  if (missing.length > 0) {
    throw new Error(
      `the container backend tests need containerd, runc and busybox-static, but ${missing.join(', ')} ` +
        `${missing.length === 1 ? 'is' : 'are'} missing: apt-get install containerd runc busybox-static (.ci/run installs them)`,
    );
  }
  if (process.getuid?.() !== 0) throw new Error('the container backend tests run containerd and need root');
  return found;
}

function configToml(dir: string, socket: string, pauseImage: string): string {
  return `version = 2
root = "${dir}/root"
state = "${dir}/state"
# /opt/containerd is shared with any other containerd on the host.
disabled_plugins = ["io.containerd.internal.v1.opt"]

[grpc]
  address = "${socket}"

[ttrpc]
  address = "${socket}.ttrpc"

[plugins]
  [plugins."io.containerd.grpc.v1.cri"]
    # Imported locally (test/support/oci-image.ts), never pulled.
    sandbox_image = "${pauseImage}"
    # Without CAP_SYS_RESOURCE runc cannot give the sandbox oom_score_adj -998,
    # and every RunPodSandbox fails ("can't get final child's PID from pipe").
    restrict_oom_score_adj = true
    disable_apparmor = true
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"
    [plugins."io.containerd.grpc.v1.cri".cni]
      conf_dir = "${dir}/cni/net.d"
      bin_dir = "${dir}/cni/bin"
    [plugins."io.containerd.grpc.v1.cri".containerd]
      snapshotter = "overlayfs"
      default_runtime_name = "runc"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
          SystemdCgroup = false
          # Not the shared /run/containerd/runc: this containerd's containers only.
          Root = "${dir}/runc"
`;
}

const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** One containerd process on a private config. */
interface Daemon {
  child: ChildProcess;
  pid: number;
  exited: () => boolean;
}

function spawnDaemon(containerd: string, dir: string): Daemon {
  const logFd = openSync(join(dir, 'containerd.log'), 'a');
  const child: ChildProcess = spawn(containerd, ['--config', join(dir, 'config.toml')], {
    detached: true,
    stdio: ['ignore', logFd, logFd],
  });
  closeSync(logFd);
  let exited = false;
  child.on('exit', () => (exited = true));
  return { child, pid: child.pid!, exited: () => exited };
}

async function untilReady(daemon: Daemon, cri: CriClient, logTail: () => string): Promise<void> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (daemon.exited()) throw new Error(`containerd exited during startup:\n${logTail()}`);
    try {
      await cri.version(1000);
      const ready = (await cri.status(1000)).find((c) => c.type === 'RuntimeReady');
      if (ready?.status) return;
    } catch {
      // not yet
    }
    if (Date.now() > deadline) throw new Error(`containerd did not become ready within 20 s:\n${logTail()}`);
    await delay(50);
  }
}

/** SIGTERM, then SIGKILL after 10 s; resolves once it exited. Returns whether it had to be killed. */
async function terminate(daemon: Daemon): Promise<boolean> {
  if (daemon.exited()) return false;
  signal(daemon.pid, 'SIGTERM');
  const deadline = Date.now() + 10_000;
  while (!daemon.exited() && Date.now() < deadline) await delay(25);
  if (daemon.exited()) return false;
  signal(daemon.pid, 'SIGKILL');
  while (!daemon.exited()) await delay(25);
  return true;
}

export async function startPrivateContainerd(): Promise<PrivateContainerd> {
  const bins = requireContainerd();
  const dir = mkdtempSync('/tmp/te-ctrd-');
  const socket = join(dir, 'containerd.sock');
  const cgroupParent = `/te-test-${randomBytes(4).toString('hex')}`;
  const built = buildBusyboxImage();
  const shimDirExisted = existsSync(join(SHIM_DIR, 's'));
  for (const sub of ['root', 'state', 'runc', 'cni/net.d', 'cni/bin']) mkdirSync(join(dir, sub), { recursive: true });
  writeFileSync(join(dir, 'config.toml'), configToml(dir, socket, built.pause));
  writeFileSync(join(dir, 'image.tar'), built.tarball);

  let daemon = spawnDaemon(bins.containerd!, dir);
  const logTail = () => {
    try {
      return readFileSync(join(dir, 'containerd.log'), 'utf8').split('\n').slice(-15).join('\n');
    } catch {
      return '';
    }
  };

  const cri = new CriClient(socket, { timeoutMs: 10_000 });
  const stop = async (): Promise<CleanupReport> => teardown({ dir, socket, cgroupParent, daemon, cri, shimDirExisted });
  try {
    await untilReady(daemon, cri, logTail);
    execFileSync(bins.ctr!, ['-a', socket, '-n', CRI_NAMESPACE, 'images', 'import', join(dir, 'image.tar')], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    for (const image of [built.busybox, built.pause]) {
      if (!(await cri.imageStatus(image))) throw new Error(`image ${image} not visible through the CRI after import`);
    }
  } catch (error) {
    await stop();
    throw error;
  }
  return {
    socket,
    dir,
    cgroupParent,
    images: { busybox: built.busybox, pause: built.pause },
    cri,
    get pid() {
      return daemon.pid;
    },
    stopDaemon: async () => {
      if (await terminate(daemon)) throw new Error(`containerd did not exit within 10 s of SIGTERM:\n${logTail()}`);
      await waitUntil(() => !existsSync(socket), 5000);
    },
    killDaemon: async () => {
      signal(daemon.pid, 'SIGKILL');
      await waitUntil(daemon.exited, 10_000);
      if (!daemon.exited()) throw new Error('containerd did not exit within 10 s of SIGKILL');
    },
    startDaemon: async () => {
      if (!daemon.exited()) throw new Error('containerd is still running');
      daemon = spawnDaemon(bins.containerd!, dir);
      await untilReady(daemon, cri, logTail);
    },
    stop,
  };
}

interface TeardownState {
  dir: string;
  socket: string;
  cgroupParent: string;
  daemon: Daemon;
  cri: CriClient;
  shimDirExisted: boolean;
}

async function teardown(state: TeardownState): Promise<CleanupReport> {
  const forced: string[] = [];
  // 1. Everything through the CRI while containerd is healthy.
  if (!state.daemon.exited()) {
    try {
      for (const sandbox of await state.cri.listPodSandbox({})) {
        forced.push(`sandbox ${sandbox.id} (labels ${JSON.stringify(sandbox.labels)})`);
        await state.cri.stopPodSandbox(sandbox.id).catch(() => {});
        await state.cri.removePodSandbox(sandbox.id).catch(() => {});
      }
    } catch (error) {
      forced.push(`CRI cleanup failed: ${String(error)}`);
    }
  }
  state.cri.close();
  // 2. containerd: SIGTERM, then SIGKILL.
  const shimsBefore = shimPids(state.socket);
  if (await terminate(state.daemon)) forced.push('containerd SIGKILLed');
  const leftovers = runLeftovers(state.dir, state.cgroupParent);
  // 3. Shims outlive containerd by design: kill this containerd's (matched by its socket path).
  for (const pid of new Set([...shimsBefore, ...shimPids(state.socket)])) {
    forced.push(`shim ${pid} killed`);
    signal(pid, 'SIGKILL');
  }
  // The shim runs runc with root <Root>/<namespace>.
  const runcRoot = join(state.dir, 'runc', CRI_NAMESPACE);
  try {
    const ids = existsSync(runcRoot) ? execFileSync('runc', ['--root', runcRoot, 'list', '-q'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }) : '';
    for (const id of ids.split('\n').filter(Boolean)) {
      forced.push(`runc container ${id} deleted`);
      execFileSync('runc', ['--root', runcRoot, 'delete', '-f', id], { stdio: 'ignore' });
    }
  } catch {
    // no runc state left
  }
  await waitUntil(() => shimPids(state.socket).length === 0, 5000);
  // 4. Mounts (rootfs overlays, sandbox /dev/shm) under the temp dir, deepest first.
  for (let round = 0; round < 5 && mountsUnder(state.dir).length > 0; round++) {
    for (const mount of mountsUnder(state.dir).sort((a, b) => b.length - a.length)) {
      if (round === 0) forced.push(`unmounted ${mount}`);
      try {
        execFileSync('umount', ['-l', mount], { stdio: 'ignore' });
      } catch {
        // retried next round
      }
    }
  }
  // 5. Files, and the shared shim socket dir if this run created it and left it empty.
  if (mountsUnder(state.dir).length === 0) rmSync(state.dir, { recursive: true, force: true });
  if (!state.shimDirExisted) {
    for (const path of [join(SHIM_DIR, 's'), SHIM_DIR]) {
      try {
        rmdirSync(path);
      } catch {
        // in use by another containerd, or not empty
      }
    }
  }
  // 6. cgroups the containers had, in every hierarchy, deepest first.
  for (const path of cgroupDirs(state.cgroupParent)) removeCgroupTree(path);
  return {
    shims: shimPids(state.socket),
    mounts: mountsUnder(state.dir),
    cgroups: cgroupDirs(state.cgroupParent),
    leftovers,
    forced,
  };
}

/**
 * Per-run state that should be gone once every sandbox was removed: cgroups
 * under the cgroup parent (the parent itself is made by runc and stays), and
 * per-container or per-sandbox dirs in containerd's and runc's state.
 */
function runLeftovers(dir: string, cgroupParent: string): string[] {
  const perRunDirs = [
    'state/io.containerd.runtime.v2.task/k8s.io',
    'state/io.containerd.grpc.v1.cri/sandboxes',
    'state/io.containerd.grpc.v1.cri/containers',
    'root/io.containerd.grpc.v1.cri/sandboxes',
    'root/io.containerd.grpc.v1.cri/containers',
    `runc/${CRI_NAMESPACE}`,
  ];
  const found: string[] = [];
  for (const sub of perRunDirs) {
    const path = join(dir, sub);
    if (existsSync(path)) found.push(...readdirSync(path).map((entry) => join(path, entry)));
  }
  for (const parent of cgroupDirs(cgroupParent)) {
    found.push(...readdirSync(parent, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => join(parent, e.name)));
  }
  return found;
}

function signal(pid: number, name: NodeJS.Signals): void {
  try {
    process.kill(pid, name);
  } catch {
    // gone
  }
}

async function waitUntil(check: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check() && Date.now() < deadline) await delay(25);
}

/** containerd-shim processes serving this containerd: their argv names its socket. */
export function shimPids(socket: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let argv: string[];
    try {
      argv = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0');
    } catch {
      continue;
    }
    if (!argv[0]?.includes('containerd-shim')) continue;
    const stat = readStatState(entry);
    if (stat === 'Z' || stat === 'X') continue;
    if (argv.includes(socket)) pids.push(Number(entry));
  }
  return pids;
}

function readStatState(pid: string): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
  } catch {
    return undefined;
  }
}

/** Mount points at or under `dir`, from /proc/self/mountinfo (octal escapes decoded). */
export function mountsUnder(dir: string): string[] {
  const text = readFileSync('/proc/self/mountinfo', 'utf8');
  const mounts: string[] = [];
  for (const line of text.split('\n')) {
    const field = line.split(' ')[4];
    if (!field) continue;
    const path = field.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)));
    if (path === dir || path.startsWith(`${dir}/`)) mounts.push(path);
  }
  return mounts;
}

/** The cgroup parent's directory in every mounted hierarchy where it exists. */
export function cgroupDirs(cgroupParent: string): string[] {
  const roots = new Set<string>();
  const base = '/sys/fs/cgroup';
  if (existsSync(join(base, 'cgroup.controllers'))) roots.add(base);
  for (const entry of existsSync(base) ? readdirSync(base) : []) {
    try {
      const real = realpathSync(join(base, entry));
      if (statSync(real).isDirectory()) roots.add(real);
    } catch {
      // not a hierarchy
    }
  }
  return [...roots].map((root) => join(root, cgroupParent)).filter((path) => existsSync(path));
}

function removeCgroupTree(path: string): void {
  for (const entry of readdirSync(path, { withFileTypes: true })) {
    if (entry.isDirectory()) removeCgroupTree(join(path, entry.name));
  }
  try {
    rmdirSync(path);
  } catch {
    // still has processes: reported by the caller
  }
}
