// cgroup v1: one hierarchy per controller (co-mounted controllers share one).
// A task's cgroup is a directory of the same name in every hierarchy; the
// freezer hierarchy lists its members (as in Nomad), and a kill freezes it so
// that nothing forks while every pid is SIGKILLed.
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Resources } from '../../model/task.js';
import {
  applyLimits,
  type CgroupHierarchy,
  CPU_PERIOD_US,
  type Creation,
  cpuQuota,
  freshLeaf,
  LIMIT_CONTROLLER,
  type LimitKind,
  requestedLimits,
  unwritable,
} from './hierarchy.js';
import type { V1Controller } from './layout.js';
import {
  type CgroupUsage,
  keyedValues,
  killQuietly,
  killUntilEmpty,
  pidsIn,
  readInteger,
  readText,
  subtreePids,
  type TaskCgroup,
  writeControl,
  writeOptional,
} from './task-cgroup.js';
import { pollUntil } from '../../util/poll.js';

/** v1 reports "no limit" as a huge page-aligned number (LONG_MAX rounded down). */
const V1_UNLIMITED = 2 ** 60;
/** A task in uninterruptible sleep can keep the cgroup FREEZING; the kill goes ahead after this long. */
const FREEZE_WAIT_MS = 1000;

export interface V1Mounts {
  /** Directory under which the executor creates its cgroups, per controller. */
  parents: Partial<Record<V1Controller, string>>;
  /** Why a controller is missing from `parents`. */
  missing: Partial<Record<V1Controller, string>>;
}

export class V1Hierarchy implements CgroupHierarchy {
  readonly version = 1;

  /** `mounts` undefined: this host does not use v1, and the instance only serves cgroups created earlier. */
  constructor(
    private readonly mounts: V1Mounts | undefined,
    private readonly subtree: string,
  ) {}

  describe(): Record<string, unknown> {
    return { cgroups: 'v1', parents: this.mounts?.parents, missing: this.mounts?.missing };
  }

  scopeDirs(scope: string): string[] {
    return [...new Set(Object.values(this.mounts?.parents ?? {}))].map((parent) => join(parent, this.subtree, scope));
  }

  create(scope: string, name: string, resources: Resources | undefined): Creation {
    const missing: Partial<Record<string, string>> = {};
    for (const controller of Object.keys(this.mounts?.missing ?? {})) missing[controller] = `cgroup ${controller} controller is not mounted`;
    const byParent = new Map<string, V1Controller[]>();
    for (const [controller, parent] of Object.entries(this.mounts?.parents ?? {}) as [V1Controller, string][]) {
      byParent.set(parent, [...(byParent.get(parent) ?? []), controller]);
    }
    const leaf = freshLeaf(this.scopeDirs(scope), name);
    const dirs: Record<string, string> = {};
    for (const [parent, controllers] of byParent) {
      const dir = join(parent, this.subtree, scope, leaf);
      try {
        mkdirSync(dir, { recursive: true });
        for (const controller of controllers) dirs[controller] = dir;
      } catch (error) {
        for (const controller of controllers) missing[controller] = unwritable(controller, error);
      }
    }
    const unenforced = new Map<LimitKind, string>();
    for (const kind of requestedLimits(resources)) {
      const controller = LIMIT_CONTROLLER[kind];
      if (!dirs[controller]) unenforced.set(kind, missing[controller] ?? `cgroup ${controller} controller is not available`);
    }
    if (Object.keys(dirs).length === 0) return { unenforced, notes: [] };
    const cgroup: TaskCgroup = { version: 1, dirs };
    const notes = applyLimits(cgroup, resources, unenforced, (kind, value) => applyLimit(dirs[LIMIT_CONTROLLER[kind]]!, kind, value));
    return { cgroup, unenforced, notes };
  }

  existing(scope: string, leaf: string): TaskCgroup | undefined {
    const dirs: Record<string, string> = {};
    for (const [controller, parent] of Object.entries(this.mounts?.parents ?? {})) {
      const dir = join(parent, this.subtree, scope, leaf);
      if (existsSync(dir)) dirs[controller] = dir;
    }
    return Object.keys(dirs).length > 0 ? { version: 1, dirs } : undefined;
  }

  pids(cgroup: TaskCgroup): number[] | undefined {
    const dir = membershipDir(cgroup);
    return dir === undefined ? undefined : pidsIn(dir);
  }

  /** Every hierarchy: a root process could have moved itself out of some. */
  isEmpty(cgroup: TaskCgroup): boolean {
    return subtreePids(cgroup).length === 0;
  }

  /** Freezes the freezer cgroup so nothing can fork meanwhile, SIGKILLs every pid, thaws; then kills stragglers until empty. */
  async kill(cgroup: TaskCgroup, timeoutMs: number): Promise<boolean> {
    const dir = membershipDir(cgroup);
    if (!dir || !existsSync(dir)) return true;
    const empty = () => this.isEmpty(cgroup);
    if (empty()) return true;
    const freezer = cgroup.dirs.freezer;
    let frozen = false;
    if (freezer) {
      try {
        writeControl(freezer, 'freezer.state', 'FROZEN');
        frozen = true;
        await pollUntil(() => readText(join(freezer, 'freezer.state'))?.trim() === 'FROZEN', FREEZE_WAIT_MS);
      } catch {
        // not freezable: plain rounds of SIGKILL
      }
    }
    for (const pid of subtreePids(cgroup)) killQuietly(pid);
    if (frozen && freezer) {
      try {
        writeControl(freezer, 'freezer.state', 'THAWED'); // SIGKILL takes effect on thaw
      } catch {
        // removed meanwhile
      }
    }
    return killUntilEmpty(cgroup, empty, timeoutMs);
  }

  usage(cgroup: TaskCgroup): CgroupUsage {
    const dirs = cgroup.dirs;
    const usage: CgroupUsage = {};
    if (dirs.cpuacct) usage.cpuNanoseconds = readInteger(join(dirs.cpuacct, 'cpuacct.usage'));
    if (dirs.cpu) {
      const quota = readInteger(join(dirs.cpu, 'cpu.cfs_quota_us'));
      const period = readInteger(join(dirs.cpu, 'cpu.cfs_period_us'));
      if (quota !== undefined && quota > 0 && period) usage.cpuLimitMillicores = Math.round((quota / period) * 1000);
    }
    if (dirs.memory) {
      usage.memoryUsageBytes = readInteger(join(dirs.memory, 'memory.usage_in_bytes'));
      const limit = readInteger(join(dirs.memory, 'memory.limit_in_bytes'));
      if (limit !== undefined && limit < V1_UNLIMITED) usage.memoryLimitBytes = limit;
    }
    if (dirs.pids) {
      usage.pids = readInteger(join(dirs.pids, 'pids.current'));
      usage.pidsLimit = readInteger(join(dirs.pids, 'pids.max')); // "max" (no limit) is not an integer: stays absent
    }
    return usage;
  }

  oomKills(cgroup: TaskCgroup): number | undefined {
    const dir = cgroup.dirs.memory;
    return dir === undefined ? undefined : keyedValues(readText(join(dir, 'memory.oom_control'))).get('oom_kill');
  }
}

/** The directory whose cgroup.procs lists the task's processes: freezer first, as Nomad does. */
function membershipDir(cgroup: TaskCgroup): string | undefined {
  const d = cgroup.dirs;
  return d.freezer ?? d.pids ?? d.memory ?? d.cpuacct ?? d.cpu ?? Object.values(d)[0];
}

function applyLimit(dir: string, kind: LimitKind, value: number): string | undefined {
  switch (kind) {
    case 'memoryBytes':
      writeControl(dir, 'memory.limit_in_bytes', String(value));
      // memsw (memory+swap) must be >= the limit, so it is set after it; absent without swap accounting.
      if (existsSync(join(dir, 'memory.memsw.limit_in_bytes'))) writeOptional(dir, 'memory.memsw.limit_in_bytes', String(value));
      return undefined;
    case 'cpuMillicores': {
      const { quotaUs, note } = cpuQuota(value);
      writeControl(dir, 'cpu.cfs_period_us', String(CPU_PERIOD_US));
      writeControl(dir, 'cpu.cfs_quota_us', String(quotaUs));
      return note;
    }
    case 'pids':
      writeControl(dir, 'pids.max', String(value));
      return undefined;
  }
}
