// Admission checks for names and specs. Shared by every API front end so that
// they all reject the same input with the same message.
import { invalidArgument } from '../errors.js';
import type { ContainerSpec, EnvVar, ProcessSpec, TaskSpec } from './task.js';
import { parseSignal } from '../util/signals.js';
import { validateSecurityContext } from './privileges.js';
import { quote } from '../util/quote.js';
import { validateArtifacts } from '../artifacts/source.js';

// Kubernetes object names are DNS-1123 subdomains, and the original's controller
// names tasks "<object-name>-<index>", so that is the accepted form. It also
// guarantees that a name is a single, harmless path component.
export const NAME_PATTERN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
export const MAX_NAME_LENGTH = 253;

export const LIMITS = {
  argvEntries: 4096,
  envEntries: 4096,
  stringBytes: 128 * 1024, // the kernel's MAX_ARG_STRLEN
  totalBytes: 1024 * 1024,
  volumeMounts: 256,
  timeoutSeconds: 10 * 365 * 24 * 3600,
};

export { quote } from '../util/quote.js';

export function validateName(name: string, field = 'name'): void {
  if (name === '') throw invalidArgument(`${field} is required`);
  if (name.length > MAX_NAME_LENGTH) {
    throw invalidArgument(`${field} is ${name.length} characters long; at most ${MAX_NAME_LENGTH} are allowed`);
  }
  if (!NAME_PATTERN.test(name)) {
    throw invalidArgument(
      `${field} ${quote(name)} is invalid: use lowercase letters, digits, '-' and '.', ` +
        `starting and ending with a letter or digit (a DNS-1123 subdomain, e.g. "my-task-1")`,
    );
  }
}

export function validateSpec(spec: TaskSpec | undefined, field = 'spec'): asserts spec is TaskSpec {
  if (!spec || (!spec.process && !spec.container)) {
    throw invalidArgument(`${field} must set exactly one of process or container`);
  }
  if (spec.process && spec.container) {
    throw invalidArgument(`${field} sets both process and container; set exactly one`);
  }
  const budget = { bytes: 0 };
  if (spec.process) validateProcess(spec.process, `${field}.process`, budget);
  if (spec.container) validateContainer(spec.container, `${field}.container`, budget);
  validateTaskSettings(spec, field);
  validateArtifacts(spec.artifacts, `${field}.artifacts`);
}

function validateTaskSettings(spec: TaskSpec, field: string): void {
  if (spec.stopSignal !== undefined && !parseSignal(spec.stopSignal)) {
    throw invalidArgument(`${field}.stopSignal ${quote(spec.stopSignal)} is not a signal name (e.g. "SIGTERM", "SIGINT")`);
  }
  validateRange(spec.terminationGracePeriodSeconds, `${field}.terminationGracePeriodSeconds`, 0, 86_400);
  if (spec.restartPolicy !== undefined && !['Never', 'OnFailure'].includes(spec.restartPolicy)) {
    throw invalidArgument(`${field}.restartPolicy has an unknown value; use RESTART_POLICY_NEVER or RESTART_POLICY_ON_FAILURE`);
  }
  validateRange(spec.maxRestarts, `${field}.maxRestarts`, 0, 1000);
  validateRange(spec.resources?.cpuMillicores, `${field}.resources.cpuMillicores`, 1, 1_000_000);
  validateRange(spec.resources?.memoryBytes, `${field}.resources.memoryBytes`, 1024 * 1024, 2 ** 50);
  validateRange(spec.resources?.pids, `${field}.resources.pids`, 1, 4_194_304);
  validateRange(spec.logs?.maxFileSizeBytes, `${field}.logs.maxFileSizeBytes`, 1024, 2 ** 30);
  validateRange(spec.logs?.maxFiles, `${field}.logs.maxFiles`, 1, 1000);
  validateSecurityContext(spec, `${field}.securityContext`);
}

function validateRange(value: number | undefined, field: string, min: number, max: number): void {
  if (value === undefined) return;
  if (!Number.isInteger(value) || value < min || value > max) {
    throw invalidArgument(`${field} must be a whole number from ${min} to ${max}; got ${value}`);
  }
}

// A user or group: a numeric id or a POSIX-ish name (as useradd accepts).
const ACCOUNT_PATTERN = /^(\d+|[a-zA-Z_][a-zA-Z0-9_.-]{0,31}\$?)$/;

/** The largest id a task may run as: uid_t is 32 bits unsigned, and 4294967295 means "no id" to the kernel. */
export const MAX_ACCOUNT_ID = 4294967294;

function validateAccount(value: string | undefined, field: string): void {
  if (value === undefined) return;
  if (!ACCOUNT_PATTERN.test(value)) {
    throw invalidArgument(`${field} ${quote(value)} is neither a numeric id nor a valid user/group name`);
  }
  if (/^\d+$/.test(value) && Number(value) > MAX_ACCOUNT_ID) {
    throw invalidArgument(`${field} ${quote(value)} is above ${MAX_ACCOUNT_ID}, the largest numeric id a task may run as`);
  }
}

function validateProcess(process: ProcessSpec, field: string, budget: Budget): void {
  if (process.command.length + process.args.length === 0) {
    throw invalidArgument(`${field}.command is empty: give at least the program to run, e.g. ["sleep", "10"]`);
  }
  if (process.command.length === 0 && process.args[0] === '') {
    throw invalidArgument(`${field}.args[0] is used as the program (command is empty) and must not be empty`);
  }
  if (process.command[0] === '') throw invalidArgument(`${field}.command[0] (the program) must not be empty`);
  validateStrings(process.command, `${field}.command`, LIMITS.argvEntries, budget);
  validateStrings(process.args, `${field}.args`, LIMITS.argvEntries - process.command.length, budget);
  validateEnv(process.env, `${field}.env`, budget);
  validateOptionalAbsolutePath(process.workingDir, `${field}.workingDir`);
  validateTimeout(process.timeoutSeconds, `${field}.timeoutSeconds`);
  validateAccount(process.user, `${field}.user`);
  validateAccount(process.group, `${field}.group`);
  validateOptionalAbsolutePath(process.chroot, `${field}.chroot`);
}

function validateContainer(container: ContainerSpec, field: string, budget: Budget): void {
  if (container.image.trim() === '') throw invalidArgument(`${field}.image is required`);
  validateString(container.image, `${field}.image`, budget);
  validateStrings(container.command, `${field}.command`, LIMITS.argvEntries, budget);
  validateStrings(container.args, `${field}.args`, LIMITS.argvEntries - container.command.length, budget);
  validateEnv(container.env, `${field}.env`, budget);
  validateOptionalAbsolutePath(container.workingDir, `${field}.workingDir`);
  validateTimeout(container.timeoutSeconds, `${field}.timeoutSeconds`);
  if (container.volumeMounts.length > LIMITS.volumeMounts) {
    throw invalidArgument(`${field}.volumeMounts has ${container.volumeMounts.length} entries; at most ${LIMITS.volumeMounts} are allowed`);
  }
  container.volumeMounts.forEach((mount, i) => {
    validateName(mount.name, `${field}.volumeMounts[${i}].name`);
    if (!mount.mountPath.startsWith('/')) {
      throw invalidArgument(`${field}.volumeMounts[${i}].mountPath ${quote(mount.mountPath)} must be an absolute path`);
    }
    validateString(mount.mountPath, `${field}.volumeMounts[${i}].mountPath`, budget);
  });
}

interface Budget {
  bytes: number;
}

function validateEnv(env: EnvVar[], field: string, budget: Budget): void {
  if (env.length > LIMITS.envEntries) {
    throw invalidArgument(`${field} has ${env.length} entries; at most ${LIMITS.envEntries} are allowed`);
  }
  env.forEach((entry, i) => {
    if (entry.name === '') throw invalidArgument(`${field}[${i}].name is empty`);
    if (entry.name.includes('=')) throw invalidArgument(`${field}[${i}].name ${quote(entry.name)} must not contain '='`);
    validateString(entry.name, `${field}[${i}].name`, budget);
    validateString(entry.value, `${field}[${i}].value`, budget);
  });
}

function validateStrings(values: string[], field: string, maxEntries: number, budget: Budget): void {
  if (values.length > maxEntries) {
    throw invalidArgument(`${field} has ${values.length} entries; command and args together allow at most ${LIMITS.argvEntries}`);
  }
  values.forEach((value, i) => validateString(value, `${field}[${i}]`, budget));
}

function validateString(value: string, field: string, budget: Budget): void {
  if (value.includes('\0')) throw invalidArgument(`${field} contains a NUL byte, which no program can receive`);
  const bytes = Buffer.byteLength(value);
  if (bytes > LIMITS.stringBytes) {
    throw invalidArgument(`${field} is ${bytes} bytes long; at most ${LIMITS.stringBytes} are allowed`);
  }
  budget.bytes += bytes;
  if (budget.bytes > LIMITS.totalBytes) {
    throw invalidArgument(`the spec's strings add up to more than ${LIMITS.totalBytes} bytes (at ${field})`);
  }
}

function validateOptionalAbsolutePath(path: string | undefined, field: string): void {
  if (path === undefined || path === '') return;
  if (path.includes('\0')) throw invalidArgument(`${field} contains a NUL byte`);
  if (Buffer.byteLength(path) > 4096) throw invalidArgument(`${field} is longer than 4096 bytes (PATH_MAX)`);
  if (!path.startsWith('/')) throw invalidArgument(`${field} ${quote(path)} must be an absolute path`);
}

function validateTimeout(seconds: number | undefined, field: string): void {
  if (seconds === undefined) return;
  if (!Number.isInteger(seconds) || seconds < 0 || seconds > LIMITS.timeoutSeconds) {
    throw invalidArgument(`${field} must be a whole number of seconds from 0 (no timeout) to ${LIMITS.timeoutSeconds}; got ${seconds}`);
  }
}

/** A canonical form of a spec, so that equal specs compare equal whatever their field order. */
export function canonicalSpec(spec: TaskSpec): string {
  return stableStringify(spec);
}

function stableStringify(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(stableStringify).join(',')}]`;
  if (value && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : 1));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${stableStringify(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}
