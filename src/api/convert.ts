// Maps between the wire types (gen/) and the executor's model. Pure and total:
// any wire message converts; the manager validates what it means.
import type * as wire from '../../gen/taskexecutor/v1/task.js';
import type { ContainerSpec, EnvVar, ProcessSpec, TaskRecord, TaskSpec, TaskState } from '../model/task.js';

export function specFromWire(spec: wire.TaskSpec | undefined): TaskSpec | undefined {
  switch (spec?.runtime?.$case) {
    case 'process':
      return { process: processFromWire(spec.runtime.value) };
    case 'container':
      return { container: containerFromWire(spec.runtime.value) };
    default:
      return undefined;
  }
}

function processFromWire(p: wire.ProcessSpec): ProcessSpec {
  return {
    command: [...p.command],
    args: [...p.args],
    env: envFromWire(p.env),
    ...(p.workingDir ? { workingDir: p.workingDir } : {}),
    ...(p.timeoutSeconds !== undefined ? { timeoutSeconds: p.timeoutSeconds } : {}),
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

export function taskToWire(record: TaskRecord): wire.Task {
  return {
    name: record.name,
    spec: specToWire(record.spec),
    status: { state: stateToWire(record.state) },
    deletionTimestamp: record.deletionRequestedAt ? new Date(record.deletionRequestedAt) : undefined,
    creationTimestamp: new Date(record.createdAt),
  };
}

function specToWire(spec: TaskSpec): wire.TaskSpec {
  if (spec.process) {
    const p = spec.process;
    return {
      runtime: {
        $case: 'process',
        value: { command: p.command, args: p.args, env: p.env, workingDir: p.workingDir ?? '', timeoutSeconds: p.timeoutSeconds },
      },
    };
  }
  const c = spec.container!;
  return {
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
