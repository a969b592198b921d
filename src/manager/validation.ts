// Admission checks for names and specs. Shared by every API front end so that
// they all reject the same input with the same message.
import { invalidArgument } from '../errors.js';
import type { ContainerSpec, EnvVar, ProcessSpec, TaskSpec } from '../model/task.js';

// Kubernetes object names are DNS-1123 subdomains, and the original's controller
// names tasks "<object-name>-<index>", so that is the accepted form. It also
// guarantees that a name is a single, harmless path component.
const NAME_PATTERN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
export const MAX_NAME_LENGTH = 253;

export const LIMITS = {
  argvEntries: 4096,
  envEntries: 4096,
  stringBytes: 128 * 1024, // the kernel's MAX_ARG_STRLEN
  totalBytes: 1024 * 1024,
  volumeMounts: 256,
  timeoutSeconds: 10 * 365 * 24 * 3600,
};

export function validateName(name: string, field = 'name'): void {
  if (name === '') throw invalidArgument(`${field} is required`);
  if (name.length > MAX_NAME_LENGTH) {
    throw invalidArgument(`${field} is ${name.length} characters long; at most ${MAX_NAME_LENGTH} are allowed`);
  }
  if (!NAME_PATTERN.test(name)) {
    throw invalidArgument(
      `${field} ${JSON.stringify(name)} is invalid: use lowercase letters, digits, '-' and '.', ` +
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
      throw invalidArgument(`${field}.volumeMounts[${i}].mountPath ${JSON.stringify(mount.mountPath)} must be an absolute path`);
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
    if (entry.name.includes('=')) throw invalidArgument(`${field}[${i}].name ${JSON.stringify(entry.name)} must not contain '='`);
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
  if (!path.startsWith('/')) throw invalidArgument(`${field} ${JSON.stringify(path)} must be an absolute path`);
}

function validateTimeout(seconds: number | undefined, field: string): void {
  if (seconds === undefined) return;
  if (!Number.isInteger(seconds) || seconds < 0 || seconds > LIMITS.timeoutSeconds) {
    throw invalidArgument(`${field} must be a whole number of seconds from 0 (no timeout) to ${LIMITS.timeoutSeconds}; got ${seconds}`);
  }
}

/** A canonical form of a spec, so that equal specs compare equal whatever their field order or defaults. */
export function canonicalSpec(spec: TaskSpec): string {
  const env = (list: EnvVar[]) => list.map((e) => [e.name, e.value]);
  if (spec.process) {
    const p = spec.process;
    return JSON.stringify({
      process: [p.command, p.args, env(p.env), p.workingDir ?? '', p.timeoutSeconds ?? 0],
    });
  }
  const c = spec.container!;
  return JSON.stringify({
    container: [
      c.image,
      c.command,
      c.args,
      env(c.env),
      c.volumeMounts.map((m) => [m.name, m.mountPath, m.readOnly]),
      c.workingDir ?? '',
      c.timeoutSeconds ?? 0,
    ],
  });
}
