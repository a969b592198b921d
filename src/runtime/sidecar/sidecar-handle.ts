// The sidecar backend's persisted handle of a task, and its checked reading.
// The wrapped process runtime's handle is nested in it and read by that
// runtime's own decodeHandle: the sidecar never parses it itself.
import { definedOnly, Fields, HandleDecodeError } from '../handle-codec.js';
import type { ProcessHandle } from '../process/shim-handle.js';
import type { Observation, TaskRuntime } from '../runtime.js';
import type { MainContainer } from './discovery.js';

type Exited = Extract<Observation, { state: 'exited' }>;

/** Persisted handle: the wrapped process runtime's handle plus the main container it entered. */
export interface SidecarHandle {
  /** Handle of the wrapped process runtime (nsenter under a task-shim); absent when the task never started. */
  inner?: ProcessHandle;
  /** The wrapped runtime's handleVersion when `inner` was written; absent (records before versions): 1. */
  innerVersion?: number;
  /** The main container process the task entered, with its start time to tell a restarted container apart. */
  target?: MainContainer;
  /** Why the task never started; inspect keeps reporting it. */
  failure?: Exited;
  /** The copy of the task's artifacts in the main container (its path there), removed on release. */
  artifactsDir?: string;
}

/** Handle format version the sidecar backend writes (see TaskRuntime.handleVersion). */
export const SIDECAR_HANDLE_VERSION = 1;

/** Reads a persisted sidecar handle; version 1 is also every record written before handle versions existed. */
export function decodeSidecarHandle(raw: unknown, processes: Pick<TaskRuntime<ProcessHandle>, 'decodeHandle' | 'handleVersion'>): SidecarHandle {
  const fields = Fields.of(raw);
  const innerVersion = fields.optionalInteger('innerVersion');
  const version = innerVersion ?? 1;
  if (version < 1 || version > processes.handleVersion) {
    throw new HandleDecodeError('innerVersion', `is ${version}, a process handle version this executor cannot read (1 to ${processes.handleVersion})`);
  }
  return definedOnly({
    inner: fields.optionalNested('inner', (inner) => processes.decodeHandle(inner, version)),
    innerVersion,
    target: fields.optionalObject('target', (target) => ({
      pid: target.integer('pid'),
      startTime: target.string('startTime'),
      pidNamespace: target.string('pidNamespace'),
      foundBy: target.string('foundBy'),
    })),
    failure: fields.optionalObject('failure', decodeFailure),
    artifactsDir: fields.optionalString('artifactsDir'),
  });
}

function decodeFailure(fields: Fields): Exited {
  fields.oneOf('state', ['exited']);
  return definedOnly({
    state: 'exited',
    exitCode: fields.integer('exitCode'),
    signal: fields.integer('signal'),
    startedAt: fields.optionalString('startedAt'),
    finishedAt: fields.string('finishedAt'),
    reason: fields.optionalString('reason'),
    message: fields.optionalString('message'),
  });
}
