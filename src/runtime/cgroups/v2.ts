// cgroup v2: one unified hierarchy. Controllers reach a task's cgroup only
// through every ancestor's cgroup.subtree_control, so the scope directory is
// set up once with them; `cgroup.events` says whether anything still lives in
// the cgroup or below it, and `cgroup.kill` (Linux 5.14+) kills all of it at
// once, with a freeze, kill, thaw on older kernels.
import { existsSync, mkdirSync, rmdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
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
} from './hierarchy.js';
import { V2_CONTROLLERS, type V2Controller } from './layout.js';
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
import { errnoText } from '../../util/errno.js';
import { pollUntil } from '../../util/poll.js';

const FREEZE_WAIT_MS = 1000;

export interface V2Mount {
  mountPoint: string;
  /** The executor's own cgroup: the preferred parent (delegation), the mount point being the fallback. */
  parent: string;
}

interface V2Scope {
  dir?: string;
  error?: string;
  /** Controllers that cannot be enabled for the scope's children, and why. */
  problems: Map<V2Controller, string>;
}

const words = (text: string | undefined) => new Set((text ?? '').trim().split(/\s+/).filter(Boolean));

export class V2Hierarchy implements CgroupHierarchy {
  readonly version = 2;
  private readonly scopes = new Map<string, V2Scope>();

  /** `mount` undefined: this host does not use v2, and the instance only serves cgroups created earlier. */
  constructor(
    private readonly mount: V2Mount | undefined,
    private readonly subtree: string,
    private readonly log: Logger,
  ) {}

  describe(): Record<string, unknown> {
    return { cgroups: 'v2', parent: this.mount?.parent, mountPoint: this.mount?.mountPoint };
  }

  scopeDirs(scope: string): string[] {
    const m = this.mount;
    return m ? [...new Set([m.parent, m.mountPoint])].map((parent) => join(parent, this.subtree, scope)) : [];
  }

  create(scope: string, name: string, resources: Resources | undefined): Creation {
    const setup = this.scope(scope);
    let cgroup: TaskCgroup | undefined;
    if (setup.dir) {
      const dir = join(setup.dir, freshLeaf([setup.dir], name));
      try {
        mkdirSync(dir);
        cgroup = { version: 2, dirs: { unified: dir } };
      } catch (error) {
        setup.error = `cannot create a cgroup under ${setup.dir} (${errnoText(error)})`;
      }
    }
    const unenforced = new Map<LimitKind, string>();
    for (const kind of requestedLimits(resources)) {
      const controller = LIMIT_CONTROLLER[kind];
      if (!cgroup) unenforced.set(kind, setup.error ?? 'cgroup v2 hierarchy is not usable');
      else if (setup.problems.has(controller)) unenforced.set(kind, `cgroup ${controller} controller is not available (${setup.problems.get(controller)})`);
    }
    if (!cgroup) return { unenforced, notes: [] };
    const dir = cgroup.dirs.unified!;
    const notes = applyLimits(cgroup, resources, unenforced, (kind, value) => applyLimit(dir, kind, value));
    return { cgroup, unenforced, notes };
  }

  existing(scope: string, leaf: string): TaskCgroup | undefined {
    const dir = this.scopeDirs(scope).map((scopeDir) => join(scopeDir, leaf)).find((candidate) => existsSync(candidate));
    return dir ? { version: 2, dirs: { unified: dir } } : undefined;
  }

  pids(cgroup: TaskCgroup): number[] | undefined {
    const dir = cgroup.dirs.unified;
    return dir === undefined ? undefined : pidsIn(dir);
  }

  isEmpty(cgroup: TaskCgroup): boolean {
    const dir = cgroup.dirs.unified;
    return dir === undefined || !populated(cgroup, dir);
  }

  async kill(cgroup: TaskCgroup, timeoutMs: number): Promise<boolean> {
    const dir = cgroup.dirs.unified;
    if (!dir || !existsSync(dir)) return true;
    const empty = () => this.isEmpty(cgroup);
    if (empty()) return true;
    let killed = false;
    if (existsSync(join(dir, 'cgroup.kill'))) {
      try {
        writeControl(dir, 'cgroup.kill', '1');
        killed = true;
      } catch {
        // removed meanwhile, or refused: the freeze and pid rounds below
      }
    }
    if (!killed) await freezeAndKill(cgroup, dir);
    return killUntilEmpty(cgroup, empty, timeoutMs);
  }

  usage(cgroup: TaskCgroup): CgroupUsage {
    const dir = cgroup.dirs.unified;
    const usage: CgroupUsage = {};
    if (!dir) return usage;
    // cpu.stat's usage_usec is kept by the core for every cgroup, with or without the cpu controller.
    const usec = keyedValues(readText(join(dir, 'cpu.stat'))).get('usage_usec');
    if (usec !== undefined) usage.cpuNanoseconds = usec * 1000;
    const cpuMax = readText(join(dir, 'cpu.max'))?.trim().split(/\s+/);
    if (cpuMax && cpuMax[0] !== 'max' && cpuMax[1]) usage.cpuLimitMillicores = Math.round((Number(cpuMax[0]) / Number(cpuMax[1])) * 1000);
    usage.memoryUsageBytes = readInteger(join(dir, 'memory.current'));
    usage.memoryLimitBytes = readInteger(join(dir, 'memory.max'));
    usage.pids = readInteger(join(dir, 'pids.current'));
    usage.pidsLimit = readInteger(join(dir, 'pids.max')); // "max" (no limit) is not an integer: stays absent
    const io = readText(join(dir, 'io.stat'));
    if (io !== undefined) {
      let read = 0;
      let write = 0;
      for (const match of io.matchAll(/\brbytes=(\d+)/g)) read += Number(match[1]);
      for (const match of io.matchAll(/\bwbytes=(\d+)/g)) write += Number(match[1]);
      usage.readBytes = read;
      usage.writeBytes = write;
    }
    return usage;
  }

  oomKills(cgroup: TaskCgroup): number | undefined {
    const dir = cgroup.dirs.unified;
    return dir === undefined ? undefined : keyedValues(readText(join(dir, 'memory.events'))).get('oom_kill');
  }

  /** The scope directory with the controllers enabled for its children; set up once (again if it was swept). */
  private scope(scope: string): V2Scope {
    const cached = this.scopes.get(scope);
    if (cached?.dir && existsSync(cached.dir)) return cached;
    const m = this.mount;
    if (!m) return { problems: new Map(), error: 'no cgroup v2 hierarchy is mounted' };
    let best: V2Scope | undefined;
    for (const parent of [...new Set([m.parent, m.mountPoint])]) {
      const attempt = this.setUp(parent, scope);
      if (!best || (attempt.dir && (!best.dir || attempt.problems.size < best.problems.size))) {
        if (best?.dir) abandon(best.dir);
        best = attempt;
      } else if (attempt.dir) {
        abandon(attempt.dir);
      }
      if (best.dir && best.problems.size === 0) break;
    }
    const chosen: V2Scope = best ?? { problems: new Map(), error: 'cgroup v2 hierarchy is not usable' };
    this.scopes.set(scope, chosen);
    this.log.debug({ scope: chosen.dir, problems: Object.fromEntries(chosen.problems), error: chosen.error }, 'cgroup v2 scope ready');
    return chosen;
  }

  private setUp(parent: string, scope: string): V2Scope {
    const subtree = join(parent, this.subtree);
    const dir = join(subtree, scope);
    const problems = new Map<V2Controller, string>();
    try {
      mkdirSync(dir, { recursive: true });
    } catch (error) {
      const code = errnoText(error);
      const why = ['EACCES', 'EPERM', 'EROFS'].includes(code) ? `cgroup v2 hierarchy ${parent} is not writable (${code})` : `cannot create ${dir} (${code})`;
      return { problems, error: why };
    }
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
          problems.set(controller, `cannot enable it in ${join(level, 'cgroup.subtree_control')}: ${errnoText(error)}`);
        }
      }
    }
    return { dir, problems };
  }
}

/** Whether anything lives in the cgroup or below it (cgroup.events; the process lists where it cannot be read). */
function populated(cgroup: TaskCgroup, dir: string): boolean {
  const flag = keyedValues(readText(join(dir, 'cgroup.events'))).get('populated');
  return flag === undefined ? subtreePids(cgroup).length > 0 : flag === 1;
}

/** Before cgroup.kill (Linux < 5.14): freeze so that nothing forks, SIGKILL every pid, thaw. */
async function freezeAndKill(cgroup: TaskCgroup, dir: string): Promise<void> {
  let frozen = false;
  if (existsSync(join(dir, 'cgroup.freeze'))) {
    try {
      writeControl(dir, 'cgroup.freeze', '1');
      frozen = true;
      await pollUntil(() => keyedValues(readText(join(dir, 'cgroup.events'))).get('frozen') === 1, FREEZE_WAIT_MS);
    } catch {
      // not freezable: plain rounds of SIGKILL
    }
  }
  for (const pid of subtreePids(cgroup)) killQuietly(pid);
  if (frozen) {
    try {
      writeControl(dir, 'cgroup.freeze', '0'); // SIGKILL takes effect on thaw
    } catch {
      // removed meanwhile
    }
  }
}

function applyLimit(dir: string, kind: LimitKind, value: number): string | undefined {
  switch (kind) {
    case 'memoryBytes':
      writeControl(dir, 'memory.max', String(value));
      // No swapping past the limit: the task is OOM-killed instead, as the contract says.
      if (existsSync(join(dir, 'memory.swap.max'))) writeOptional(dir, 'memory.swap.max', '0');
      return undefined;
    case 'cpuMillicores': {
      const { quotaUs, note } = cpuQuota(value);
      writeControl(dir, 'cpu.max', `${quotaUs} ${CPU_PERIOD_US}`);
      return note;
    }
    case 'pids':
      writeControl(dir, 'pids.max', String(value));
      return undefined;
  }
}

/** Removes a scope directory (and the subtree when empty) created by a setup attempt that lost. */
function abandon(dir: string): void {
  for (const d of [dir, join(dir, '..')]) {
    try {
      rmdirSync(d);
    } catch {
      return;
    }
  }
}
