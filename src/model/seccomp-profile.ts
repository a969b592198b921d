// Seccomp profile files (SecurityContext.seccompProfile LOCALHOST) for process
// and sidecar tasks: the OCI/Docker JSON format that containerd, Docker and
// the kubelet read, checked and compiled into the supervisor's options
// (--seccomp-default, --seccomp-rule; src/runtime/shim/privileges.h), which
// need no JSON parser in C. Pure: reading the file is seccomp-profiles.ts'.
//
// The subset: defaultAction, defaultErrnoRet, architectures/archMap (accepted,
// but the filter always covers the native and compat architectures, as the
// default profile does), syscalls [{names, action, errnoRet}]. Rules with
// `args` conditions, Docker's `includes`/`excludes`, `flags`, `listenerPath`
// and the NOTIFY/TRACE actions are refused rather than applied in part: a
// profile is a security boundary, and one applied other than as written could
// allow what its author denied.
import { invalidArgument } from '../errors.js';
import { quote } from '../util/quote.js';

/** The actions supported, by their names in profile files. */
const ACTIONS = {
  SCMP_ACT_ALLOW: 'allow',
  SCMP_ACT_ERRNO: 'errno',
  // libseccomp's (and runc's) SCMP_ACT_KILL kills the thread.
  SCMP_ACT_KILL: 'kill_thread',
  SCMP_ACT_KILL_THREAD: 'kill_thread',
  SCMP_ACT_KILL_PROCESS: 'kill_process',
  SCMP_ACT_TRAP: 'trap',
  SCMP_ACT_LOG: 'log',
} as const;

const EPERM = 1;
/** The kernel's largest errno (MAX_ERRNO). */
const MAX_ERRNO = 4095;
/** Syscall names as libseccomp spells them. */
const SYSCALL_NAME = /^[a-z_][a-z0-9_]{0,63}$/;
const ARCH_NAME = /^SCMP_ARCH_[A-Z0-9_]{1,32}$/;

/** --seccomp-profile-root's default: the only place profile files are read from. */
export const DEFAULT_SECCOMP_PROFILE_ROOT = '/var/lib/task-executor/seccomp';

/** names: distinct syscalls (no architecture has 600), so that each option stays far below the kernel's 128 KiB per argument. */
export const SECCOMP_PROFILE_LIMITS = { bytes: 1024 * 1024, syscalls: 4096, names: 1024 };

/** An action in the supervisor's spelling: allow, errno=N, kill_thread, kill_process, trap, log. */
export type CompiledAction = string;

export interface CompiledProfile {
  defaultAction: CompiledAction;
  /** One entry per action (names merged), never the default action; each name at most once. */
  rules: { action: CompiledAction; names: string[] }[];
}

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
const isObject = (v: unknown): v is { [key: string]: Json } => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * Checks a profile file's text and compiles it; throws INVALID_ARGUMENT naming
 * `field` (the API field that named the file), the file and the problem.
 */
export function compileSeccompProfile(text: string, field: string, file: string): CompiledProfile {
  const at = (where: string, problem: string) => invalidArgument(`${field}: seccomp profile ${file}: ${where}${problem}`);
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (error) {
    throw at('', `is not valid JSON (${(error as Error).message})`);
  }
  if (!isObject(raw)) throw at('', 'must be a JSON object with "defaultAction" and "syscalls"');
  const known = new Set(['defaultAction', 'defaultErrnoRet', 'architectures', 'archMap', 'syscalls', 'flags', 'listenerPath', 'listenerMetadata']);
  for (const key of Object.keys(raw)) {
    if (!known.has(key)) throw at(`${quote(key)}: `, 'is not a field of a seccomp profile (OCI/Docker format) this executor knows');
  }
  if (Array.isArray(raw.flags) ? raw.flags.length > 0 : raw.flags !== undefined && raw.flags !== null) {
    throw at('"flags": ', 'filter flags are not supported for process and sidecar tasks; remove them');
  }
  if (raw.listenerPath) throw at('"listenerPath": ', 'seccomp notify (SCMP_ACT_NOTIFY and its listener) is not supported');
  checkArchitectures(raw, at);
  const defaultAction = action(raw.defaultAction, raw.defaultErrnoRet, 'defaultAction', 'defaultErrnoRet', at);
  const syscalls = raw.syscalls ?? [];
  if (!Array.isArray(syscalls)) throw at('"syscalls": ', 'must be an array of rules');
  if (syscalls.length > SECCOMP_PROFILE_LIMITS.syscalls) throw at('"syscalls": ', `has ${syscalls.length} rules; at most ${SECCOMP_PROFILE_LIMITS.syscalls} are allowed`);
  const byName = new Map<string, { action: CompiledAction; rule: number }>();
  syscalls.forEach((rule, i) => {
    const where = `syscalls[${i}]`;
    if (!isObject(rule)) throw at(`${where}: `, 'must be an object with "names" and "action"');
    for (const key of Object.keys(rule)) {
      if (!['names', 'name', 'action', 'errnoRet', 'args', 'comment', 'includes', 'excludes'].includes(key)) {
        throw at(`${where}.${key}: `, 'is not a field of a syscall rule this executor knows');
      }
    }
    const names = ruleNames(rule, where, at);
    const label = `${where} (${names.slice(0, 3).join(', ')}${names.length > 3 ? ', ...' : ''})`;
    if (Array.isArray(rule.args) ? rule.args.length > 0 : rule.args !== undefined && rule.args !== null) {
      throw at(`${label}: `, 'has "args" conditions, which process and sidecar tasks do not support; give the rule without them, or split the profile');
    }
    for (const key of ['includes', 'excludes'] as const) {
      const v = rule[key];
      if (v !== undefined && v !== null && !(isObject(v) && Object.values(v).every((x) => Array.isArray(x) ? x.length === 0 : x === null || x === 0))) {
        throw at(`${label}.${key}: `, "Docker's conditional rules are not supported for process and sidecar tasks; remove them or make the rule unconditional");
      }
    }
    const compiled = action(rule.action, rule.errnoRet, `${label}.action`, `${label}.errnoRet`, at);
    for (const name of names) {
      const earlier = byName.get(name);
      if (earlier && earlier.action !== compiled) {
        throw at(`${label}: `, `${name} already has another action in syscalls[${earlier.rule}]; give each syscall one action`);
      }
      byName.set(name, { action: compiled, rule: i });
    }
  });
  if (byName.size > SECCOMP_PROFILE_LIMITS.names) throw at('"syscalls": ', `names ${byName.size} syscalls; at most ${SECCOMP_PROFILE_LIMITS.names} are allowed`);
  // A rule with the default action changes nothing (and libseccomp refuses it), as runc skips it.
  const rules = new Map<CompiledAction, string[]>();
  for (const [name, { action: a }] of byName) {
    if (a === defaultAction) continue;
    rules.set(a, [...(rules.get(a) ?? []), name]);
  }
  return { defaultAction, rules: [...rules].map(([a, names]) => ({ action: a, names })) };
}

function ruleNames(rule: { [key: string]: Json }, where: string, at: (w: string, p: string) => Error): string[] {
  const names = rule.names ?? (typeof rule.name === 'string' ? [rule.name] : undefined);
  if (!Array.isArray(names) || names.length === 0) throw at(`${where}.names: `, 'must be a non-empty array of syscall names');
  return names.map((name, k) => {
    if (typeof name !== 'string' || !SYSCALL_NAME.test(name)) {
      throw at(`${where}.names[${k}]: `, `${typeof name === 'string' ? quote(name, 64) : JSON.stringify(name)} is not a syscall name (lowercase letters, digits and "_", e.g. "mkdirat")`);
    }
    return name;
  });
}

function action(value: unknown, errnoRet: unknown, field: string, errnoField: string, at: (w: string, p: string) => Error): CompiledAction {
  if (typeof value !== 'string' || !(value in ACTIONS)) {
    const shown = typeof value === 'string' ? quote(value, 64) : JSON.stringify(value) ?? 'missing';
    throw at(`${field}: `, `${shown} is not a supported action; use one of ${Object.keys(ACTIONS).join(', ')}`);
  }
  const kind = ACTIONS[value as keyof typeof ACTIONS];
  if (errnoRet !== undefined && errnoRet !== null) {
    if (kind !== 'errno') throw at(`${errnoField}: `, 'is only for action SCMP_ACT_ERRNO');
    if (!Number.isInteger(errnoRet) || (errnoRet as number) < 0 || (errnoRet as number) > MAX_ERRNO) {
      throw at(`${errnoField}: `, `must be an errno from 0 to ${MAX_ERRNO}; got ${JSON.stringify(errnoRet)}`);
    }
  }
  return kind === 'errno' ? `errno=${(errnoRet as number | undefined | null) ?? EPERM}` : kind;
}

function checkArchitectures(raw: { [key: string]: Json }, at: (w: string, p: string) => Error): void {
  const archs = raw.architectures;
  if (archs !== undefined && archs !== null && !(Array.isArray(archs) && archs.every((a) => typeof a === 'string' && ARCH_NAME.test(a)))) {
    throw at('"architectures": ', 'must be an array of names such as "SCMP_ARCH_X86_64"');
  }
  if (raw.archMap !== undefined && raw.archMap !== null && !Array.isArray(raw.archMap)) throw at('"archMap": ', 'must be an array');
}

/** The supervisor's options for a compiled profile (privileges.h). */
export function seccompProfileArgs(profile: CompiledProfile): string[] {
  const args = ['--seccomp-default', profile.defaultAction];
  for (const rule of profile.rules) args.push('--seccomp-rule', `${rule.action}:${rule.names.join(',')}`);
  return args;
}
