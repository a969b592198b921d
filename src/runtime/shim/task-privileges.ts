// The executor's side of least privilege for process and sidecar tasks: what
// the supervisor binaries of this build can do (`task-shim --features`), and
// the privilege options (src/runtime/shim/privileges.h) that carry a task's
// settings to task-shim (process tasks) or task-privs (sidecar tasks).
import { execFile, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { invalidArgument } from '../../errors.js';
import { type PrivilegeDefaults, type ProcessPrivileges, describeDefaults, processPrivileges } from '../../model/privileges.js';
import { type CompiledProfile, DEFAULT_SECCOMP_PROFILE_ROOT, seccompProfileArgs } from '../../model/seccomp-profile.js';
import type { SecurityContext } from '../../model/task.js';
import { CompiledFilters } from './compiled-filters.js';
import { loadSeccompProfile } from './seccomp-profiles.js';

/** What this build of the supervisor can apply. */
export interface PrivilegeFeatures {
  capabilities: boolean;
  seccomp: boolean;
  /** Profile files' filters (--seccomp-default, --seccomp-rule, --seccomp-names). */
  seccompProfiles: boolean;
  /** Filters compiled once and loaded as programs (--seccomp-export, --seccomp-bpf). */
  seccompBpf?: boolean;
}

/** Asks a task-shim binary what it was built with; an older shim without --features has neither. */
export function probeFeatures(shimPath: string): PrivilegeFeatures {
  const result = spawnSync(shimPath, ['--features'], { encoding: 'utf8', timeout: 10_000 });
  const words = result.status === 0 ? result.stdout.trim().split(/\s+/) : [];
  return {
    capabilities: words.includes('capabilities'),
    seccomp: words.includes('seccomp'),
    seccompProfiles: words.includes('seccomp-profiles'),
    seccompBpf: words.includes('seccomp-bpf'),
  };
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
  /** The task-shim, which knows libseccomp's syscall names (--seccomp-names); without it names are checked at start only. */
  shimPath?: string;
  /** Where seccomp filters compiled once are kept (an executor: `<data-dir>/.seccomp-filters`); default a temporary directory. */
  filtersDir?: string;
  /** Where LOCALHOST profile files are read from (--seccomp-profile-root); default DEFAULT_SECCOMP_PROFILE_ROOT. */
  profileRoot?: string;
}

/** The field a start names in a profile's errors (a Create names the whole path, task.spec...). */
const PROFILE_FIELD = 'securityContext.seccompProfile.localhostProfile';

export class TaskPrivileges {
  /** Syscall names the shim's libseccomp knows, learned by check(): each is asked about once. */
  private readonly knownSyscalls = new Set<string>();
  /** Seccomp filters compiled once by the shim, for process tasks (see compiled-filters.ts). */
  readonly compiledFilters: CompiledFilters | undefined;

  constructor(readonly options: TaskPrivilegesOptions) {
    if (options.shimPath && options.features.seccompBpf) this.compiledFilters = new CompiledFilters(options.shimPath, options.filtersDir);
  }

  /** For an executor whose shim is at shimPath: probes its features and finds task-privs beside it. */
  static forShim(shimPath: string, defaults: PrivilegeDefaults, profileRoot = DEFAULT_SECCOMP_PROFILE_ROOT, filtersDir?: string): TaskPrivileges {
    const helper = join(dirname(shimPath), 'task-privs');
    return new TaskPrivileges({
      defaults,
      features: probeFeatures(shimPath),
      root: process.geteuid?.() === 0,
      shimPath,
      profileRoot,
      ...(filtersDir ? { filtersDir } : {}),
      ...(existsSync(helper) ? { helperPath: helper } : {}),
    });
  }

  get profileRoot(): string {
    return this.options.profileRoot ?? DEFAULT_SECCOMP_PROFILE_ROOT;
  }

  /**
   * What only the node can tell at Create: that a LOCALHOST profile file is
   * readable, under the profile root, a profile this executor applies, and
   * names only syscalls libseccomp knows. Throws INVALID_ARGUMENT naming
   * `field` (the security context's). A start reads the file again (it may
   * have changed), and fails with the same message if it went bad.
   */
  async check(ctx: SecurityContext | undefined, field: string): Promise<void> {
    const wanted = this.resolve(ctx);
    if (wanted.seccomp !== 'localhost' || !this.options.features.seccompProfiles) return;
    const at = `${field}.seccompProfile.localhostProfile`;
    const profile = loadSeccompProfile(this.profileRoot, wanted.localhostProfile ?? '', at);
    const unknown = await this.unknownSyscalls(profile);
    if (unknown.length > 0) {
      throw invalidArgument(
        `${at}: seccomp profile ${resolve(this.profileRoot, wanted.localhostProfile ?? '')}: unknown syscall ${unknown.slice(0, 5).map((n) => JSON.stringify(n)).join(', ')}${unknown.length > 5 ? ` and ${unknown.length - 5} more` : ''} (this node's libseccomp knows no such name)`,
      );
    }
  }

  private async unknownSyscalls(profile: CompiledProfile): Promise<string[]> {
    const { shimPath } = this.options;
    const names = [...new Set(profile.rules.flatMap((r) => r.names))].filter((n) => !this.knownSyscalls.has(n));
    if (!shimPath || names.length === 0) return [];
    let stdout: string;
    try {
      ({ stdout } = await promisify(execFile)(shimPath, ['--seccomp-names', names.join(',')], { timeout: 10_000 }));
    } catch {
      return []; // The start checks them too, and fails naming an unknown one.
    }
    const unknown = new Set(stdout.split('\n').filter(Boolean));
    for (const name of names) if (!unknown.has(name)) this.knownSyscalls.add(name);
    return names.filter((n) => unknown.has(n));
  }

  /**
   * At the executor's start-up: makes the filters' directory, and starts
   * compiling the filter of a task without a security context (the
   * executor's --task-seccomp default), so that the first tasks read it too
   * rather than the first one paying for the export in its Create.
   */
  precompileDefault(): void {
    this.compiledFilters?.prepare();
    this.args(undefined, { compiled: true });
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

  /**
   * The privilege options for a task, and warnings for what this build or
   * executor cannot apply. `compiled`: for a task-shim of this executor (process
   * tasks), which may load the filter compiled once (--seccomp-bpf) rather than
   * build it; never for task-privs, which runs in a container's filesystem.
   */
  args(ctx: SecurityContext | undefined, { compiled = false }: { compiled?: boolean } = {}): PrivilegeArgs {
    const wanted = this.resolve(ctx);
    const { features, root } = this.options;
    const args: string[] = [];
    const warnings: string[] = [];
    if (wanted.capabilities && root) {
      if (features.capabilities) args.push('--caps', wanted.capabilities.join(','));
      else warnings.push('capabilities were not limited: the executor\'s task-shim was built without libcap-ng (Debian: libcap-ng-dev)');
    }
    let filter: string[] = [];
    if (wanted.seccomp === 'default') {
      if (features.seccomp) filter = ['--seccomp', 'default'];
      else warnings.push('no seccomp filter: the executor\'s task-shim was built without libseccomp (Debian: libseccomp-dev)');
    } else if (wanted.seccomp === 'localhost') {
      // Throws (INVALID_ARGUMENT, the start fails saying why) when the file went bad since Create.
      if (features.seccompProfiles) filter = seccompProfileArgs(loadSeccompProfile(this.profileRoot, wanted.localhostProfile ?? '', PROFILE_FIELD));
      else warnings.push('no seccomp filter: the executor\'s task-shim was built without seccomp profile support (libseccomp, Debian: libseccomp-dev)');
    }
    args.push(...filter);
    const program = compiled && filter.length > 0 ? this.compiledFilters?.fileFor(filter) : undefined;
    if (program) args.push('--seccomp-bpf', program);
    if (wanted.noNewPrivileges) args.push('--no-new-privs', '1');
    for (const r of wanted.rlimits) args.push('--rlimit', `${r.name}=${limit(r.soft)}:${limit(r.hard)}`);
    return { args, warnings };
  }
}

const limit = (value: number): string => (value === -1 ? 'unlimited' : String(value));
