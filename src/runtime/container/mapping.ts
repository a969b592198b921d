// Pure translations between the executor's model and CRI messages: sandbox and
// container configs, volume resolution, resource limits, and container status
// and stats back into observations and samples. No I/O here.
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { resolveArtifact, topLevelNames } from '../../artifacts/source.js';
import { capabilityName } from '../../model/privileges.js';
import type { Artifact, ContainerSpec, Resources, SecurityContext, VolumeMount } from '../../model/task.js';
import type { Observation, ResourceSample } from '../runtime.js';
import { LOG_LINK } from './log-rotation.js';
import {
  type ContainerConfig,
  ContainerState,
  type ContainerStats,
  type ContainerStatus,
  type DeepPartial,
  type LinuxContainerResources,
  type LinuxContainerSecurityContext,
  type Mount,
  NamespaceMode,
  type PodSandboxConfig,
  SecurityProfile_ProfileType,
  type UInt64Value,
} from '../../../gen/cri/runtime/v1/api.js';

/** Labels on every sandbox and container the backend creates. */
export const LABEL_TASK = 'io.task-executor.task';
/** A fresh id per start of a task: finds one run's sandbox and container again. */
export const LABEL_UID = 'io.task-executor.uid';
/** Which executor (data dir) created it, so executors sharing a runtime leave each other alone. */
export const LABEL_OWNER = 'io.task-executor.owner';
/** On sandboxes made ahead of time (--container-sandbox-pool), idle or in use: they carry no task or run label. */
export const LABEL_POOL = 'io.task-executor.pool';
/** PodSandboxMetadata.namespace of every sandbox (a name only; no Kubernetes namespace exists). */
export const SANDBOX_NAMESPACE = 'task-executor';
/** Metadata name of the task's container inside its sandbox. */
export const CONTAINER_NAME = 'task';

const CPU_PERIOD_US = 100_000;
/** The kernel refuses CFS quotas below 1 ms. */
const MIN_CPU_QUOTA_US = 1_000;

/** Identifies an executor by its data dir: the same dir after a restart gives the same owner. */
export function ownerOf(dataDir: string): string {
  return createHash('sha256').update(dataDir).digest('hex').slice(0, 16);
}

export type RunLabels = {
  [LABEL_TASK]: string;
  [LABEL_UID]: string;
  [LABEL_OWNER]: string;
};

export function runLabels(task: string, uid: string, owner: string): RunLabels {
  return { [LABEL_TASK]: task, [LABEL_UID]: uid, [LABEL_OWNER]: owner };
}

export interface SandboxOptions {
  task: string;
  uid: string;
  labels: Readonly<Record<string, string>>;
  logDirectory: string;
  cgroupParent?: string;
}

/**
 * One sandbox per task run, in the host's network namespace (no CNI needed),
 * which requires an empty hostname (the host's UTS namespace).
 */
export function sandboxConfig(options: SandboxOptions): DeepPartial<PodSandboxConfig> {
  return {
    metadata: { name: options.task, uid: options.uid, namespace: SANDBOX_NAMESPACE, attempt: 0 },
    hostname: '',
    logDirectory: options.logDirectory,
    labels: { ...options.labels },
    annotations: {},
    linux: {
      cgroupParent: options.cgroupParent ?? '',
      securityContext: { namespaceOptions: { network: NamespaceMode.NODE, pid: NamespaceMode.POD, ipc: NamespaceMode.POD } },
    },
  };
}

export type MountResolution = { mounts: DeepPartial<Mount>[] } | { missing: { index: number; name: string } };

/**
 * The task's artifacts, mounted read-only: the first component of each
 * destination (under the task directory) at the same name below the
 * container's root, e.g. <taskDir>/artifacts at /artifacts.
 */
export function artifactMounts(artifacts: readonly Artifact[] | undefined, taskDir: string): DeepPartial<Mount>[] {
  if (!artifacts?.length) return [];
  const resolved = artifacts.map((artifact, i) => resolveArtifact(artifact, `artifacts[${i}]`));
  return topLevelNames(resolved).map((top) => ({ containerPath: `/${top}`, hostPath: join(taskDir, top), readonly: true }));
}

/** Turns volume mounts into host bind mounts through the executor's volume map (name -> host path). */
export function resolveMounts(volumeMounts: readonly VolumeMount[], volumes: ReadonlyMap<string, string>): MountResolution {
  const mounts: DeepPartial<Mount>[] = [];
  for (const [index, mount] of volumeMounts.entries()) {
    const hostPath = volumes.get(mount.name);
    if (hostPath === undefined) return { missing: { index, name: mount.name } };
    mounts.push({ containerPath: mount.mountPath, hostPath, readonly: mount.readOnly });
  }
  return { mounts };
}

export interface ResourceMapping {
  resources?: DeepPartial<LinuxContainerResources>;
  /** What is actually enforced, for stats. */
  applied: { cpuMillicores?: number; memoryBytes?: number; pids?: number };
  warnings: string[];
}

/**
 * Task resources as CRI linux resources: CFS quota over a 100 ms period,
 * memory limit, and pids.max through `unified`, which runtimes apply on cgroup
 * v2 only (on cgroup v1 the CRI has no pids limit: a warning instead).
 */
export function linuxResources(resources: Resources | undefined, cgroupV2: boolean): ResourceMapping {
  const out: DeepPartial<LinuxContainerResources> = {};
  const applied: ResourceMapping['applied'] = {};
  const warnings: string[] = [];
  if (resources?.cpuMillicores !== undefined) {
    let quota = resources.cpuMillicores * (CPU_PERIOD_US / 1000);
    if (quota < MIN_CPU_QUOTA_US) {
      warnings.push(
        `resources.cpuMillicores ${resources.cpuMillicores} is below the kernel's smallest CFS quota; ` +
          `the container gets ${(MIN_CPU_QUOTA_US * 1000) / CPU_PERIOD_US} millicores`,
      );
      quota = MIN_CPU_QUOTA_US;
    }
    out.cpuPeriod = CPU_PERIOD_US;
    out.cpuQuota = quota;
    applied.cpuMillicores = (quota * 1000) / CPU_PERIOD_US;
  }
  if (resources?.memoryBytes !== undefined) {
    out.memoryLimitInBytes = resources.memoryBytes;
    applied.memoryBytes = resources.memoryBytes;
  }
  if (resources?.pids !== undefined) {
    if (cgroupV2) {
      out.unified = { 'pids.max': String(resources.pids) };
      applied.pids = resources.pids;
    } else {
      warnings.push(
        `resources.pids is not enforced: the CRI can only set a pids limit through cgroup v2 "unified" resources, ` +
          `and this host uses cgroup v1`,
      );
    }
  }
  return { resources: Object.keys(out).length > 0 ? out : undefined, applied, warnings };
}

export interface ContainerOptions {
  spec: ContainerSpec;
  labels: RunLabels;
  mounts: DeepPartial<Mount>[];
  resources?: DeepPartial<LinuxContainerResources>;
  /** The task's TaskSpec.securityContext. */
  securityContext?: SecurityContext;
  /** The seccomp profile of a task that names none (--task-seccomp); default: the runtime's default profile. */
  seccompDefault?: 'default' | 'unconfined';
}

/**
 * A task's security context as the CRI's, as the kubelet passes it: capability names
 * without "CAP_" (the runtime adds it; "ALL" stays "ALL"), no_new_privs, and the seccomp
 * profile, always explicit (an unset one means Unconfined to containerd). Capabilities
 * start from the runtime's default set (containerd's is Docker's). The CRI has no rlimits:
 * validation refuses them for container tasks.
 */
export function containerSecurity(
  ctx: SecurityContext | undefined,
  seccompDefault: 'default' | 'unconfined' = 'default',
): DeepPartial<LinuxContainerSecurityContext> {
  const type = ctx?.seccompProfile?.type ?? (seccompDefault === 'unconfined' ? 'Unconfined' : 'RuntimeDefault');
  const profileType =
    type === 'Localhost'
      ? SecurityProfile_ProfileType.Localhost
      : type === 'Unconfined'
        ? SecurityProfile_ProfileType.Unconfined
        : SecurityProfile_ProfileType.RuntimeDefault;
  const caps = ctx?.capabilities;
  return {
    ...(caps
      ? { capabilities: { addCapabilities: caps.add.map(capabilityName), dropCapabilities: caps.drop.map(capabilityName), addAmbientCapabilities: [] } }
      : {}),
    noNewPrivs: ctx?.noNewPrivileges ?? false,
    seccomp: { profileType, localhostRef: type === 'Localhost' ? (ctx?.seccompProfile?.localhostProfile ?? '') : '' },
  };
}

/**
 * The task's container: its own PID namespace (so its command is PID 1 and
 * every process it starts dies with it), the host network like its sandbox,
 * output in the CRI log format to `<log_directory>/container.log`, a link to
 * the `output.<N>.log` being written (see log-rotation.ts).
 */
export function containerConfig(options: ContainerOptions): DeepPartial<ContainerConfig> {
  const { spec } = options;
  return {
    metadata: { name: CONTAINER_NAME, attempt: 0 },
    image: { image: spec.image },
    command: [...spec.command],
    args: [...spec.args],
    workingDir: spec.workingDir ?? '',
    // The runtime applies envs in order, so a later entry for a name wins, as
    // for process tasks. (The CRI's value is bytes since v0.31; same wire format as string.)
    envs: spec.env.map((e) => ({ key: e.name, value: Buffer.from(e.value) })),
    mounts: options.mounts,
    labels: { ...options.labels },
    annotations: {},
    logPath: LOG_LINK,
    linux: {
      ...(options.resources ? { resources: options.resources } : {}),
      securityContext: {
        ...containerSecurity(options.securityContext, options.seccompDefault),
        namespaceOptions: { network: NamespaceMode.NODE, pid: NamespaceMode.CONTAINER, ipc: NamespaceMode.POD },
      },
    },
  };
}

/** CRI times are nanoseconds since the epoch; 0 means unset. */
export function nanosToIso(nanos: bigint | undefined): string | undefined {
  if (nanos === undefined || nanos <= 0n) return undefined;
  return new Date(Number(nanos / 1_000_000n)).toISOString();
}

/** Reasons that only restate the exit code: the manager derives Succeeded/Failed/Stopped itself. */
const PLAIN_REASONS = new Set(['', 'Completed', 'Error']);

export function observationFromStatus(status: ContainerStatus, now = new Date()): Observation {
  const startedAt = nanosToIso(status.startedAt);
  switch (status.state) {
    case ContainerState.CONTAINER_RUNNING:
      return { state: 'running', startedAt: startedAt ?? now.toISOString() };
    case ContainerState.CONTAINER_EXITED: {
      const exitCode = status.exitCode;
      const finishedAt = nanosToIso(status.finishedAt) ?? now.toISOString();
      const observation: Observation = {
        state: 'exited',
        exitCode,
        // The CRI reports 128+N for a container killed by signal N and has no
        // separate signal field: infer it (an explicit "exit 137" reads the same).
        signal: exitCode > 128 && exitCode < 160 ? exitCode - 128 : 0,
        // containerd stamps started_at after its start call returns, so a
        // command that exits at once can seem to finish before it started.
        ...(startedAt ? { startedAt: startedAt < finishedAt ? startedAt : finishedAt } : {}),
        finishedAt,
      };
      if (status.reason === 'OOMKilled') {
        observation.reason = 'OOMKilled';
        observation.message = status.message || 'the container exceeded its memory limit and was killed by the kernel OOM killer';
      } else if (status.reason === 'StartError' || status.reason === 'ContainerCannotRun') {
        observation.reason = 'ProcessStartFailed';
        observation.message = status.message || `the container runtime could not start the container (${status.reason})`;
      } else if (status.reason === 'Unknown' && !status.message) {
        // containerd's placeholder when it restarted without the container's task (it crashed
        // while the container started, ran or exited): the exit code is not the program's.
        observation.reason = 'ContainerStatusUnknown';
        observation.message =
          `the container runtime lost the container's exit status (it restarted while the container was starting, running or exiting); ` +
          `exit code ${exitCode} is its placeholder, not the task's`;
      } else if (!PLAIN_REASONS.has(status.reason)) {
        observation.reason = status.reason;
        if (status.message) observation.message = status.message;
      }
      return observation;
    }
    case ContainerState.CONTAINER_CREATED:
      return {
        state: 'exited',
        exitCode: 128,
        signal: 0,
        finishedAt: now.toISOString(),
        reason: 'ProcessStartFailed',
        message: 'the container was created but never started',
      };
    default:
      return {
        state: 'lost',
        ...(startedAt ? { startedAt } : {}),
        message: `the container runtime reports the state of container ${status.id} as unknown`,
      };
  }
}

const u64 = (value: UInt64Value | undefined): number | undefined => (value ? Number(value.value) : undefined);

export function sampleFromStats(stats: ContainerStats | undefined, limits: ResourceMapping['applied'] | undefined, now = Date.now()): ResourceSample {
  const sample: ResourceSample = { time: now };
  const cpuTime = stats?.cpu?.timestamp ? Number(stats.cpu.timestamp / 1_000_000n) : 0;
  if (cpuTime > 0) sample.time = cpuTime;
  const cpu = u64(stats?.cpu?.usageCoreNanoSeconds);
  if (cpu !== undefined) sample.cpuNanoseconds = cpu;
  const memory = stats?.memory;
  const workingSet = u64(memory?.workingSetBytes);
  const usage = workingSet ?? u64(memory?.usageBytes);
  if (usage !== undefined) sample.memoryUsageBytes = usage;
  const rss = u64(memory?.rssBytes);
  if (rss !== undefined) sample.rssBytes = rss;
  if (limits?.memoryBytes !== undefined) sample.memoryLimitBytes = limits.memoryBytes;
  if (limits?.cpuMillicores !== undefined) sample.cpuLimitMillicores = limits.cpuMillicores;
  if (limits?.pids !== undefined) sample.pidsLimit = limits.pids;
  return sample;
}
