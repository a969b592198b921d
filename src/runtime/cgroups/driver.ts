// Creates per-task cgroups and applies resource limits, on cgroup v1 (one
// hierarchy per controller) and v2 (unified), and says in plain words what it
// could not do, so the task can run without limits and its status can tell.
//
// Layout: <parent>/<subtree>/<scope>/<task-name> in every hierarchy, where
// <parent> is the executor's own cgroup (v2: or the hierarchy root when the own
// cgroup cannot delegate controllers), <subtree> is "task-executor" and
// <scope> is a short hash of the executor's data dir, so several executors on
// one host (tests, per-user instances) never share or sweep each other's cgroups.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, rmdirSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Logger } from 'pino';
import type { Resources } from '../../model/task.js';
import { type CgroupLayout, detectLayout, type V1Controller, V2_CONTROLLERS, type V2Controller } from './layout.js';
import { CPU_PERIOD_US, MIN_CPU_QUOTA_US, readText, removeDir, type TaskCgroup, writeControl } from './task-cgroup.js';

/** Environment override of the cgroup root: a directory laid out like /sys/fs/cgroup, or "off". */
export const CGROUP_ROOT_ENV = 'TASK_EXECUTOR_CGROUP_ROOT';

export interface CgroupDriverOptions {
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

type LimitKind = keyof Resources;
const LIMIT_ORDER: LimitKind[] = ['memoryBytes', 'cpuMillicores', 'pids'];
const CONTROLLER: Record<LimitKind, 'memory' | 'cpu' | 'pids'> = { memoryBytes: 'memory', cpuMillicores: 'cpu', pids: 'pids' };
const LABEL: Record<LimitKind, string> = { memoryBytes: 'memory', cpuMillicores: 'cpu', pids: 'pids' };

interface V2Scope {
  dir?: string;
  error?: string;
  problems: Map<V2Controller, string>;
}

/** The scope of one executor instance: a short hash of its data dir. */
export function scopeOf(dataDir: string): string {
  return createHash('sha256').update(resolve(dataDir)).digest('hex').slice(0, 12);
}

const SCOPE_PATTERN = /^[0-9a-f]{12}$/;

const errno = (error: unknown) => (error as NodeJS.ErrnoException).code ?? String(error);
const words = (text: string | undefined) => new Set((text ?? '').trim().split(/\s+/).filter(Boolean));

function unwritable(controller: string, error: unknown): string {
  const code = errno(error);
  return ['EACCES', 'EPERM', 'EROFS'].includes(code)
    ? `cgroup ${controller} controller is not writable (${code})`
    : `cannot create a cgroup in the ${controller} hierarchy (${code})`;
}

export class CgroupDriver {
  readonly layout: CgroupLayout;
  readonly subtree: string;
  private readonly log: Logger;
  private readonly v2Scopes = new Map<string, V2Scope>();

  constructor(options: CgroupDriverOptions) {
    this.log = options.log;
    this.subtree = options.subtree ?? 'task-executor';
    this.layout =
      options.root === 'off' ? { version: 0, reason: `cgroups are disabled (${CGROUP_ROOT_ENV}=off)` } : detectLayout(options.root);
  }

  static fromEnvironment(log: Logger, env: NodeJS.ProcessEnv = process.env): CgroupDriver {
    return new CgroupDriver({ root: env[CGROUP_ROOT_ENV] || undefined, log });
  }

  /** For the startup log line. */
  describe(): Record<string, unknown> {
    const l = this.layout;
    if (l.version === 0) return { cgroups: 'none', reason: l.reason };
    if (l.version === 1) return { cgroups: 'v1', parents: l.parents, missing: l.missing };
    return { cgroups: 'v2', parent: l.parent, mountPoint: l.mountPoint };
  }

  /** The directories holding one scope's task cgroups, one per hierarchy (existing or not). */
  scopeDirs(scope: string): string[] {
    const l = this.layout;
    if (l.version === 0) return [];
    const parents = l.version === 1 ? Object.values(l.parents) : [l.parent, l.mountPoint];
    return [...new Set(parents)].map((parent) => join(parent, this.subtree, scope));
  }

  /**
   * Creates a fresh cgroup for a task (a leftover one of the same name is
   * removed first, or, when it still has processes, a new name `<name>_<n>` is
   * used) and applies the limits in `resources`.
   */
  create(scope: string, name: string, resources: Resources | undefined): CreatedCgroup {
    const requested = LIMIT_ORDER.filter((kind) => resources?.[kind] !== undefined);
    const problems = new Map<LimitKind, string>();
    const notes: string[] = [];
    let cgroup: TaskCgroup | undefined;
    const l = this.layout;
    if (l.version === 0) {
      for (const kind of requested) problems.set(kind, l.reason);
    } else if (l.version === 1) {
      const missing: Partial<Record<string, string>> = {};
      for (const controller of Object.keys(l.missing)) missing[controller] = `cgroup ${controller} controller is not mounted`;
      const byParent = new Map<string, V1Controller[]>();
      for (const [controller, parent] of Object.entries(l.parents) as [V1Controller, string][]) {
        byParent.set(parent, [...(byParent.get(parent) ?? []), controller]);
      }
      const leaf = freshLeaf(
        [...byParent.keys()].map((parent) => join(parent, this.subtree, scope)),
        name,
      );
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
      if (Object.keys(dirs).length > 0) cgroup = { version: 1, dirs };
      for (const kind of requested) {
        const controller = CONTROLLER[kind];
        if (!dirs[controller]) problems.set(kind, missing[controller] ?? `cgroup ${controller} controller is not available`);
      }
    } else {
      const setup = this.v2Scope(scope);
      if (setup.dir) {
        const dir = join(setup.dir, freshLeaf([setup.dir], name));
        try {
          mkdirSync(dir);
          cgroup = { version: 2, dirs: { unified: dir } };
        } catch (error) {
          setup.error = `cannot create a cgroup under ${setup.dir} (${errno(error)})`;
        }
      }
      for (const kind of requested) {
        const controller = CONTROLLER[kind];
        if (!cgroup) problems.set(kind, setup.error ?? 'cgroup v2 hierarchy is not usable');
        else if (setup.problems.has(controller)) problems.set(kind, `cgroup ${controller} controller is not available (${setup.problems.get(controller)})`);
      }
    }
    if (cgroup && resources) {
      cgroup.limits = {};
      for (const kind of requested) {
        if (problems.has(kind)) continue;
        try {
          const note = applyLimit(cgroup, kind, resources[kind]!);
          if (note) notes.push(note);
          cgroup.limits[kind] = resources[kind];
        } catch (error) {
          problems.set(kind, `cannot set the limit (${errno(error)})`);
        }
      }
    }
    return { cgroup, warnings: [...limitWarnings(requested, problems), ...notes] };
  }

  /**
   * Removes the empty cgroups of a scope whose task is gone (`isLive` false),
   * then the scope itself when nothing is left in it. Cgroups that still hold
   * processes are left alone.
   */
  async sweep(scope: string, isLive: (taskName: string) => boolean): Promise<void> {
    for (const scopeDir of this.scopeDirs(scope)) {
      let entries;
      try {
        entries = readdirSync(scopeDir, { withFileTypes: true });
      } catch {
        continue;
      }
      for (const entry of entries) {
        if (!entry.isDirectory() || isLive(entry.name.replace(/_\d+$/, ''))) continue;
        const dir = join(scopeDir, entry.name);
        if (await removeDir(dir, 0)) this.log.debug({ cgroup: dir }, 'removed the cgroup of a deleted task');
      }
      try {
        rmdirSync(scopeDir);
      } catch {
        // still in use
      }
    }
  }

  /**
   * Removes empty task cgroups of other scopes that are older than `minAgeMs`
   * (by the directory's time, which kernfs sets when the cgroup is created),
   * then those scopes when empty. Cleans up after executors whose data dir was
   * deleted (test runs); the age keeps it away from cgroups another live
   * executor just created and has not started its task in yet.
   */
  async sweepForeign(ownScope: string, minAgeMs: number): Promise<void> {
    const subtrees = new Set(this.scopeDirs(ownScope).map((dir) => join(dir, '..')));
    const now = Date.now();
    for (const subtree of subtrees) {
      let scopes;
      try {
        scopes = readdirSync(subtree, { withFileTypes: true });
      } catch {
        continue;
      }
      for (const scope of scopes) {
        // Only scopes of this driver (12 hex digits): other software may share the subtree name (e.g. a CRI cgroup parent).
        if (!scope.isDirectory() || scope.name === ownScope || !SCOPE_PATTERN.test(scope.name)) continue;
        const scopeDir = join(subtree, scope.name);
        let leaves;
        try {
          leaves = readdirSync(scopeDir, { withFileTypes: true });
        } catch {
          continue;
        }
        for (const leaf of leaves) {
          if (!leaf.isDirectory()) continue;
          const dir = join(scopeDir, leaf.name);
          try {
            if (now - statSync(dir).mtimeMs < minAgeMs) continue;
          } catch {
            continue;
          }
          if (await removeDir(dir, 0)) this.log.debug({ cgroup: dir }, 'removed an old empty cgroup of another executor instance');
        }
        try {
          if (now - statSync(scopeDir).mtimeMs >= minAgeMs) rmdirSync(scopeDir);
        } catch {
          // still in use
        }
      }
    }
  }

  /** The v2 scope directory with the controllers enabled for its children; set up once (again if it was swept). */
  private v2Scope(scope: string): V2Scope {
    const cached = this.v2Scopes.get(scope);
    if (cached?.dir && existsSync(cached.dir)) return cached;
    const l = this.layout;
    if (l.version !== 2) return { problems: new Map(), error: 'not cgroup v2' };
    let best: V2Scope | undefined;
    for (const parent of [...new Set([l.parent, l.mountPoint])]) {
      const attempt = this.setupV2Scope(parent, scope);
      if (!best || (attempt.dir && (!best.dir || attempt.problems.size < best.problems.size))) {
        if (best?.dir) this.abandon(best.dir);
        best = attempt;
      } else if (attempt.dir) {
        this.abandon(attempt.dir);
      }
      if (best.dir && best.problems.size === 0) break;
    }
    const chosen: V2Scope = best ?? { problems: new Map(), error: 'cgroup v2 hierarchy is not usable' };
    this.v2Scopes.set(scope, chosen);
    this.log.debug({ scope: chosen.dir, problems: Object.fromEntries(chosen.problems), error: chosen.error }, 'cgroup v2 scope ready');
    return chosen;
  }

  private setupV2Scope(parent: string, scope: string): V2Scope {
    const subtree = join(parent, this.subtree);
    const dir = join(subtree, scope);
    const problems = new Map<V2Controller, string>();
    try {
      mkdirSync(dir, { recursive: true });
    } catch (error) {
      const code = errno(error);
      const why = ['EACCES', 'EPERM', 'EROFS'].includes(code) ? `cgroup v2 hierarchy ${parent} is not writable (${code})` : `cannot create ${dir} (${code})`;
      return { problems, error: why };
    }
    // Controllers reach a cgroup only through every ancestor's cgroup.subtree_control.
    for (const level of [parent, subtree, dir]) {
      const available = words(readText(join(level, 'cgroup.controllers')));
      const active = words(readText(join(level, 'cgroup.subtree_control')));
      for (const controller of V2_CONTROLLERS) {
        if (problems.has(controller) || active.has(controller)) continue;
        if (!available.has(controller)) {
          problems.set(controller, `not enabled for ${level}`);
          continue;
        }
        try {
          writeControl(level, 'cgroup.subtree_control', `+${controller}`);
        } catch (error) {
          problems.set(controller, `cannot enable it in ${join(level, 'cgroup.subtree_control')}: ${errno(error)}`);
        }
      }
    }
    return { dir, problems };
  }

  /** Removes a scope directory (and the subtree when empty) created by a setup attempt that lost. */
  private abandon(dir: string): void {
    for (const d of [dir, join(dir, '..')]) {
      try {
        rmdirSync(d);
      } catch {
        return;
      }
    }
  }
}

/** A leaf name for a fresh cgroup: `name`, after removing an empty leftover, else `name_2`, `name_3`... */
function freshLeaf(scopeDirs: string[], name: string): string {
  const base = name.length > 240 ? name.slice(0, 240) : name; // NAME_MAX is 255
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

function applyLimit(cgroup: TaskCgroup, kind: LimitKind, value: number): string | undefined {
  const v2 = cgroup.version === 2;
  const dir = v2 ? cgroup.dirs.unified! : cgroup.dirs[CONTROLLER[kind]]!;
  switch (kind) {
    case 'memoryBytes':
      if (v2) {
        writeControl(dir, 'memory.max', String(value));
        // No swapping past the limit: the task is OOM-killed instead, as the contract says.
        if (existsSync(join(dir, 'memory.swap.max'))) writeOptional(dir, 'memory.swap.max', '0');
      } else {
        writeControl(dir, 'memory.limit_in_bytes', String(value));
        // memsw (memory+swap) must be >= the limit, so it is set after it; absent without swap accounting.
        if (existsSync(join(dir, 'memory.memsw.limit_in_bytes'))) writeOptional(dir, 'memory.memsw.limit_in_bytes', String(value));
      }
      return undefined;
    case 'cpuMillicores': {
      const quota = Math.max(MIN_CPU_QUOTA_US, Math.round((value * CPU_PERIOD_US) / 1000));
      if (v2) {
        writeControl(dir, 'cpu.max', `${quota} ${CPU_PERIOD_US}`);
      } else {
        writeControl(dir, 'cpu.cfs_period_us', String(CPU_PERIOD_US));
        writeControl(dir, 'cpu.cfs_quota_us', String(quota));
      }
      const applied = (quota * 1000) / CPU_PERIOD_US;
      return applied > value ? `cpu limit of ${value} millicores raised to ${applied}, the smallest quota the kernel accepts` : undefined;
    }
    case 'pids':
      writeControl(dir, 'pids.max', String(value));
      return undefined;
  }
}

function writeOptional(dir: string, file: string, value: string): void {
  try {
    writeControl(dir, file, value);
  } catch {
    // an optional refinement (swap accounting may be off); the main limit holds
  }
}

/** One line when every requested limit failed for the same reason, else one line per limit. */
function limitWarnings(requested: LimitKind[], problems: Map<LimitKind, string>): string[] {
  if (problems.size === 0) return [];
  const reasons = new Set(problems.values());
  if (problems.size === requested.length && reasons.size === 1) return [`resource limits not enforced: ${[...reasons][0]}`];
  return [...problems].map(([kind, why]) => `${LABEL[kind]} limit not enforced: ${why}`);
}
