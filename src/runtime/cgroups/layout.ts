// Finds out which cgroup filesystem this machine has and where the executor
// may create its cgroups: v1 (one hierarchy per controller, "legacy" or
// "hybrid" with an empty cgroup2 next to it), v2 (one unified hierarchy), or
// none. Pure functions over the text of /proc/self/mountinfo and
// /proc/self/cgroup, so every layout can be tested on any machine.
import { existsSync, readFileSync, realpathSync } from 'node:fs';
import { join, posix } from 'node:path';
import { errnoText } from '../../util/errno.js';

/** v1 controllers a task cgroup joins (cpu and cpuacct are separate hierarchies on some hosts, co-mounted on others). */
export const V1_CONTROLLERS = ['memory', 'cpu', 'cpuacct', 'pids', 'freezer', 'blkio'] as const;
export type V1Controller = (typeof V1_CONTROLLERS)[number];

/** v2 controllers enabled for task cgroups when the parent offers them. */
export const V2_CONTROLLERS = ['memory', 'cpu', 'pids', 'io'] as const;
export type V2Controller = (typeof V2_CONTROLLERS)[number];

export type CgroupLayout =
  | {
      version: 1;
      /** Directory under which the executor creates its cgroups, per controller (co-mounted ones share it). */
      parents: Partial<Record<V1Controller, string>>;
      /** Why a controller is missing from `parents`. */
      missing: Partial<Record<V1Controller, string>>;
    }
  | {
      version: 2;
      mountPoint: string;
      /** The executor's own cgroup: the preferred parent (delegation), the mount point being the fallback. */
      parent: string;
    }
  | { version: 0; reason: string };

interface Mount {
  mountPoint: string;
  /** Path inside the cgroup filesystem that is mounted there ("/" normally, the container's cgroup in some containers). */
  root: string;
  fsType: string;
  superOptions: string[];
}

const unescapeMount = (s: string) => s.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8)));

export function parseMountinfo(text: string): Mount[] {
  const mounts: Mount[] = [];
  for (const line of text.split('\n')) {
    if (!line) continue;
    const [left, right] = line.split(' - ');
    if (!left || !right) continue;
    const fields = left.split(' ');
    const [fsType, , superOptions] = right.split(' ');
    if (!fsType || fields.length < 5) continue;
    mounts.push({
      root: unescapeMount(fields[3]!),
      mountPoint: unescapeMount(fields[4]!),
      fsType,
      superOptions: (superOptions ?? '').split(','),
    });
  }
  return mounts;
}

/** "/proc/self/cgroup" → controller → path; the v2 entry is under the key "" . */
export function parseProcCgroup(text: string): Map<string, string> {
  const paths = new Map<string, string>();
  for (const line of text.split('\n')) {
    const match = /^\d+:([^:]*):(.*)$/.exec(line);
    if (!match) continue;
    const [, controllers, path] = match;
    if (controllers === '') paths.set('', path!);
    for (const controller of controllers!.split(',')) if (controller) paths.set(controller, path!);
  }
  return paths;
}

/** Where a cgroup path (as in /proc/self/cgroup) lives under a mount, or the mount point when it is outside the mounted subtree. */
function dirFor(mount: Mount, cgroupPath: string | undefined): string {
  if (cgroupPath === undefined) return mount.mountPoint;
  const rel = posix.relative(mount.root, cgroupPath);
  if (rel.startsWith('..')) return mount.mountPoint;
  return rel ? join(mount.mountPoint, rel) : mount.mountPoint;
}

/**
 * Layout from mountinfo and the executor's own cgroups. Task cgroups nest under
 * the executor's own cgroup in each hierarchy (the delegation model of systemd
 * and container runtimes), so they count against whatever contains the executor.
 */
export function layoutFromProc(mountinfo: string, selfCgroup: string): CgroupLayout {
  const mounts = parseMountinfo(mountinfo);
  const own = parseProcCgroup(selfCgroup);
  const v1 = mounts.filter((m) => m.fsType === 'cgroup');
  const parents: Partial<Record<V1Controller, string>> = {};
  const missing: Partial<Record<V1Controller, string>> = {};
  for (const controller of V1_CONTROLLERS) {
    const mount = v1.find((m) => m.superOptions.includes(controller));
    if (mount) parents[controller] = dirFor(mount, own.get(controller));
    else missing[controller] = 'not mounted';
  }
  if (Object.keys(parents).length > 0) return { version: 1, parents, missing };
  const unified = mounts.filter((m) => m.fsType === 'cgroup2');
  const mount = unified.find((m) => m.mountPoint === '/sys/fs/cgroup') ?? unified[0];
  if (mount) return { version: 2, mountPoint: mount.mountPoint, parent: dirFor(mount, own.get('')) };
  return { version: 0, reason: 'no cgroup filesystem is mounted' };
}

/**
 * Layout of an explicitly given cgroup root (a directory laid out like
 * /sys/fs/cgroup): v2 when it holds cgroup.controllers, v1 when it holds one
 * directory per controller. Task cgroups then go right under it.
 */
export function layoutFromRoot(root: string): CgroupLayout {
  if (!existsSync(root)) return { version: 0, reason: `no cgroup filesystem found at ${root}` };
  if (existsSync(join(root, 'cgroup.controllers'))) return { version: 2, mountPoint: root, parent: root };
  const parents: Partial<Record<V1Controller, string>> = {};
  const missing: Partial<Record<V1Controller, string>> = {};
  for (const controller of V1_CONTROLLERS) {
    const dir = join(root, controller);
    if (existsSync(join(dir, 'cgroup.procs'))) parents[controller] = realpathSync(dir);
    else missing[controller] = 'not mounted';
  }
  if (Object.keys(parents).length > 0) return { version: 1, parents, missing };
  return { version: 0, reason: `no cgroup filesystem found at ${root}` };
}

export function detectLayout(root?: string): CgroupLayout {
  if (root !== undefined) return layoutFromRoot(root);
  try {
    return layoutFromProc(readFileSync('/proc/self/mountinfo', 'utf8'), readFileSync('/proc/self/cgroup', 'utf8'));
  } catch (error) {
    return { version: 0, reason: `cannot read the process's cgroups (${errnoText(error)})` };
  }
}
