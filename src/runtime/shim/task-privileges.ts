// The executor's side of least privilege for process and sidecar tasks: what
// the supervisor binaries of this build can do (`task-shim --features`), and
// the privilege options (src/runtime/shim/privileges.h) that carry a task's
// settings to task-shim (process tasks) or task-privs (sidecar tasks).
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { type PrivilegeDefaults, type ProcessPrivileges, describeDefaults, processPrivileges } from '../../model/privileges.js';
import type { SecurityContext } from '../../model/task.js';

/** What this build of the supervisor can apply. */
export interface PrivilegeFeatures {
  capabilities: boolean;
  seccomp: boolean;
}

/** Asks a task-shim binary what it was built with; an older shim without --features has neither. */
export function probeFeatures(shimPath: string): PrivilegeFeatures {
  const result = spawnSync(shimPath, ['--features'], { encoding: 'utf8', timeout: 10_000 });
  const words = result.status === 0 ? result.stdout.trim().split(/\s+/) : [];
  return { capabilities: words.includes('capabilities'), seccomp: words.includes('seccomp') };
}

export interface PrivilegeArgs {
  /** Options for task-shim or task-privs; empty when the task keeps the executor's privileges. */
  args: string[];
  /** What the task runs without, for TaskStatus.warnings. */
  warnings: string[];
}

export interface TaskPrivilegesOptions {
  defaults: PrivilegeDefaults;
  features: PrivilegeFeatures;
  /** Whether the executor runs as root: only then has a task capabilities to keep or drop. */
  root: boolean;
  /** The statically linked task-privs for sidecar tasks, when it was built. */
  helperPath?: string;
}

export class TaskPrivileges {
  constructor(readonly options: TaskPrivilegesOptions) {}

  /** For an executor whose shim is at shimPath: probes its features and finds task-privs beside it. */
  static forShim(shimPath: string, defaults: PrivilegeDefaults): TaskPrivileges {
    const helper = join(dirname(shimPath), 'task-privs');
    return new TaskPrivileges({
      defaults,
      features: probeFeatures(shimPath),
      root: process.geteuid?.() === 0,
      ...(existsSync(helper) ? { helperPath: helper } : {}),
    });
  }

  /** The start-up log line: the defaults and what this build cannot do. */
  describe(): { message: string; missing: string[] } {
    const missing: string[] = [];
    const { features, helperPath, root } = this.options;
    if (!features.capabilities) missing.push('capabilities are not limited: task-shim was built without libcap-ng (Debian: libcap-ng-dev)');
    if (!features.seccomp) missing.push('no seccomp filter: task-shim was built without libseccomp (Debian: libseccomp-dev)');
    if (!helperPath) missing.push('sidecar tasks keep the executor\'s privileges: build/task-privs was not built (see npm run build:shim)');
    if (!root) missing.push('the executor is not root: tasks have no capabilities to keep or drop');
    return { message: `task privileges: ${describeDefaults(this.options.defaults)}`, missing };
  }

  /** The settings of a task with this security context, before what the build lacks is left out. */
  resolve(ctx: SecurityContext | undefined): ProcessPrivileges {
    return processPrivileges(ctx, this.options.defaults);
  }

  /** The privilege options for a task, and warnings for what this build or executor cannot apply. */
  args(ctx: SecurityContext | undefined): PrivilegeArgs {
    const wanted = this.resolve(ctx);
    const { features, root } = this.options;
    const args: string[] = [];
    const warnings: string[] = [];
    if (wanted.capabilities && root) {
      if (features.capabilities) args.push('--caps', wanted.capabilities.join(','));
      else warnings.push('capabilities were not limited: the executor\'s task-shim was built without libcap-ng (Debian: libcap-ng-dev)');
    }
    if (wanted.seccomp === 'default') {
      if (features.seccomp) args.push('--seccomp', 'default');
      else warnings.push('no seccomp filter: the executor\'s task-shim was built without libseccomp (Debian: libseccomp-dev)');
    }
    if (wanted.noNewPrivileges) args.push('--no-new-privs', '1');
    for (const r of wanted.rlimits) args.push('--rlimit', `${r.name}=${limit(r.soft)}:${limit(r.hard)}`);
    return { args, warnings };
  }
}

const limit = (value: number): string => (value === -1 ? 'unlimited' : String(value));
