// Least privilege for tasks (TaskSpec.securityContext): the capability and
// rlimit names, the rules a security context must keep, and the settings a
// process or sidecar task gets once the executor's defaults are applied.
// Pure: the supervisor (src/runtime/shim/privileges.c) applies the result.
import { invalidArgument } from '../errors.js';
import type { Rlimit, SecurityContext, TaskSpec } from './task.js';

/** Every capability by its kernel number (CAP_CHOWN = 0 ... CAP_CHECKPOINT_RESTORE = 40), without "CAP_". */
export const ALL_CAPABILITIES = [
  'CHOWN', 'DAC_OVERRIDE', 'DAC_READ_SEARCH', 'FOWNER', 'FSETID', 'KILL', 'SETGID', 'SETUID', 'SETPCAP',
  'LINUX_IMMUTABLE', 'NET_BIND_SERVICE', 'NET_BROADCAST', 'NET_ADMIN', 'NET_RAW', 'IPC_LOCK', 'IPC_OWNER',
  'SYS_MODULE', 'SYS_RAWIO', 'SYS_CHROOT', 'SYS_PTRACE', 'SYS_PACCT', 'SYS_ADMIN', 'SYS_BOOT', 'SYS_NICE',
  'SYS_RESOURCE', 'SYS_TIME', 'SYS_TTY_CONFIG', 'MKNOD', 'LEASE', 'AUDIT_WRITE', 'AUDIT_CONTROL', 'SETFCAP',
  'MAC_OVERRIDE', 'MAC_ADMIN', 'SYSLOG', 'WAKE_ALARM', 'BLOCK_SUSPEND', 'AUDIT_READ', 'PERFMON', 'BPF',
  'CHECKPOINT_RESTORE',
] as const;

/** Docker's (and containerd's) default capability set: what a root task keeps unless told otherwise. */
export const DEFAULT_CAPABILITIES = [
  'CHOWN', 'DAC_OVERRIDE', 'FOWNER', 'FSETID', 'KILL', 'SETGID', 'SETUID', 'SETPCAP', 'NET_BIND_SERVICE',
  'NET_RAW', 'SYS_CHROOT', 'MKNOD', 'AUDIT_WRITE', 'SETFCAP',
] as const;

/** Docker's --ulimit names, which are also the supervisor's (privileges.c). */
export const RLIMIT_NAMES = [
  'as', 'core', 'cpu', 'data', 'fsize', 'locks', 'memlock', 'msgqueue', 'nice', 'nofile', 'nproc', 'rss',
  'rtprio', 'rttime', 'sigpending', 'stack',
] as const;

export const PRIVILEGE_LIMITS = { capabilityNames: 64, rlimits: 16 };

/** The executor's defaults (--task-capabilities, --task-seccomp). */
export interface PrivilegeDefaults {
  /** default: Docker's set; all: leave the executor's capabilities to the task (the original executor's behaviour). */
  capabilities: 'default' | 'all';
  /** default: the executor's default profile; unconfined: no filter (the original executor's behaviour). */
  seccomp: 'default' | 'unconfined';
}

export const DEFAULT_PRIVILEGES: PrivilegeDefaults = { capabilities: 'default', seccomp: 'default' };

/** What the supervisor applies to a process or sidecar task. */
export interface ProcessPrivileges {
  /** The capabilities kept (bounding, permitted, effective), sorted by number; undefined: left as they are. */
  capabilities?: string[];
  noNewPrivileges: boolean;
  /** localhost: the profile file localhostProfile names (src/runtime/shim/seccomp-profiles.ts). */
  seccomp: 'default' | 'unconfined' | 'localhost';
  localhostProfile?: string;
  rlimits: Rlimit[];
}

/** "cap_net_admin" -> "NET_ADMIN"; "all" -> "ALL". */
export function capabilityName(name: string): string {
  const upper = name.toUpperCase();
  return upper.startsWith('CAP_') ? upper.slice(4) : upper;
}

const KNOWN = new Set<string>(ALL_CAPABILITIES);

/** Checks a task's security context; throws INVALID_ARGUMENT naming the field. */
export function validateSecurityContext(spec: TaskSpec, field: string): void {
  const ctx = spec.securityContext;
  if (!ctx) return;
  for (const list of ['add', 'drop'] as const) {
    const names = ctx.capabilities?.[list] ?? [];
    const at = `${field}.capabilities.${list}`;
    if (names.length > PRIVILEGE_LIMITS.capabilityNames) {
      throw invalidArgument(`${at} has ${names.length} entries; at most ${PRIVILEGE_LIMITS.capabilityNames} are allowed`);
    }
    names.forEach((name, i) => {
      const normal = capabilityName(name);
      if (normal !== 'ALL' && !KNOWN.has(normal)) {
        throw invalidArgument(
          `${at}[${i}] ${JSON.stringify(name.slice(0, 64))} is not a capability: use a kernel name without "CAP_", e.g. "NET_ADMIN", or "ALL"`,
        );
      }
    });
  }
  const seccomp = ctx.seccompProfile;
  if (seccomp) {
    const at = `${field}.seccompProfile`;
    if (!['RuntimeDefault', 'Unconfined', 'Localhost'].includes(seccomp.type)) {
      throw invalidArgument(`${at}.type has an unknown value; use SECCOMP_PROFILE_TYPE_RUNTIME_DEFAULT, _UNCONFINED or _LOCALHOST`);
    }
    if (seccomp.type === 'Localhost') {
      const path = seccomp.localhostProfile ?? '';
      if (spec.container && !path.startsWith('/')) {
        throw invalidArgument(`${at}.localhostProfile must be the absolute path of a profile file on the node (container tasks)`);
      }
      if (!path) {
        throw invalidArgument(`${at}.localhostProfile is required with SECCOMP_PROFILE_TYPE_LOCALHOST: a profile file, relative to the executor's --seccomp-profile-root`);
      }
      if (path.length > 4096 || path.includes('\0')) {
        throw invalidArgument(`${at}.localhostProfile must be at most 4096 bytes without NUL bytes`);
      }
    } else if (seccomp.localhostProfile) {
      throw invalidArgument(`${at}.localhostProfile is only for type SECCOMP_PROFILE_TYPE_LOCALHOST`);
    }
  }
  validateRlimits(ctx.rlimits ?? [], spec, `${field}.rlimits`);
}

function validateRlimits(rlimits: Rlimit[], spec: TaskSpec, at: string): void {
  if (rlimits.length > 0 && spec.container) {
    throw invalidArgument(`${at}: container tasks cannot have rlimits (the CRI has no field for them; the container runtime applies its own)`);
  }
  if (rlimits.length > PRIVILEGE_LIMITS.rlimits) {
    throw invalidArgument(`${at} has ${rlimits.length} entries; at most ${PRIVILEGE_LIMITS.rlimits} are allowed`);
  }
  const seen = new Set<string>();
  rlimits.forEach((limit, i) => {
    if (!(RLIMIT_NAMES as readonly string[]).includes(limit.name)) {
      throw invalidArgument(`${at}[${i}].name ${JSON.stringify(limit.name.slice(0, 64))} is not an rlimit: use one of ${RLIMIT_NAMES.join(', ')}`);
    }
    if (seen.has(limit.name)) throw invalidArgument(`${at}[${i}].name ${limit.name} is given twice`);
    seen.add(limit.name);
    for (const part of ['soft', 'hard'] as const) {
      const v = limit[part];
      if (!Number.isSafeInteger(v) || v < -1) {
        throw invalidArgument(`${at}[${i}].${part} must be -1 (unlimited) or a whole number from 0 to ${Number.MAX_SAFE_INTEGER}; got ${v}`);
      }
    }
    const unlimited = (v: number) => (v === -1 ? Number.POSITIVE_INFINITY : v);
    if (unlimited(limit.soft) > unlimited(limit.hard)) {
      throw invalidArgument(`${at}[${i}] (${limit.name}): soft ${limit.soft} is above hard ${limit.hard} (-1 is unlimited)`);
    }
  });
}

/** The settings a process or sidecar task runs with: its security context over the executor's defaults. */
export function processPrivileges(ctx: SecurityContext | undefined, defaults: PrivilegeDefaults): ProcessPrivileges {
  const add = (ctx?.capabilities?.add ?? []).map(capabilityName);
  const drop = (ctx?.capabilities?.drop ?? []).map(capabilityName);
  let capabilities: string[] | undefined;
  if (defaults.capabilities === 'default' || add.length > 0 || drop.length > 0) {
    // containerd's order (CRI), so that both backends read a context alike: "ALL" in add, then
    // "ALL" in drop, then each added name, then each dropped one. drop ["ALL"] with add
    // ["NET_BIND_SERVICE"] keeps just that one; a name in both lists is dropped.
    const kept = new Set<string>(defaults.capabilities === 'all' || add.includes('ALL') ? ALL_CAPABILITIES : DEFAULT_CAPABILITIES);
    if (drop.includes('ALL')) kept.clear();
    for (const name of add) if (name !== 'ALL') kept.add(name);
    for (const name of drop) kept.delete(name);
    capabilities = ALL_CAPABILITIES.filter((name) => kept.has(name));
  }
  const type = ctx?.seccompProfile?.type;
  const seccomp = type === 'Unconfined' ? 'unconfined' : type === 'RuntimeDefault' ? 'default' : type === 'Localhost' ? 'localhost' : defaults.seccomp;
  return {
    ...(capabilities ? { capabilities } : {}),
    noNewPrivileges: ctx?.noNewPrivileges ?? false,
    seccomp,
    ...(seccomp === 'localhost' ? { localhostProfile: ctx?.seccompProfile?.localhostProfile ?? '' } : {}),
    rlimits: ctx?.rlimits ?? [],
  };
}

/** One line for the start-up log: what tasks get by default. */
export function describeDefaults(defaults: PrivilegeDefaults): string {
  const caps =
    defaults.capabilities === 'all'
      ? 'process tasks keep the executor\'s capabilities (--task-capabilities all)'
      : `root process tasks keep only ${DEFAULT_CAPABILITIES.join(',')}; non-root tasks none`;
  const seccomp = defaults.seccomp === 'unconfined' ? 'no seccomp filter (--task-seccomp unconfined)' : 'the default seccomp profile';
  return `${caps}; ${seccomp}`;
}
