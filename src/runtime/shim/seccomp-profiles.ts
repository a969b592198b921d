// Where process and sidecar tasks' seccomp profile files (LOCALHOST) may be
// read from, and reading them. The executor runs as root and an API client
// names the file, so only files under the profile root (--seccomp-profile-root,
// as the kubelet's) are read: otherwise any file on the node could be probed
// through Create's error messages. Symlinks are followed, but must end inside
// the root too.
import { type Stats, readFileSync, realpathSync, statSync } from 'node:fs';
import { isAbsolute, relative, resolve, sep } from 'node:path';
import { invalidArgument } from '../../errors.js';
import { type CompiledProfile, compileSeccompProfile, SECCOMP_PROFILE_LIMITS } from '../../model/seccomp-profile.js';
import { quote } from '../../util/quote.js';
import { isErrno } from '../../util/errno.js';

const inside = (root: string, path: string): boolean => {
  const rel = relative(root, path);
  return rel !== '' && rel !== '..' && !rel.startsWith(`..${sep}`) && !isAbsolute(rel);
};

/**
 * Reads and compiles the profile `localhostProfile` names: a path relative to
 * `root`, or an absolute one inside it. Synchronous (a small local file), so
 * that a start reads the file as it is then. Throws INVALID_ARGUMENT naming
 * `field` and the problem.
 */
export function loadSeccompProfile(root: string, localhostProfile: string, field: string): CompiledProfile {
  const path = resolve(root, localhostProfile);
  if (!inside(resolve(root), path)) {
    throw invalidArgument(`${field} ${quote(localhostProfile)} is outside the seccomp profile root ${root} (--seccomp-profile-root); give a path relative to it`);
  }
  let real: string;
  let stat: Stats;
  try {
    real = realpathSync(path);
    stat = statSync(real);
  } catch (error) {
    throw invalidArgument(`${field}: cannot read seccomp profile ${path}: ${describe(error)}`);
  }
  let realRoot: string;
  try {
    realRoot = realpathSync(root);
  } catch (error) {
    throw invalidArgument(`${field}: cannot read seccomp profile ${path}: the profile root ${root}: ${describe(error)}`);
  }
  if (!inside(realRoot, real)) throw invalidArgument(`${field}: seccomp profile ${path} is a link to ${real}, outside the profile root ${root}`);
  if (!stat.isFile()) throw invalidArgument(`${field}: seccomp profile ${path} is not a regular file`);
  if (stat.size > SECCOMP_PROFILE_LIMITS.bytes) {
    throw invalidArgument(`${field}: seccomp profile ${path} has ${stat.size} bytes; at most ${SECCOMP_PROFILE_LIMITS.bytes} are allowed`);
  }
  let text: string;
  try {
    text = readFileSync(real, 'utf8');
  } catch (error) {
    throw invalidArgument(`${field}: cannot read seccomp profile ${path}: ${describe(error)}`);
  }
  return compileSeccompProfile(text, field, path);
}

function describe(error: unknown): string {
  if (isErrno(error, 'ENOENT')) return 'no such file';
  if (isErrno(error, 'EACCES')) return 'permission denied';
  return (error as Error).message;
}
