// Looks at the main container's filesystem from the executor, through
// /proc/<pid>/root, as the main container itself would see it: symlinks are
// followed inside that root (an absolute link target means the container's
// "/", never the executor's), which a plain open() of /proc/<pid>/root/<path>
// gets wrong. Used to check a task's working directory, program, chroot and
// user before nsenter runs, so that mistakes read as ProcessStartFailed with a
// clear message rather than as an nsenter exit code.
import { lstatSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import { errnoOf } from '../../util/errno.js';

export type Resolved = { path: string } | { error: string };

const MAX_LINKS = 40;

const errnoText: Record<string, string> = {
  ENOENT: 'No such file or directory',
  ENOTDIR: 'Not a directory',
  EACCES: 'Permission denied',
  ELOOP: 'Too many levels of symbolic links',
};

const describe = (error: unknown) => {
  const code = errnoOf(error) ?? '';
  return errnoText[code] ?? (error as Error).message;
};

/**
 * `path` (absolute, or relative to `cwd`) with every symlink resolved inside
 * `root`; the result is absolute and relative to `root`, e.g. "/usr/bin/dash".
 */
export function resolveInRoot(root: string, path: string, cwd = '/'): Resolved {
  const pending = (path.startsWith('/') ? path : `${cwd}/${path}`).split('/').filter(Boolean);
  const resolved: string[] = [];
  let links = 0;
  while (pending.length > 0) {
    const part = pending.shift()!;
    if (part === '.') continue;
    if (part === '..') {
      resolved.pop();
      continue;
    }
    const full = `${root}/${[...resolved, part].join('/')}`;
    let isLink: boolean;
    try {
      isLink = lstatSync(full).isSymbolicLink();
    } catch (error) {
      return { error: describe(error) };
    }
    if (!isLink) {
      resolved.push(part);
      continue;
    }
    if (++links > MAX_LINKS) return { error: errnoText.ELOOP! };
    let target: string;
    try {
      target = readlinkSync(full);
    } catch (error) {
      return { error: describe(error) };
    }
    if (target.startsWith('/')) resolved.length = 0;
    pending.unshift(...target.split('/').filter(Boolean));
  }
  return { path: `/${resolved.join('/')}` };
}

/** Undefined when `path` is a directory inside `root`, else why not. */
export function directoryProblem(root: string, path: string): string | undefined {
  const resolved = resolveInRoot(root, path);
  if ('error' in resolved) return resolved.error;
  try {
    return statSync(`${root}${resolved.path}`).isDirectory() ? undefined : errnoText.ENOTDIR;
  } catch (error) {
    return describe(error);
  }
}

/** glibc's execvp search path when PATH is unset. */
const DEFAULT_PATH = '/bin:/usr/bin';

/**
 * Whether execvp(program) would find an executable inside `root` with this
 * PATH and working directory: undefined when it would, else an exec-style error
 * and the exit code the process runtime reports for it (127 missing, 126 not executable).
 */
export function programProblem(
  root: string,
  program: string,
  path: string | undefined,
  cwd: string,
): { exitCode: number; message: string } | undefined {
  const check = (candidate: string): { exitCode: number; message: string } | undefined => {
    const resolved = resolveInRoot(root, candidate, cwd);
    if ('error' in resolved) return { exitCode: 127, message: resolved.error };
    try {
      const stat = statSync(`${root}${resolved.path}`);
      if (!stat.isFile() || (stat.mode & 0o111) === 0) return { exitCode: 126, message: errnoText.EACCES! };
      return undefined;
    } catch (error) {
      return { exitCode: 127, message: describe(error) };
    }
  };
  if (program.includes('/')) {
    const problem = check(program);
    return problem && { exitCode: problem.exitCode, message: `exec ${program}: ${problem.message} (in the main container)` };
  }
  let firstDenied: { exitCode: number; message: string } | undefined;
  const search = path ?? DEFAULT_PATH;
  for (const dir of search.split(':')) {
    const problem = check(`${dir || '.'}/${program}`);
    if (!problem) return undefined;
    if (problem.exitCode === 126) firstDenied ??= problem;
  }
  if (firstDenied) return { exitCode: 126, message: `exec ${program}: ${firstDenied.message} (in the main container)` };
  return { exitCode: 127, message: `exec ${program}: No such file or directory (in the main container, PATH=${search})` };
}

export interface Identity {
  uid?: number;
  gid?: number;
  /** HOME, USER and LOGNAME of a user found in the main container's /etc/passwd. */
  env: Record<string, string>;
}

interface PasswdEntry {
  name: string;
  uid: number;
  gid: number;
  home: string;
}

function readDatabase(root: string, file: string): string[][] {
  const resolved = resolveInRoot(root, file);
  if ('error' in resolved) return [];
  try {
    return readFileSync(`${root}${resolved.path}`, 'utf8')
      .split('\n')
      .filter((line) => line && !line.startsWith('#'))
      .map((line) => line.split(':'));
  } catch {
    return [];
  }
}

/** Largest uid/gid: (uid_t)-1 means "unchanged" to setuid(2). task-shim uses the same bound. */
const MAX_ID = 4294967294;
const isDigits = (s: string) => /^[0-9]+$/.test(s);
const isNumeric = (s: string) => isDigits(s) && Number(s) <= MAX_ID;

/**
 * A task's user and group, looked up in the main container's /etc/passwd and
 * /etc/group (its own accounts, not the sidecar's), with the process
 * runtime's rules: a user name brings its primary group and HOME/USER/LOGNAME,
 * a numeric uid without an entry runs with gid 0 (as Docker does), a group
 * overrides the gid.
 */
export function resolveIdentity(root: string, user: string | undefined, group: string | undefined): Identity | { error: string } {
  const identity: Identity = { env: {} };
  for (const [what, id] of [['user', user], ['group', group]] as const) {
    if (id !== undefined && isDigits(id) && !isNumeric(id)) return { error: `${what} ${id}: a numeric ${what === 'user' ? 'uid' : 'gid'} must be at most ${MAX_ID}` };
  }
  if (user !== undefined) {
    const entries: PasswdEntry[] = readDatabase(root, '/etc/passwd')
      .filter((f) => f.length >= 7 && isNumeric(f[2]!) && isNumeric(f[3]!))
      .map((f) => ({ name: f[0]!, uid: Number(f[2]), gid: Number(f[3]), home: f[5]! }));
    const entry = isNumeric(user) ? entries.find((e) => e.uid === Number(user)) : entries.find((e) => e.name === user);
    if (!entry && !isNumeric(user)) return { error: `user ${user}: no such user in the main container's /etc/passwd` };
    identity.uid = entry?.uid ?? Number(user);
    identity.gid = entry?.gid ?? 0;
    if (entry) identity.env = { HOME: entry.home || '/', USER: entry.name, LOGNAME: entry.name };
  }
  if (group !== undefined) {
    if (isNumeric(group)) {
      identity.gid = Number(group);
    } else {
      const entry = readDatabase(root, '/etc/group').find((f) => f[0] === group && f.length >= 3 && isNumeric(f[2]!));
      if (!entry) return { error: `group ${group}: no such group in the main container's /etc/group` };
      identity.gid = Number(entry[2]);
    }
  }
  return identity;
}
