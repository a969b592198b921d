// The cgroup service: one per executor, created in app.ts. It picks the
// hierarchy this host uses (v1.ts or v2.ts, detected or given by
// --cgroup-root), creates task cgroups with their limits and says in plain
// words which limits it could not enforce, so the task can run without them
// and its status can tell; it serves every later operation on a task's
// cgroup through the implementation of the version the cgroup was created
// with; it removes cgroups and sweeps the leftovers of deleted tasks.
//
// Layout: <parent>/<subtree>/<scope>/<task-name> in every hierarchy, where
// <parent> is the executor's own cgroup (v2: or the hierarchy root when the own
// cgroup cannot delegate controllers), <subtree> is "task-executor" and
// <scope> is a short hash of the executor's data dir, so several executors on
// one host (tests, per-user instances) never share or sweep each other's cgroups.
import { createHash } from 'node:crypto';
import { setImmediate as loopTurn } from 'node:timers/promises';
import { readdirSync, rmdirSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Logger } from 'pino';
import type { Resources } from '../../model/task.js';
import { type CgroupHierarchy, isLeafOf, type LimitKind, requestedLimits } from './hierarchy.js';
import { detectLayout } from './layout.js';
import { SingleFlight } from './single-flight.js';
import { isErrno } from '../../util/errno.js';
import { allCgroupPids, type CgroupUsage, procsFiles, removeCgroup, removeDirNow, type TaskCgroup, uniqueDirs } from './task-cgroup.js';
import { V1Hierarchy } from './v1.js';
import { V2Hierarchy } from './v2.js';

/** The environment variable behind --cgroup-root (config.ts): a directory laid out like /sys/fs/cgroup, or "off". */
export const CGROUP_ROOT_ENV = 'TASK_EXECUTOR_CGROUP_ROOT';

export interface CgroupManagerOptions {
  /** A cgroup root laid out like /sys/fs/cgroup to use instead of detection; "off" disables cgroups. */
  root?: string;
  /** Name of the executor's subtree under its parent cgroup. */
  subtree?: string;
  log: Logger;
}

export interface CreatedCgroup {
  /** Undefined when no hierarchy was usable. */
  cgroup?: TaskCgroup;
  /** What could not be done as asked, for Started.warnings. */
  warnings: string[];
}

const LABEL: Record<LimitKind, string> = { memoryBytes: 'memory', cpuMillicores: 'cpu', pids: 'pids' };
/** How long a kill waits for the cgroup to empty. */
const KILL_TIMEOUT_MS = 5000;
const SCOPE_PATTERN = /^[0-9a-f]{12}$/;

interface ScopeSweeps {
  flight: SingleFlight;
  /** The latest caller's: whether a task of the scope still exists. */
  isLive: (taskName: string) => boolean;
  /** A sweep asked for by sweepSoon and not begun yet. */
  soon?: NodeJS.Timeout;
}

/** How long after sweepSoon's first call the sweep runs, covering every call in between. */
const SWEEP_SOON_DELAY_MS = 1000;
/**
 * Cgroups a sweep (own or foreign) looks at (stat, rmdir) between two turns of
 * the event loop: thousands of leftovers must not hold up a start or an RPC.
 */
const SWEEP_SLICE = 32;

/** The scope of one executor instance: a short hash of its data dir. */
export function scopeOf(dataDir: string): string {
  return createHash('sha256').update(resolve(dataDir)).digest('hex').slice(0, 12);
}

export class CgroupManager {
  /** The hierarchy new task cgroups are created in; undefined when none is usable (`unavailable` says why). */
  private readonly active: CgroupHierarchy | undefined;
  private readonly unavailable: string = '';
  private readonly v1: V1Hierarchy;
  private readonly v2: V2Hierarchy;
  private readonly log: Logger;
  private readonly sweeps = new Map<string, ScopeSweeps>();
  /** Scopes this executor has task cgroups in (or sweeps): never foreign, whatever their age. */
  private readonly inUse = new Set<string>();
  /** The foreign sweep running in the background (sweepForeignInBackground), if any. */
  private foreignSweep: Promise<void> | undefined;
  /**
   * The directories of the cgroups create and find gave out and remove has
   * not been asked for yet: a sweep leaves them, whether or not their task's
   * directory exists yet (a start creates its cgroup while the task's record is
   * written, and its process joins it only after).
   */
  private readonly claimed = new Set<string>();

  constructor(options: CgroupManagerOptions) {
    this.log = options.log;
    const subtree = options.subtree ?? 'task-executor';
    const layout = options.root === 'off' ? undefined : detectLayout(options.root);
    this.v1 = new V1Hierarchy(layout?.version === 1 ? layout : undefined, subtree);
    this.v2 = new V2Hierarchy(layout?.version === 2 ? layout : undefined, subtree, this.log);
    if (layout?.version === 1) this.active = this.v1;
    else if (layout?.version === 2) this.active = this.v2;
    else this.unavailable = layout?.reason ?? 'cgroups are disabled (--cgroup-root off)';
  }

  /** For the startup log line. */
  describe(): Record<string, unknown> {
    return this.active?.describe() ?? { cgroups: 'none', reason: this.unavailable };
  }

  /** The directories holding one scope's task cgroups, one per hierarchy (existing or not). */
  scopeDirs(scope: string): string[] {
    return this.active?.scopeDirs(scope) ?? [];
  }

  /**
   * Creates a fresh cgroup for a task (a leftover one of the same name is
   * removed first, or, when it still has processes, a new name `<name>_<n>` is
   * used) and applies the limits in `resources`; warnings say which it could not.
   */
  create(scope: string, name: string, resources: Resources | undefined): CreatedCgroup {
    const requested = requestedLimits(resources);
    this.inUse.add(scope);
    if (!this.active) return { warnings: limitWarnings(requested, new Map(requested.map((kind) => [kind, this.unavailable]))) };
    const { cgroup, unenforced, notes } = this.active.create(scope, name, resources);
    if (cgroup) this.claim(cgroup);
    return { cgroup, warnings: [...limitWarnings(requested, unenforced), ...notes] };
  }

  /**
   * The cgroup `create` made for task `name` of `scope` that holds `pid` (the
   * task's process), found on disk without creating anything: for a run
   * adopted after a restart, whose handle was never recorded. `resources`
   * (the spec's) stand in for the limits as applied, which holds for a start
   * without warnings. Undefined when there is none, or `pid` is in none (it
   * exited: a leftover cgroup of the same name cannot be told apart then).
   */
  find(scope: string, name: string, pid: number, resources: Resources | undefined): TaskCgroup | undefined {
    if (!this.active) return undefined;
    this.inUse.add(scope);
    const leaves = new Set<string>();
    for (const scopeDir of this.scopeDirs(scope)) {
      try {
        for (const leaf of readdirSync(scopeDir)) if (isLeafOf(leaf, name)) leaves.add(leaf);
      } catch {
        // no such scope in this hierarchy
      }
    }
    for (const leaf of leaves) {
      const cgroup = this.active.existing(scope, leaf);
      if (!cgroup || !this.active.pids(cgroup)?.includes(pid)) continue;
      const limits = Object.fromEntries(requestedLimits(resources).map((kind) => [kind, resources![kind]]));
      this.claim(cgroup);
      return resources ? { ...cgroup, limits } : cgroup;
    }
    return undefined;
  }

  /** The cgroup.procs files the task-shim writes the task's pid into before exec. */
  procsFiles(cgroup: TaskCgroup): string[] {
    return procsFiles(cgroup);
  }

  /** Processes in the task's cgroup; undefined when it cannot be read (e.g. already removed). */
  pids(cgroup: TaskCgroup): number[] | undefined {
    return this.of(cgroup).pids(cgroup);
  }

  /** Processes in any of the task's hierarchies (a root process could have moved itself out of one). */
  allPids(cgroup: TaskCgroup): number[] {
    return allCgroupPids(cgroup);
  }

  /** Whether no process is in the cgroup, in any hierarchy, or in the cgroups nested in it (a removed cgroup is empty). */
  isEmpty(cgroup: TaskCgroup): boolean {
    return this.of(cgroup).isEmpty(cgroup);
  }

  /**
   * SIGKILLs every process in the cgroup, including ones that left the task's
   * process group and process tree (v2 `cgroup.kill`; v1 freeze, kill, thaw).
   * Resolves true once the cgroup is empty, false if processes remain after `timeoutMs`.
   */
  kill(cgroup: TaskCgroup, timeoutMs = KILL_TIMEOUT_MS): Promise<boolean> {
    return this.of(cgroup).kill(cgroup, timeoutMs);
  }

  usage(cgroup: TaskCgroup): CgroupUsage {
    return this.of(cgroup).usage(cgroup);
  }

  /** How often the kernel's OOM killer killed a process of this cgroup; undefined without a memory cgroup. */
  oomKills(cgroup: TaskCgroup): number | undefined {
    return this.of(cgroup).oomKills(cgroup);
  }

  /** Removes the task's cgroup; never kills: directories that still hold processes are returned as busy. */
  remove(cgroup: TaskCgroup): Promise<{ busy: string[] }> {
    // What stays (busy) is a leftover from now on, for a sweep to take once empty.
    for (const dir of uniqueDirs(cgroup)) this.claimed.delete(dir);
    return removeCgroup(cgroup);
  }

  private claim(cgroup: TaskCgroup): void {
    for (const dir of uniqueDirs(cgroup)) this.claimed.add(dir);
  }

  /**
   * Removes the empty cgroups of a scope whose task is gone (`isLive` false),
   * then the scope itself when nothing is left in it. Cgroups that still hold
   * processes are left alone, and so are the ones create or find gave out and
   * remove was not asked for: the cgroup of a start under way may be empty,
   * and its task's directory not there yet. It lets the event loop turn every
   * SWEEP_SLICE cgroups, so that starts go on meanwhile (a start never waits
   * for it: thousands of leftovers after a restart must not delay the first
   * one, which create copes with alone: it replaces a leftover of the same
   * name). Resolves after a sweep that began after this
   * call; concurrent calls for one scope share sweeps (a mass delete of N
   * tasks costs a handful, not N, each reading N entries), so the callers of
   * one scope must pass equivalent predicates: a sweep uses the latest.
   */
  sweep(scope: string, isLive: (taskName: string) => boolean): Promise<void> {
    return this.sweepsOf(scope, isLive).flight.run();
  }

  /**
   * A sweep a little later, one for every call in that time, that nobody
   * waits for: after each task's release, so that a mass delete of N tasks
   * costs a few sweeps instead of N (the task's own cgroup is removed by the
   * release; only cgroups of processes a task left behind wait for a sweep).
   */
  sweepSoon(scope: string, isLive: (taskName: string) => boolean): void {
    const sweeps = this.sweepsOf(scope, isLive);
    if (sweeps.soon) return;
    sweeps.soon = setTimeout(() => {
      sweeps.soon = undefined;
      sweeps.flight.run().catch((error: unknown) => this.log.warn({ err: error, scope }, 'cannot sweep leftover cgroups'));
    }, SWEEP_SOON_DELAY_MS);
    sweeps.soon.unref();
  }

  private sweepsOf(scope: string, isLive: (taskName: string) => boolean): ScopeSweeps {
    this.inUse.add(scope);
    let sweeps = this.sweeps.get(scope);
    if (!sweeps) {
      const created: ScopeSweeps = { isLive, flight: new SingleFlight(() => this.sweepOnce(scope, created.isLive)) };
      sweeps = created;
      this.sweeps.set(scope, sweeps);
    }
    sweeps.isLive = isLive;
    return sweeps;
  }

  /**
   * Removes the scope's own directories when no task cgroup is left in them
   * (cheap: one rmdir try each). With `untilBusy`, stops at the first that
   * still holds task cgroups: every hierarchy holds the same ones, so after a
   * task's release the others would refuse too (a failed rmdir costs a thrown
   * error each, 1000 releases times every hierarchy in a mass delete); the
   * sweep that follows a release tries them all.
   */
  removeScopeIfEmpty(scope: string, { untilBusy = false } = {}): void {
    for (const scopeDir of this.scopeDirs(scope)) {
      try {
        rmdirSync(scopeDir);
      } catch (error) {
        // still holds task cgroups, or already gone
        if (untilBusy && !isErrno(error, 'ENOENT')) return;
      }
    }
  }

  private async sweepOnce(scope: string, isLiveTask: (taskName: string) => boolean): Promise<void> {
    // One answer per task for the whole sweep: every v1 hierarchy lists the same tasks.
    const answers = new Map<string, boolean>();
    const isLive = (taskName: string) => {
      let live = answers.get(taskName);
      if (live === undefined) answers.set(taskName, (live = isLiveTask(taskName)));
      return live;
    };
    let looked = 0;
    for (const scopeDir of this.scopeDirs(scope)) {
      let entries;
      try {
        entries = readdirSync(scopeDir, { withFileTypes: true });
      } catch {
        continue;
      }
      for (const entry of entries) {
        if (++looked % SWEEP_SLICE === 0) await loopTurn();
        const dir = join(scopeDir, entry.name);
        // The claim check and the rmdir in one synchronous step (removeDirNow): a start's create cannot come between.
        if (!entry.isDirectory() || this.claimed.has(dir) || isLive(entry.name.replace(/_\d+$/, ''))) continue;
        if (removeDirNow(dir)) this.log.debug({ cgroup: dir }, 'removed the cgroup of a deleted task');
      }
    }
    this.removeScopeIfEmpty(scope);
  }

  /**
   * Starts sweepForeign in the background unless one runs: housekeeping that
   * nobody waits for (a start must not wait for thousands of leftovers), its
   * failure logged. Resolves when that sweep ends (for tests; never rejects).
   */
  sweepForeignInBackground(ownScope: string, minAgeMs: number): Promise<void> {
    this.inUse.add(ownScope);
    this.foreignSweep ??= this.sweepForeign(ownScope, minAgeMs)
      .catch((error: unknown) => this.log.warn({ err: error }, 'cannot sweep the leftover cgroups of other executor instances'))
      .finally(() => {
        this.foreignSweep = undefined;
      });
    return this.foreignSweep;
  }

  /**
   * Removes empty task cgroups of other scopes that are older than `minAgeMs`
   * (by the directory's time, which kernfs sets when the cgroup is created),
   * then those scopes when empty. Cleans up after executors whose data dir was
   * deleted (test runs). It lets the event loop turn every
   * SWEEP_SLICE cgroups, so starts go on meanwhile; what keeps it
   * away from the cgroup of a task being started:
   * - it never enters a scope of this executor (`ownScope` and every scope it
   *   created, found or swept cgroups in, checked again before each cgroup, so
   *   also one that began being used during the sweep);
   * - a cgroup's age check and its rmdir happen in one synchronous step, and a
   *   task's cgroup is always a fresh directory (create never reuses one), so
   *   a cgroup another executor just created and has not started its task in
   *   yet is too young to go.
   */
  async sweepForeign(ownScope: string, minAgeMs: number): Promise<void> {
    this.inUse.add(ownScope);
    const subtrees = new Set(this.scopeDirs(ownScope).map((dir) => join(dir, '..')));
    const now = Date.now();
    let looked = 0;
    const pace = async () => {
      if (++looked % SWEEP_SLICE === 0) await loopTurn();
    };
    for (const subtree of subtrees) {
      let scopes;
      try {
        scopes = readdirSync(subtree, { withFileTypes: true });
      } catch {
        continue;
      }
      for (const scope of scopes) {
        // Only scopes of this service (12 hex digits): other software may share the subtree name (e.g. a CRI cgroup parent).
        if (!scope.isDirectory() || !SCOPE_PATTERN.test(scope.name)) continue;
        const scopeDir = join(subtree, scope.name);
        let leaves;
        try {
          leaves = readdirSync(scopeDir, { withFileTypes: true });
        } catch {
          continue;
        }
        for (const leaf of leaves) {
          if (this.inUse.has(scope.name)) break;
          if (!leaf.isDirectory()) continue;
          const dir = join(scopeDir, leaf.name);
          if (removeIfOld(dir, now, minAgeMs)) this.log.debug({ cgroup: dir }, 'removed an old empty cgroup of another executor instance');
          await pace();
        }
        if (this.inUse.has(scope.name)) continue;
        try {
          if (now - statSync(scopeDir).mtimeMs >= minAgeMs) rmdirSync(scopeDir);
        } catch {
          // still in use
        }
        await pace();
      }
    }
  }

  /** The implementation for a persisted cgroup: the version it was created with, whatever this host uses now. */
  private of(cgroup: TaskCgroup): CgroupHierarchy {
    return cgroup.version === 2 ? this.v2 : this.v1;
  }
}

/** Removes an empty cgroup directory when it is at least `minAgeMs` old at `now`: the check and the rmdir in one synchronous step. */
function removeIfOld(dir: string, now: number, minAgeMs: number): boolean {
  try {
    if (now - statSync(dir).mtimeMs < minAgeMs) return false;
  } catch {
    return false;
  }
  return removeDirNow(dir);
}

/** One line when every requested limit failed for the same reason, else one line per limit. */
function limitWarnings(requested: LimitKind[], unenforced: Map<LimitKind, string>): string[] {
  if (unenforced.size === 0) return [];
  const reasons = new Set(unenforced.values());
  if (unenforced.size === requested.length && reasons.size === 1) return [`resource limits not enforced: ${[...reasons][0]}`];
  return [...unenforced].map(([kind, why]) => `${LABEL[kind]} limit not enforced: ${why}`);
}
