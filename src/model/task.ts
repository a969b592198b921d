// The executor's own model of a task, independent of the wire format (gen/)
// and of any runtime. Times are ISO-8601 strings so records persist as JSON.

export interface EnvVar {
  name: string;
  value: string;
}

export interface ProcessSpec {
  command: string[];
  args: string[];
  env: EnvVar[];
  workingDir?: string;
  timeoutSeconds?: number;
  user?: string;
  group?: string;
  cleanEnv?: boolean;
  chroot?: string;
}

export interface VolumeMount {
  name: string;
  mountPath: string;
  readOnly: boolean;
}

export interface ContainerSpec {
  image: string;
  command: string[];
  args: string[];
  env: EnvVar[];
  volumeMounts: VolumeMount[];
  workingDir?: string;
  timeoutSeconds?: number;
}

export type RestartPolicy = 'Never' | 'OnFailure';

export interface Resources {
  cpuMillicores?: number;
  memoryBytes?: number;
  pids?: number;
}

export interface LogConfig {
  maxFileSizeBytes?: number;
  maxFiles?: number;
}

/** An rlimit; -1 is unlimited. */
export interface Rlimit {
  name: string;
  soft: number;
  hard: number;
}

export type SeccompProfileType = 'RuntimeDefault' | 'Unconfined' | 'Localhost';

/** Least privilege (TaskSpec.security_context); unset fields take the executor's defaults (src/model/privileges.ts). */
export interface SecurityContext {
  /** Names as given (validation accepts any case and a CAP_ prefix; privileges.ts normalises). */
  capabilities?: { add: string[]; drop: string[] };
  noNewPrivileges?: boolean;
  seccompProfile?: { type: SeccompProfileType; localhostProfile?: string };
  rlimits?: Rlimit[];
}

/** An input fetched into the task's directory before it runs (TaskSpec.artifacts in the proto). */
export interface Artifact {
  source: string;
  /** Relative to the task directory; absent: "artifacts". */
  destination?: string;
  /** "sha256:<hex>" or "sha512:<hex>". */
  checksum?: string;
  /** Absent: detected from the source's name. */
  mode?: 'file' | 'archive';
  headers?: Record<string, string>;
}

/** Exactly one of process or container is set (checked by validateSpec). */
export interface TaskSpec {
  process?: ProcessSpec;
  container?: ContainerSpec;
  stopSignal?: string;
  terminationGracePeriodSeconds?: number;
  restartPolicy?: RestartPolicy;
  maxRestarts?: number;
  resources?: Resources;
  logs?: LogConfig;
  securityContext?: SecurityContext;
  /** Absent when there are none, so specs from before artifacts compare equal. */
  artifacts?: Artifact[];
}

export type TaskState =
  | { phase: 'waiting'; reason: string; message?: string }
  | { phase: 'running'; startedAt: string }
  | {
      phase: 'terminated';
      exitCode: number;
      signal: number;
      reason: string;
      message?: string;
      startedAt?: string;
      finishedAt: string;
    };

/** Why the executor stopped (or is stopping) a task; decides the final reason. */
export type StopCause = 'deletion' | 'timeout';

/**
 * What a runtime needs to find a started task again, even after an executor
 * restart: the backend's name and its handle, persisted as JSON. The handle
 * stays unknown here; only its backend reads it (TaskRuntime.decodeHandle).
 */
export interface RuntimeRef {
  runtime: string;
  /** The handle's format version (TaskRuntime.handleVersion); absent in records of releases before versions: 1. */
  handleVersion?: number;
  handle: unknown;
}

/** Why a persisted runtime reference cannot be a RuntimeRef at all (its handle is the backend's to check), or undefined. */
export function runtimeRefProblem(value: unknown): string | undefined {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return 'runtime must be an object';
  const runtime = 'runtime' in value ? value.runtime : undefined;
  const version = 'handleVersion' in value ? value.handleVersion : undefined;
  if (typeof runtime !== 'string' || runtime === '') return 'runtime.runtime must name a backend';
  if (version !== undefined && !(typeof version === 'number' && Number.isSafeInteger(version) && version >= 1)) {
    return 'runtime.handleVersion must be a positive integer';
  }
  if (!('handle' in value) || value.handle === undefined) return 'runtime.handle is missing';
  return undefined;
}

export interface TaskRecord {
  name: string;
  spec: TaskSpec;
  state: TaskState;
  createdAt: string;
  deletionRequestedAt?: string;
  stop?: { cause: StopCause; requestedAt: string };
  runtime?: RuntimeRef;
  /** Starts after the first, under the restart policy. */
  restartCount?: number;
  /** When the next restart is due (restart policy backoff), and how the last run ended. */
  restartAt?: string;
  lastTermination?: Extract<TaskState, { phase: 'terminated' }>;
  /** What the runtime could not do as asked (e.g. limits without cgroups). */
  warnings?: string[];
}

/** Reason strings shared with the original task-executor. */
export const Reason = {
  Pending: 'Pending',
  Succeeded: 'Succeeded',
  Failed: 'Failed',
  TaskTimeout: 'TaskTimeout',
  ProcessCrashed: 'ProcessCrashed',
  ProcessStartFailed: 'ProcessStartFailed',
  Stopped: 'Stopped',
  OOMKilled: 'OOMKilled',
  BackOff: 'BackOff',
  FetchingArtifacts: 'FetchingArtifacts',
  ArtifactFetchFailed: 'ArtifactFetchFailed',
} as const;

export function isTerminated(state: TaskState): state is Extract<TaskState, { phase: 'terminated' }> {
  return state.phase === 'terminated';
}

export function cloneRecord(record: TaskRecord): TaskRecord {
  return structuredClone(record);
}
