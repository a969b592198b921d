// Maps between the wire types (gen/) and the executor's model. Pure and total:
// any wire message converts; the manager validates what it means.
import * as wire from '../../gen/taskexecutor/v1/task.js';
import type {
  Artifact,
  ContainerSpec,
  EnvVar,
  ProcessSpec,
  RestartPolicy,
  SeccompProfileType,
  SecurityContext,
  TaskRecord,
  TaskSpec,
  TaskState,
} from '../model/task.js';

export function specFromWire(spec: wire.TaskSpec | undefined): TaskSpec | undefined {
  if (!spec) return undefined;
  const common = commonFromWire(spec);
  switch (spec.runtime?.$case) {
    case 'process':
      return { process: processFromWire(spec.runtime.value), ...common };
    case 'container':
      return { container: containerFromWire(spec.runtime.value), ...common };
    default:
      return Object.keys(common).length > 0 ? common : undefined;
  }
}

/** Task-level settings; unset wire fields stay absent so that specs compare equal. */
function commonFromWire(spec: wire.TaskSpec): Omit<TaskSpec, 'process' | 'container'> {
  const r = spec.resources;
  const resources = {
    ...(r?.cpuMillicores !== undefined ? { cpuMillicores: r.cpuMillicores } : {}),
    ...(r?.memoryBytes !== undefined ? { memoryBytes: r.memoryBytes } : {}),
    ...(r?.pids !== undefined ? { pids: r.pids } : {}),
  };
  const logs = {
    ...(spec.logs?.maxFileSizeBytes !== undefined ? { maxFileSizeBytes: spec.logs.maxFileSizeBytes } : {}),
    ...(spec.logs?.maxFiles !== undefined ? { maxFiles: spec.logs.maxFiles } : {}),
  };
  return {
    ...(spec.stopSignal ? { stopSignal: spec.stopSignal } : {}),
    ...(spec.terminationGracePeriodSeconds !== undefined ? { terminationGracePeriodSeconds: spec.terminationGracePeriodSeconds } : {}),
    ...(restartPolicyFromWire(spec.restartPolicy) ? { restartPolicy: restartPolicyFromWire(spec.restartPolicy) } : {}),
    ...(spec.maxRestarts !== undefined ? { maxRestarts: spec.maxRestarts } : {}),
    ...(Object.keys(resources).length > 0 ? { resources } : {}),
    ...(Object.keys(logs).length > 0 ? { logs } : {}),
    ...(securityFromWire(spec.securityContext) ? { securityContext: securityFromWire(spec.securityContext) } : {}),
    ...(spec.artifacts.length > 0 ? { artifacts: spec.artifacts.map(artifactFromWire) } : {}),
  };
}

/** Unset or empty parts stay absent, so that specs compare equal (SetTasks). */
function securityFromWire(ctx: wire.SecurityContext | undefined): SecurityContext | undefined {
  if (!ctx) return undefined;
  const caps = ctx.capabilities;
  const type = seccompTypeFromWire(ctx.seccompProfile?.type);
  const profile = ctx.seccompProfile?.localhostProfile ?? '';
  const out: SecurityContext = {
    ...(caps && (caps.add.length > 0 || caps.drop.length > 0) ? { capabilities: { add: [...caps.add], drop: [...caps.drop] } } : {}),
    ...(ctx.noNewPrivileges !== undefined ? { noNewPrivileges: ctx.noNewPrivileges } : {}),
    ...(type ? { seccompProfile: { type, ...(profile ? { localhostProfile: profile } : {}) } } : {}),
    ...(ctx.rlimits.length > 0 ? { rlimits: ctx.rlimits.map((r) => ({ name: r.name, soft: r.soft, hard: r.hard })) } : {}),
  };
  // A localhost_profile without a type still reaches validation, which names it.
  if (!type && profile) out.seccompProfile = { type: 'RuntimeDefault', localhostProfile: profile };
  return Object.keys(out).length > 0 ? out : undefined;
}

function seccompTypeFromWire(type: wire.SeccompProfileType | undefined): SeccompProfileType | undefined {
  switch (type) {
    case undefined:
    case wire.SeccompProfileType.SECCOMP_PROFILE_TYPE_UNSPECIFIED:
      return undefined;
    case wire.SeccompProfileType.SECCOMP_PROFILE_TYPE_RUNTIME_DEFAULT:
      return 'RuntimeDefault';
    case wire.SeccompProfileType.SECCOMP_PROFILE_TYPE_UNCONFINED:
      return 'Unconfined';
    case wire.SeccompProfileType.SECCOMP_PROFILE_TYPE_LOCALHOST:
      return 'Localhost';
    default:
      // An enum value this executor does not know: let validation name it.
      return `unknown(${String(type)})` as SeccompProfileType;
  }
}

function securityToWire(ctx: SecurityContext | undefined): wire.SecurityContext | undefined {
  if (!ctx) return undefined;
  const type = ctx.seccompProfile?.type;
  return {
    capabilities: ctx.capabilities ? { add: ctx.capabilities.add, drop: ctx.capabilities.drop } : undefined,
    noNewPrivileges: ctx.noNewPrivileges,
    seccompProfile: type
      ? {
          type:
            type === 'RuntimeDefault'
              ? wire.SeccompProfileType.SECCOMP_PROFILE_TYPE_RUNTIME_DEFAULT
              : type === 'Unconfined'
                ? wire.SeccompProfileType.SECCOMP_PROFILE_TYPE_UNCONFINED
                : wire.SeccompProfileType.SECCOMP_PROFILE_TYPE_LOCALHOST,
          localhostProfile: ctx.seccompProfile?.localhostProfile ?? '',
        }
      : undefined,
    rlimits: ctx.rlimits ?? [],
  };
}

function artifactFromWire(a: wire.Artifact): Artifact {
  return {
    source: a.source,
    ...(a.destination ? { destination: a.destination } : {}),
    ...(a.checksum ? { checksum: a.checksum } : {}),
    ...(a.mode === wire.ArtifactMode.ARTIFACT_MODE_FILE ? { mode: 'file' as const } : {}),
    ...(a.mode === wire.ArtifactMode.ARTIFACT_MODE_ARCHIVE ? { mode: 'archive' as const } : {}),
    // An enum value this executor does not know: let validation name it.
    ...(a.mode !== wire.ArtifactMode.ARTIFACT_MODE_UNSPECIFIED && a.mode !== wire.ArtifactMode.ARTIFACT_MODE_FILE && a.mode !== wire.ArtifactMode.ARTIFACT_MODE_ARCHIVE
      ? { mode: `unknown(${String(a.mode)})` as 'file' }
      : {}),
    ...(Object.keys(a.headers).length > 0 ? { headers: { ...a.headers } } : {}),
  };
}

function artifactToWire(a: Artifact): wire.Artifact {
  return {
    source: a.source,
    destination: a.destination ?? '',
    checksum: a.checksum ?? '',
    mode: a.mode === 'file' ? wire.ArtifactMode.ARTIFACT_MODE_FILE : a.mode === 'archive' ? wire.ArtifactMode.ARTIFACT_MODE_ARCHIVE : wire.ArtifactMode.ARTIFACT_MODE_UNSPECIFIED,
    headers: a.headers ?? {},
  };
}

function restartPolicyFromWire(policy: wire.RestartPolicy): RestartPolicy | undefined {
  switch (policy) {
    case wire.RestartPolicy.RESTART_POLICY_ON_FAILURE:
      return 'OnFailure';
    case wire.RestartPolicy.RESTART_POLICY_NEVER:
      return 'Never';
    case wire.RestartPolicy.RESTART_POLICY_UNSPECIFIED:
      return undefined;
    default:
      // An enum value this executor does not know: let validation name it.
      return `unknown(${String(policy)})` as RestartPolicy;
  }
}

function processFromWire(p: wire.ProcessSpec): ProcessSpec {
  return {
    command: [...p.command],
    args: [...p.args],
    env: envFromWire(p.env),
    ...(p.workingDir ? { workingDir: p.workingDir } : {}),
    ...(p.timeoutSeconds !== undefined ? { timeoutSeconds: p.timeoutSeconds } : {}),
    ...(p.user ? { user: p.user } : {}),
    ...(p.group ? { group: p.group } : {}),
    ...(p.cleanEnv ? { cleanEnv: true } : {}),
    ...(p.chroot ? { chroot: p.chroot } : {}),
  };
}

function containerFromWire(c: wire.ContainerSpec): ContainerSpec {
  return {
    image: c.image,
    command: [...c.command],
    args: [...c.args],
    env: envFromWire(c.env),
    volumeMounts: c.volumeMounts.map((m) => ({ name: m.name, mountPath: m.mountPath, readOnly: m.readOnly })),
    ...(c.workingDir ? { workingDir: c.workingDir } : {}),
    ...(c.timeoutSeconds !== undefined ? { timeoutSeconds: c.timeoutSeconds } : {}),
  };
}

const envFromWire = (env: wire.EnvVar[]): EnvVar[] => env.map((e) => ({ name: e.name, value: e.value }));

/** How much of a task a reply carries; see TaskView in the proto. */
export type TaskView = 'full' | 'compact';

/**
 * Conversions already made, per record and view. Records are immutable
 * snapshots (a change makes a new one), so a conversion stays right for as
 * long as its record lives, and List/Watch/getTasks convert each task once
 * per change instead of once per request.
 */
const converted = { full: new WeakMap<TaskRecord, wire.Task>(), compact: new WeakMap<TaskRecord, wire.Task>() };

/**
 * A task as the API shows it; shared between calls, so never modify the
 * result. The compact view (TaskView COMPACT) leaves out the spec, which is
 * the bulk of a task (up to about 1 MiB) and which the caller already knows.
 */
export function taskToWire(record: TaskRecord, view: TaskView = 'full'): wire.Task {
  const cache = converted[view];
  let task = cache.get(record);
  if (!task) {
    task = convertTask(record, view);
    cache.set(record, task);
  }
  return task;
}

function convertTask(record: TaskRecord, view: TaskView): wire.Task {
  return {
    name: record.name,
    spec: view === 'full' ? specToWire(record.spec) : undefined,
    status: { state: stateToWire(record.state), restartCount: record.restartCount ?? 0, warnings: record.warnings ?? [] },
    deletionTimestamp: record.deletionRequestedAt ? new Date(record.deletionRequestedAt) : undefined,
    creationTimestamp: new Date(record.createdAt),
  };
}

function specToWire(spec: TaskSpec): wire.TaskSpec {
  const common = {
    stopSignal: spec.stopSignal ?? '',
    terminationGracePeriodSeconds: spec.terminationGracePeriodSeconds,
    restartPolicy:
      spec.restartPolicy === 'OnFailure'
        ? wire.RestartPolicy.RESTART_POLICY_ON_FAILURE
        : spec.restartPolicy === 'Never'
          ? wire.RestartPolicy.RESTART_POLICY_NEVER
          : wire.RestartPolicy.RESTART_POLICY_UNSPECIFIED,
    maxRestarts: spec.maxRestarts,
    resources: spec.resources,
    logs: spec.logs,
    securityContext: securityToWire(spec.securityContext),
    artifacts: (spec.artifacts ?? []).map(artifactToWire),
  };
  if (spec.process) {
    const p = spec.process;
    return {
      ...common,
      runtime: {
        $case: 'process',
        value: {
          command: p.command,
          args: p.args,
          env: p.env,
          workingDir: p.workingDir ?? '',
          timeoutSeconds: p.timeoutSeconds,
          user: p.user ?? '',
          group: p.group ?? '',
          cleanEnv: p.cleanEnv ?? false,
          chroot: p.chroot ?? '',
        },
      },
    };
  }
  const c = spec.container!;
  return {
    ...common,
    runtime: {
      $case: 'container',
      value: {
        image: c.image,
        command: c.command,
        args: c.args,
        env: c.env,
        volumeMounts: c.volumeMounts,
        workingDir: c.workingDir ?? '',
        timeoutSeconds: c.timeoutSeconds,
      },
    },
  };
}

const date = (iso: string | undefined): Date | undefined => (iso ? new Date(iso) : undefined);

function stateToWire(state: TaskState): wire.TaskState {
  switch (state.phase) {
    case 'waiting':
      return { state: { $case: 'waiting', value: { reason: state.reason, message: state.message ?? '' } } };
    case 'running':
      return { state: { $case: 'running', value: { startedAt: date(state.startedAt) } } };
    case 'terminated':
      return {
        state: {
          $case: 'terminated',
          value: {
            exitCode: state.exitCode,
            signal: state.signal,
            reason: state.reason,
            message: state.message ?? '',
            startedAt: date(state.startedAt),
            finishedAt: date(state.finishedAt),
          },
        },
      };
  }
}
