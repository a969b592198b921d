// The one interface behind which cgroup v1 (v1.ts) and v2 (v2.ts) differ, in
// the manner of runc's fs and fs2 managers but much smaller, and what both
// implementations share: the order and wording of limits, the CPU quota, the
// choice of a fresh leaf name.
import { existsSync, rmdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Resources } from '../../model/task.js';
import { errnoText } from '../../util/errno.js';
import type { CgroupUsage, TaskCgroup } from './task-cgroup.js';

export type LimitKind = keyof Resources;
export const LIMIT_KINDS: readonly LimitKind[] = ['memoryBytes', 'cpuMillicores', 'pids'];
/** The controller that enforces each limit (its name is the same on v1 and v2). */
export const LIMIT_CONTROLLER: Record<LimitKind, 'memory' | 'cpu' | 'pids'> = { memoryBytes: 'memory', cpuMillicores: 'cpu', pids: 'pids' };

/** What creating a task's cgroup did. */
export interface Creation {
  /** Undefined when no cgroup could be created. */
  cgroup?: TaskCgroup;
  /** Why a requested limit is not enforced, per limit. */
  unenforced: Map<LimitKind, string>;
  /** Limits applied otherwise than asked (a CPU quota raised to the kernel's minimum). */
  notes: string[];
}

/**
 * One cgroup version. Every method but `create` and `scopeDirs` works from the
 * persisted TaskCgroup alone, so an instance also serves cgroups created by an
 * earlier executor process, whichever hierarchy this host uses now.
 */
export interface CgroupHierarchy {
  readonly version: 1 | 2;
  /** For the startup log line. */
  describe(): Record<string, unknown>;
  /** The directories that hold one scope's task cgroups, one per distinct hierarchy (existing or not). */
  scopeDirs(scope: string): string[];
  /** Creates a fresh cgroup `<scope>/<name>` (or `<name>_<n>` while an earlier one still has processes) with the limits asked for. */
  create(scope: string, name: string, resources: Resources | undefined): Creation;
  /** The cgroup `<scope>/<leaf>` as `create` would have made it, if its directories exist; creates nothing. */
  existing(scope: string, leaf: string): TaskCgroup | undefined;
  /** The task's processes as its membership hierarchy lists them; undefined when unreadable (removed). */
  pids(cgroup: TaskCgroup): number[] | undefined;
  /** Whether no process is in the cgroup or the cgroups nested in it (a removed cgroup is empty). */
  isEmpty(cgroup: TaskCgroup): boolean;
  /** SIGKILLs every process in the cgroup and the cgroups nested in it; true once it is empty, false if some remain after `timeoutMs`. */
  kill(cgroup: TaskCgroup, timeoutMs: number): Promise<boolean>;
  usage(cgroup: TaskCgroup): CgroupUsage;
  /** How often the kernel's OOM killer killed a process of this cgroup; undefined without a memory cgroup. */
  oomKills(cgroup: TaskCgroup): number | undefined;
}

export const CPU_PERIOD_US = 100_000;
/** The kernel refuses CFS quotas below 1 ms. */
const MIN_CPU_QUOTA_US = 1000;

/** The CFS quota per period for a CPU limit, and a note when the kernel's minimum raised it. */
export function cpuQuota(millicores: number): { quotaUs: number; note?: string } {
  const quotaUs = Math.max(MIN_CPU_QUOTA_US, Math.round((millicores * CPU_PERIOD_US) / 1000));
  const applied = (quotaUs * 1000) / CPU_PERIOD_US;
  const note = applied > millicores ? `cpu limit of ${millicores} millicores raised to ${applied}, the smallest quota the kernel accepts` : undefined;
  return { quotaUs, note };
}

/**
 * Applies each requested limit that is not already known to be unenforced
 * with `apply` (which returns a note when it applied it otherwise than asked),
 * recording it in `cgroup.limits`, or why it failed in `unenforced`.
 */
export function applyLimits(
  cgroup: TaskCgroup,
  resources: Resources | undefined,
  unenforced: Map<LimitKind, string>,
  apply: (kind: LimitKind, value: number) => string | undefined,
): string[] {
  const notes: string[] = [];
  if (!resources) return notes;
  cgroup.limits = {};
  for (const kind of LIMIT_KINDS) {
    const value = resources[kind];
    if (value === undefined || unenforced.has(kind)) continue;
    try {
      const note = apply(kind, value);
      if (note) notes.push(note);
      cgroup.limits[kind] = value;
    } catch (error) {
      unenforced.set(kind, `cannot set the limit (${errnoText(error)})`);
    }
  }
  return notes;
}

/** The limits asked for, in a fixed order. */
export const requestedLimits = (resources: Resources | undefined): LimitKind[] =>
  LIMIT_KINDS.filter((kind) => resources?.[kind] !== undefined);

/** "cgroup memory controller is not writable (EACCES)" or why a directory could not be created. */
export function unwritable(controller: string, error: unknown): string {
  const code = errnoText(error);
  return ['EACCES', 'EPERM', 'EROFS'].includes(code)
    ? `cgroup ${controller} controller is not writable (${code})`
    : `cannot create a cgroup in the ${controller} hierarchy (${code})`;
}

const leafBase = (name: string): string => (name.length > 240 ? name.slice(0, 240) : name); // NAME_MAX is 255

/** Whether `leaf` is one of the names freshLeaf gives a task called `name`. */
export function isLeafOf(leaf: string, name: string): boolean {
  const base = leafBase(name);
  return leaf === base || (leaf.startsWith(`${base}_`) && /^[0-9]+$/.test(leaf.slice(base.length + 1)));
}

/** A leaf name for a fresh cgroup: `name`, after removing an empty leftover, else `name_2`, `name_3`... */
export function freshLeaf(scopeDirs: string[], name: string): string {
  const base = leafBase(name);
  for (let n = 1; ; n++) {
    const leaf = n === 1 ? base : `${base}_${n}`;
    const taken = scopeDirs.some((scopeDir) => {
      const dir = join(scopeDir, leaf);
      if (!existsSync(dir)) return false;
      try {
        rmdirSync(dir); // empty leftover of an earlier run: start from fresh counters (oom_kill, cpu usage)
        return false;
      } catch {
        return true; // processes of an earlier run still live there
      }
    });
    if (!taken || n > 1000) return leaf;
  }
}
