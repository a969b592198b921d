// Runs container tasks through the Kubernetes CRI (RuntimeService and
// ImageService, e.g. containerd's CRI plugin). Every start of a task gets its
// own pod sandbox holding exactly one container; both carry labels naming the
// task, the run (uid) and the executor (owner), so they can be found again
// after an executor restart and removed completely. The runtime, not the
// executor, owns the container: it keeps running while the executor restarts.
import { setTimeout as delay } from 'node:timers/promises';
import { existsSync, realpathSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { randomUUID } from 'node:crypto';
import { status } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { errorMessage, TaskError } from '../../errors.js';
import { Reason, type TaskSpec } from '../../model/task.js';
import { deadlineIn } from '../../util/poll.js';
import type { LogLocation, Observation, ResourceSample, Started, StartRequest, StopOptions, TaskRuntime } from '../runtime.js';
import { CONTAINER_HANDLE_VERSION, type ContainerHandle, decodeContainerHandle } from './container-handle.js';
import { Availability, type AvailabilityListener } from './availability.js';
import { ContainerState, type DeepPartial, type PodSandboxConfig } from '../../../gen/cri/runtime/v1/api.js';
import { CriClient, CriError, isNotFound, isUnreachable } from './cri-client.js';
import {
  artifactMounts,
  containerConfig,
  LABEL_OWNER,
  LABEL_TASK,
  LABEL_UID,
  linuxResources,
  observationFromStatus,
  ownerOf,
  type ResourceMapping,
  resolveMounts,
  runLabels,
  sampleFromStats,
  sandboxConfig,
} from './mapping.js';
import type { RegistryAuth } from './registry-auth.js';
import { LogRotation, prepareLogLink } from './log-rotation.js';
import { Relist } from './relist.js';
import { SandboxPool } from './sandbox-pool.js';
import { afterTransientFailure, classifyPullFailure, type PullBackoff } from './image-pull-retry.js';

export interface ContainerRuntimeOptions {
  /** CRI endpoint: a socket path or unix:///path. */
  criSocket: string;
  /** Volume name -> host path, for ContainerSpec.volumeMounts. */
  volumes: ReadonlyMap<string, string>;
  /** cgroup parent of every sandbox (cgroupfs style, e.g. "/task-executor"); empty: the runtime's default. */
  cgroupParent?: string;
  /** How long getting an image may take: every PullImage attempt and the back-off between them (--image-pull-timeout). */
  pullTimeoutMs?: number;
  /** Waits between PullImage attempts after transient failures; default DEFAULT_PULL_BACKOFF (1 s doubling, at most 30 s). */
  pullBackoff?: PullBackoff;
  /** Registry credentials for pulls (--image-pull-config); none: pull anonymously. */
  registryAuth?: RegistryAuth;
  /** Idle pod sandboxes to keep ready for starts (--container-sandbox-pool); 0 or unset: one made per start. */
  sandboxPool?: number;
  /** The executor's data dir: names the owner of pooled sandboxes (needed with sandboxPool). */
  dataDir?: string;
  /** Deadline of other CRI calls. */
  callTimeoutMs?: number;
  /** How long a call waits for a connection to the runtime before it counts as unreachable. */
  connectTimeoutMs?: number;
  log: Logger;
  /** Whether the host uses the unified cgroup v2 hierarchy (decides how a pids limit is applied). */
  cgroupV2?: boolean;
  /** Log rotation of tasks that set no `logs` (the executor's --log-max-file-size / --log-max-files). */
  logMaxBytes: number;
  logMaxFiles: number;
  /** Seccomp of tasks that name no profile (--task-seccomp); default: the runtime's default profile. */
  seccompDefault?: 'default' | 'unconfined';
}

export type { ContainerHandle } from './container-handle.js';

const DEFAULT_PULL_TIMEOUT_MS = 5 * 60_000;
const EXIT_WAIT_MS = 10_000;
const POLL_MS = 50;
const SLOW_CALL_MS = 5_000;
const CONNECT_TIMEOUT_MS = 1_500;
/** How often an unreachable runtime is asked whether it is back. */
const PROBE_MS = 500;

/** How often the running containers are relisted (see watch() and relist.ts). */
const RELIST_INTERVAL_MS = 1000;

export class ContainerRuntime implements TaskRuntime<ContainerHandle> {
  readonly name = 'container';
  readonly handleVersion = CONTAINER_HANDLE_VERSION;
  private readonly cri: CriClient;
  private readonly cgroupV2: boolean;
  /** Container ids found by label when a persisted handle named a container the runtime no longer knows. */
  private readonly reattached = new Map<string, string>();
  /** Sandboxes already stopped after their container exited. */
  private readonly quiesced = new Set<string>();
  /**
   * Runs (uid labels) a start left half-made when the runtime went away,
   * with the sandbox it used: removed once it is back. The sandbox is named
   * because one taken from the pool carries no label of the run.
   */
  private readonly orphans = new Map<string, string | undefined>();
  private readonly availability: Availability;
  private readonly connectTimeoutMs: number;
  private readonly rotation: LogRotation;
  /** Sandboxes made ahead of time (--container-sandbox-pool), or none. */
  readonly pool: SandboxPool | undefined;
  private readonly relist: Relist;

  constructor(private readonly options: ContainerRuntimeOptions) {
    this.connectTimeoutMs = options.connectTimeoutMs ?? CONNECT_TIMEOUT_MS;
    this.cri = new CriClient(options.criSocket, {
      timeoutMs: options.callTimeoutMs ?? 30_000,
      connectTimeoutMs: this.connectTimeoutMs,
      onCall: (rpc, ms, error) => {
        // An outage is logged once by the availability tracker, not once per call.
        if (error?.unreachable) return this.availability.unreachable(error.details);
        this.availability.reachable();
        const level = ms >= SLOW_CALL_MS ? 'warn' : 'debug';
        if (error && !isNotFound(error)) options.log[level]({ rpc, ms, err: error.message }, 'CRI call failed');
        else options.log[level]({ rpc, ms }, ms >= SLOW_CALL_MS ? 'slow CRI call' : 'CRI call');
      },
    });
    this.availability = new Availability({
      address: this.cri.address,
      log: options.log,
      probe: () => this.cri.version(this.connectTimeoutMs),
      probeIntervalMs: PROBE_MS,
    });
    if (options.sandboxPool && options.dataDir) {
      this.pool = new SandboxPool({
        cri: this.cri,
        size: options.sandboxPool,
        owner: ownerOf(realDir(options.dataDir)),
        cgroupParent: options.cgroupParent,
        log: options.log,
      });
    }
    this.availability.subscribe((available) => {
      if (!available) return;
      void this.removeOrphans();
      void this.pool?.removeLost();
      this.pool?.fill();
    });
    this.cgroupV2 = options.cgroupV2 ?? existsSync('/sys/fs/cgroup/cgroup.controllers');
    this.rotation = new LogRotation({ reopen: (id) => this.cri.reopenContainerLog(id), log: options.log });
    this.relist = new Relist((labelSelector) => this.cri.listContainers({ labelSelector }), RELIST_INTERVAL_MS);
  }

  /**
   * False from the moment a call finds the CRI runtime unreachable until one
   * gets an answer again (a probe asks every PROBE_MS meanwhile). While false,
   * start/inspect/stop/release/stats throw TaskError('Unavailable').
   */
  available(): boolean {
    return this.availability.available;
  }

  /**
   * Calls `listener(false)` when the runtime becomes unreachable and
   * `listener(true)` as soon as it answers again; returns the unsubscribe function.
   */
  onAvailabilityChange(listener: AvailabilityListener): () => void {
    return this.availability.subscribe(listener);
  }

  /**
   * Checks that the CRI endpoint answers and is ready to run containers
   * (Version, then Status with RuntimeReady); throws a message saying what is wrong.
   */
  async connect(timeoutMs = 10_000): Promise<string> {
    const where = `the CRI runtime at ${this.cri.address}`;
    let version;
    try {
      version = await this.cri.version(timeoutMs);
    } catch (error) {
      throw new Error(`cannot reach ${where}: ${criDetails(error)}; start the runtime (e.g. containerd) or point --cri-socket at its socket`);
    }
    let conditions;
    try {
      conditions = await this.cri.status(timeoutMs);
    } catch (error) {
      throw new Error(`${where} (${version.runtimeName} ${version.runtimeVersion}) does not report its status: ${criDetails(error)}`);
    }
    const ready = conditions.find((c) => c.type === 'RuntimeReady');
    if (!ready?.status) {
      const why = ready ? `${ready.reason}: ${ready.message}` : 'no RuntimeReady condition';
      throw new Error(`${where} (${version.runtimeName} ${version.runtimeVersion}) is not ready to run containers (${why})`);
    }
    return `${version.runtimeName} ${version.runtimeVersion} (CRI ${version.runtimeApiVersion})`;
  }

  async close(): Promise<void> {
    this.rotation.close();
    this.relist.close();
    await this.pool?.close();
    this.availability.close();
    this.cri.close();
  }

  decodeHandle(raw: unknown): ContainerHandle {
    return decodeContainerHandle(raw);
  }

  accepts(spec: TaskSpec): boolean {
    return spec.container !== undefined;
  }

  start(request: StartRequest): Promise<Started<ContainerHandle>> {
    // The pool refills after the start, not beside it.
    return this.guard(this.startRun(request)).finally(() => this.pool?.fill());
  }

  private async startRun(request: StartRequest): Promise<Started<ContainerHandle>> {
    const spec = request.spec.container!;
    const taskDir = resolve(request.taskDir);
    const owner = ownerOf(dataDirOf(taskDir));
    const uid = randomUUID();
    const labels = runLabels(request.name, uid, owner);
    const handle: ContainerHandle = { task: request.name, taskDir, uid, owner, image: spec.image };
    const log = this.options.log.child({ task: request.name, uid });

    const resources = linuxResources(request.spec.resources, this.cgroupV2);
    const warnings = startWarnings(request.spec, resources);
    handle.limits = resources.applied;
    handle.logs = this.logLimits(request.spec.logs);
    const started = (observation: Observation): Started<ContainerHandle> => ({ handle, observation, ...(warnings.length > 0 ? { warnings } : {}) });
    const failed = (reason: string, message: string): Started<ContainerHandle> =>
      started({ state: 'exited', exitCode: 128, signal: 0, finishedAt: new Date().toISOString(), reason, message });

    const resolved = resolveMounts(spec.volumeMounts, this.options.volumes);
    if ('missing' in resolved) {
      const known = [...this.options.volumes.keys()].sort();
      return failed(
        'VolumeNotFound',
        `volumeMounts[${resolved.missing.index}] names volume "${resolved.missing.name}", which this executor does not have ` +
          `(known: ${known.length > 0 ? known.join(', ') : 'none'}); volumes are configured with --volume NAME=HOSTPATH`,
      );
    }

    // Earlier runs of this task name (a restart under the restart policy, or
    // leftovers of a crash) are done: remove them before starting a new one.
    await this.removeRuns({ [LABEL_TASK]: request.name, [LABEL_OWNER]: owner }, log);

    const logDirectory = join(taskDir, 'logs');
    await mkdir(logDirectory, { recursive: true });
    await prepareLogLink(logDirectory);
    const sandbox = sandboxConfig({ task: request.name, uid, labels, logDirectory, cgroupParent: this.options.cgroupParent });

    const pullFailure = await this.ensureImage(spec.image, sandbox, log, request);
    if (pullFailure) return failed(pullFailure.reason, pullFailure.message);

    // A pooled sandbox is as much the run's own as one made now (see sandbox-pool.ts).
    handle.sandboxId = this.pool?.take() ?? (await this.runSandbox(sandbox, uid, log));
    const mounts = [...resolved.mounts, ...artifactMounts(request.spec.artifacts, taskDir)];
    const config = containerConfig({
      spec,
      labels,
      mounts,
      resources: resources.resources,
      ...(request.spec.securityContext ? { securityContext: request.spec.securityContext } : {}),
      ...(this.options.seccompDefault ? { seccompDefault: this.options.seccompDefault } : {}),
    });
    try {
      handle.containerId = await this.cri.createContainer(handle.sandboxId, config, sandbox);
    } catch (error) {
      this.orphanIfUnreachable(error, uid, handle.sandboxId);
      await this.quiesce(handle.sandboxId, log);
      return failed('CreateContainerError', `cannot create the container: ${criDetails(error)}`);
    }
    try {
      await this.cri.startContainer(handle.containerId);
    } catch (error) {
      this.orphanIfUnreachable(error, uid, handle.sandboxId);
      await this.quiesce(handle.sandboxId, log);
      return failed('ProcessStartFailed', `cannot start the container: ${criDetails(error)}`);
    }
    let observation: Observation;
    try {
      observation = observationFromStatus(await this.cri.containerStatus(handle.containerId));
    } catch (error) {
      // Started, so it must not be lost track of: the next inspect tells how it is doing.
      if (!isUnreachable(error)) log.warn({ err: errorMessage(error) }, 'cannot read the status of the container just started');
      observation = { state: 'running', startedAt: new Date().toISOString() };
    }
    handle.startedAt = 'startedAt' in observation ? observation.startedAt : new Date().toISOString();
    if (observation.state !== 'running') await this.quiesce(handle.sandboxId, log);
    log.info({ sandboxId: handle.sandboxId, containerId: handle.containerId, image: spec.image }, 'container started');
    return started(observation);
  }

  private async runSandbox(sandbox: DeepPartial<PodSandboxConfig>, uid: string, log: Logger): Promise<string> {
    try {
      return await this.cri.runPodSandbox(sandbox);
    } catch (error) {
      // The runtime may have made the sandbox before failing: leave nothing behind.
      this.orphanIfUnreachable(error, uid);
      await this.removeRuns({ [LABEL_UID]: uid }, log);
      throw new Error(`cannot create the pod sandbox: ${criDetails(error)}`);
    }
  }

  /**
   * Adopts the run of a task whose start was never recorded (the executor died
   * between starting it and saving the handle), found by its task and owner
   * labels. A sandbox without a started container is removed instead: the task
   * never ran, so starting it again is safe.
   */
  recover(request: StartRequest): Promise<Started<ContainerHandle> | undefined> {
    return this.guard(this.recoverRun(request));
  }

  private async recoverRun(request: StartRequest): Promise<Started<ContainerHandle> | undefined> {
    const spec = request.spec.container;
    if (!spec) return undefined;
    const taskDir = resolve(request.taskDir);
    const owner = ownerOf(dataDirOf(taskDir));
    const log = this.options.log.child({ task: request.name });
    const labels = { [LABEL_TASK]: request.name, [LABEL_OWNER]: owner };
    const containers = (await this.cri.listContainers({ labelSelector: labels })).filter((c) => c.state !== ContainerState.CONTAINER_CREATED);
    const newest = containers.sort((a, b) => (b.createdAt > a.createdAt ? 1 : -1))[0];
    if (!newest) {
      await this.removeRuns(labels, log, true);
      return undefined;
    }
    const resources = linuxResources(request.spec.resources, this.cgroupV2);
    const warnings = startWarnings(request.spec, resources);
    const handle: ContainerHandle = {
      task: request.name,
      taskDir,
      uid: newest.labels[LABEL_UID] ?? '',
      owner,
      image: spec.image,
      sandboxId: newest.podSandboxId,
      containerId: newest.id,
      limits: resources.applied,
      logs: this.logLimits(request.spec.logs),
    };
    const observation = await this.observe(handle);
    if ('startedAt' in observation && observation.startedAt) handle.startedAt = observation.startedAt;
    log.info({ sandboxId: handle.sandboxId, containerId: handle.containerId }, 'adopted the container of an unrecorded start by its labels');
    return { handle, observation, ...(warnings.length > 0 ? { warnings } : {}) };
  }

  /**
   * Removes every run of a task whose record or handle cannot be read, found
   * by its task and owner labels: nothing could follow or stop it later.
   */
  reclaim(name: string, taskDir: string): Promise<number> {
    return this.guard(this.reclaimRuns(name, taskDir));
  }

  private async reclaimRuns(name: string, taskDir: string): Promise<number> {
    const labels = { [LABEL_TASK]: name, [LABEL_OWNER]: ownerOf(dataDirOf(resolve(taskDir))) };
    return this.removeRuns(labels, this.options.log.child({ task: name }), true);
  }

  inspect(handle: ContainerHandle): Promise<Observation> {
    return this.guard(this.observe(handle));
  }

  private async observe(handle: ContainerHandle): Promise<Observation> {
    if (!handle.containerId) return { state: 'lost', message: 'the container was never created' };
    const status = await this.findStatus(handle);
    if (!status) {
      return {
        state: 'lost',
        ...(handle.startedAt ? { startedAt: handle.startedAt } : {}),
        message: `container ${handle.containerId} no longer exists in the container runtime (removed outside the executor?)`,
      };
    }
    const observation = observationFromStatus(status);
    // An ended task keeps its container (status, logs) until it is deleted,
    // but its sandbox need not keep running.
    if (observation.state !== 'running' && handle.sandboxId) await this.quiesce(handle.sandboxId, this.options.log);
    return observation;
  }

  stop(handle: ContainerHandle, options: StopOptions): Promise<void> {
    return this.guard(this.stopRun(handle, options));
  }

  private async stopRun(handle: ContainerHandle, options: StopOptions): Promise<void> {
    const id = this.containerIdOf(handle);
    if (!id) return;
    if (options.signal !== 'SIGTERM') {
      this.options.log.warn(
        { task: handle.task, signal: options.signal },
        "the CRI cannot send a chosen stop signal; the container gets its image's STOPSIGNAL (default SIGTERM)",
      );
    }
    try {
      await this.cri.stopContainer(id, Math.ceil(options.graceMs / 1000));
    } catch (error) {
      if (isNotFound(error)) return;
      throw error;
    }
    const deadline = deadlineIn(EXIT_WAIT_MS);
    for (;;) {
      let state;
      try {
        state = (await this.cri.containerStatus(id)).state;
      } catch (error) {
        if (isNotFound(error)) return;
        throw error;
      }
      if (state === ContainerState.CONTAINER_EXITED) return;
      if (deadline.passed()) throw new Error(`container ${id} did not exit after StopContainer (state ${ContainerState[state] ?? state})`);
      await delay(POLL_MS);
    }
  }

  release(handle: ContainerHandle): Promise<void> {
    return this.guard(this.releaseRun(handle));
  }

  private async releaseRun(handle: ContainerHandle): Promise<void> {
    const log = this.options.log.child({ task: handle.task, uid: handle.uid });
    if (handle.containerId) await ignoreNotFound(this.cri.removeContainer(handle.containerId));
    if (handle.sandboxId) {
      await ignoreNotFound(this.cri.stopPodSandbox(handle.sandboxId));
      await ignoreNotFound(this.cri.removePodSandbox(handle.sandboxId));
    }
    // Whatever else carries this run's label (a handle that went stale, a half-finished start).
    if (handle.uid) await this.removeRuns({ [LABEL_UID]: handle.uid }, log, true);
    this.reattached.delete(handle.uid);
    if (handle.sandboxId) this.quiesced.delete(handle.sandboxId);
  }

  /**
   * A running container's changes come from one relist a second for all of
   * them (see relist.ts); the executor's own resync is only a slow safety net.
   */
  watch(handle: ContainerHandle, onChange: () => void): () => void {
    const unwatch = this.relist.add({ owner: handle.owner, containerId: () => this.containerIdOf(handle), onChange });
    // Watched while it runs: its log is rotated for as long.
    const untrack = this.rotation.track(handle.uid, {
      directory: join(handle.taskDir, 'logs'),
      containerId: () => this.containerIdOf(handle),
      // A handle of a release before rotation: the executor's defaults.
      ...(handle.logs ?? this.logLimits(undefined)),
    });
    return () => {
      unwatch();
      untrack();
    };
  }

  logs({ taskDir }: ContainerHandle): LogLocation | undefined {
    return taskDir ? { directory: join(taskDir, 'logs') } : undefined;
  }

  stats(handle: ContainerHandle): Promise<ResourceSample> {
    return this.guard(this.measure(handle));
  }

  private async measure(handle: ContainerHandle): Promise<ResourceSample> {
    const id = this.containerIdOf(handle);
    if (!id) return { time: Date.now() };
    try {
      return sampleFromStats(await this.cri.containerStats(id), handle.limits);
    } catch (error) {
      if (isUnreachable(error)) throw error;
      // An ended (or removed) container has nothing to measure: containerd
      // answers with an error rather than an empty sample.
      const state = isNotFound(error) ? undefined : await this.cri.containerStatus(id).then((s) => s.state, () => undefined);
      if (state !== ContainerState.CONTAINER_RUNNING) return sampleFromStats(undefined, handle.limits);
      throw error;
    }
  }

  /**
   * Every public operation: an unreachable runtime becomes TaskError
   * ('Unavailable') with a message saying so, which the manager treats as
   * "wait and try again", not as the task failing.
   */
  private async guard<T>(work: Promise<T>): Promise<T> {
    try {
      return await work;
    } catch (error) {
      if (isUnreachable(error)) {
        throw new TaskError('Unavailable', `the container runtime at ${this.cri.address} is unreachable: ${error.details}; tasks wait until it is back`, {
          cause: error,
        });
      }
      throw error;
    }
  }

  /** Rethrows an unreachable-runtime error, remembering the run it interrupted for removal once the runtime is back. */
  private orphanIfUnreachable(error: unknown, uid: string, sandboxId?: string): void {
    if (!isUnreachable(error)) return;
    this.orphans.set(uid, sandboxId);
    throw error;
  }

  private async removeOrphans(): Promise<void> {
    for (const [uid, sandboxId] of [...this.orphans]) {
      try {
        await this.removeRuns({ [LABEL_UID]: uid }, this.options.log, true);
        if (sandboxId) {
          await ignoreNotFound(this.cri.stopPodSandbox(sandboxId));
          await ignoreNotFound(this.cri.removePodSandbox(sandboxId));
        }
        this.orphans.delete(uid);
      } catch {
        // Gone again: the next return retries.
        return;
      }
    }
  }

  /** The task's log rotation limits, the executor's defaults filling in what it does not set. */
  private logLimits(logs: TaskSpec['logs']): NonNullable<ContainerHandle['logs']> {
    return { maxFileSizeBytes: logs?.maxFileSizeBytes ?? this.options.logMaxBytes, maxFiles: logs?.maxFiles ?? this.options.logMaxFiles };
  }

  private containerIdOf(handle: ContainerHandle): string | undefined {
    return this.reattached.get(handle.uid) ?? handle.containerId;
  }

  /** The run's container status: by id, else by its uid label (re-attach). Undefined when it is gone. */
  private async findStatus(handle: ContainerHandle) {
    const id = this.containerIdOf(handle)!;
    try {
      return await this.cri.containerStatus(id);
    } catch (error) {
      if (!isNotFound(error)) throw error;
    }
    const found = (await this.cri.listContainers({ labelSelector: { [LABEL_UID]: handle.uid } }))[0];
    if (!found) return undefined;
    this.options.log.info({ task: handle.task, stale: id, containerId: found.id }, 're-attached to the container by its labels');
    this.reattached.set(handle.uid, found.id);
    try {
      return await this.cri.containerStatus(found.id);
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw error;
    }
  }

  /**
   * Pulls the image unless the runtime has it; returns why the task cannot
   * run when it cannot be had. Transient failures (image-pull-retry.ts) are
   * tried again after a back-off, the task `waiting {ImagePullBackOff}` with
   * the last error meanwhile and `ImagePulling` during each attempt; a final
   * failure ends it at once. pullTimeoutMs bounds attempts and waits together;
   * the start's signal (the task is deleted) ends both at once.
   */
  private async ensureImage(
    image: string,
    sandbox: DeepPartial<PodSandboxConfig>,
    log: Logger,
    { progress, signal }: StartRequest,
  ): Promise<{ reason: string; message: string } | undefined> {
    if (await this.cri.imageStatus(image)) return undefined;
    const found = this.options.registryAuth?.credentialsFor(image);
    const auth = found?.auth;
    // Which registry's credentials are used, never what they are.
    log.info({ image, credentials: found ? found.registry : 'none' }, 'pulling image');
    const budgetMs = this.options.pullTimeoutMs ?? DEFAULT_PULL_TIMEOUT_MS;
    const deadline = deadlineIn(budgetMs);
    const deleted = { reason: Reason.Stopped, message: `deleted while its image "${image}" was being pulled` };
    for (let attempt = 1; ; attempt++) {
      progress?.('ImagePulling', `pulling image "${image}"${attempt > 1 ? ` (attempt ${attempt})` : ''}`);
      let last: string;
      try {
        await this.cri.pullImage(image, sandbox, Math.max(1, Math.ceil(deadline.left())), auth, signal);
        if (attempt > 1) log.info({ image, attempts: attempt }, 'image pulled after retries');
        return undefined;
      } catch (error) {
        if (isUnreachable(error)) throw error;
        if (signal?.aborted) return deleted;
        last = criDetails(error);
        const failure = error instanceof CriError ? classifyPullFailure(error.code, error.details) : 'final';
        if (failure === 'final') return { reason: 'ImagePullFailed', message: `cannot pull image "${image}": ${last}` };
      }
      const next = afterTransientFailure(attempt, deadline.left(), this.options.pullBackoff);
      if (next.waitMs > 0) {
        log.warn({ image, attempt, waitMs: Math.round(next.waitMs), afterWait: next.afterWait, err: last }, 'image pull failed; waiting out a back-off');
        const after = next.afterWait === 'retry' ? `trying again in ${seconds(next.waitMs)}` : `giving up in ${seconds(next.waitMs)} (--image-pull-timeout)`;
        progress?.('ImagePullBackOff', `cannot pull image "${image}" (attempt ${attempt}): ${last}; ${after}`);
        try {
          await delay(next.waitMs, undefined, { signal });
        } catch {
          return deleted;
        }
      }
      if (next.afterWait === 'give-up') {
        return {
          reason: 'ImagePullFailed',
          message: `gave up pulling image "${image}" after ${attempt} attempt${attempt > 1 ? 's' : ''} in ${seconds(budgetMs)} (--image-pull-timeout); last error: ${last}`,
        };
      }
    }
  }

  /** Stops a sandbox whose container ended (best effort): its pause process need not outlive the task. */
  private async quiesce(sandboxId: string, log: Logger): Promise<void> {
    if (this.quiesced.has(sandboxId)) return;
    try {
      await this.cri.stopPodSandbox(sandboxId);
      this.quiesced.add(sandboxId);
    } catch (error) {
      // Unreachable: logged once as an outage; the next inspect or the release tries again.
      if (isUnreachable(error)) return;
      if (isNotFound(error)) this.quiesced.add(sandboxId);
      else log.warn({ sandboxId, err: errorMessage(error) }, 'cannot stop the sandbox of an ended container; will try again');
    }
  }

  /**
   * Removes every container and sandbox with these labels, and the sandbox
   * of each such container (a pooled sandbox carries no task or run label).
   * Returns how many sandboxes it removed.
   */
  private async removeRuns(labels: Record<string, string>, log: Logger, strict = false): Promise<number> {
    try {
      const sandboxes = new Set<string>();
      for (const container of await this.cri.listContainers({ labelSelector: labels })) {
        await ignoreNotFound(this.cri.removeContainer(container.id));
        sandboxes.add(container.podSandboxId);
      }
      for (const sandbox of await this.cri.listPodSandbox(labels)) sandboxes.add(sandbox.id);
      for (const id of sandboxes) {
        log.info({ sandboxId: id, labels }, 'removing pod sandbox');
        await ignoreNotFound(this.cri.stopPodSandbox(id));
        await ignoreNotFound(this.cri.removePodSandbox(id));
      }
      return sandboxes.size;
    } catch (error) {
      if (strict || isUnreachable(error)) throw error;
      log.warn({ labels, err: errorMessage(error) }, 'cannot remove earlier sandboxes of this task');
      return 0;
    }
  }
}

/** The data dir a task dir lives in, spelled the same however the executor was pointed at it. */
function dataDirOf(taskDir: string): string {
  return realDir(dirname(taskDir));
}

function realDir(dir: string): string {
  try {
    return realpathSync(dir);
  } catch {
    return dir;
  }
}

/** What a container task asks for that the CRI backend does not do. */
function startWarnings(spec: TaskSpec, resources: ResourceMapping): string[] {
  const warnings = [...resources.warnings];
  if (spec.stopSignal && spec.stopSignal !== 'SIGTERM') {
    warnings.push(`stopSignal ${spec.stopSignal} is not used: the CRI stops containers with the image's STOPSIGNAL (default SIGTERM)`);
  }
  return warnings;
}

async function ignoreNotFound(call: Promise<unknown>): Promise<void> {
  try {
    await call;
  } catch (error) {
    if (!isNotFound(error)) throw error;
  }
}

/** "1.5s", "2m30s": a duration as --image-pull-timeout takes it. */
function seconds(ms: number): string {
  const s = Math.round(ms / 100) / 10;
  return s >= 60 ? `${Math.floor(s / 60)}m${s % 60 ? `${Math.round(s % 60)}s` : ''}` : `${s}s`;
}

/** The runtime's own words, and which call failed with which code when that adds something. */
function criDetails(error: unknown): string {
  if (!(error instanceof CriError)) return errorMessage(error);
  return error.code === status.UNKNOWN ? error.details : `${error.details} (${error.rpc}: ${status[error.code] ?? error.code})`;
}


/**
 * A runtime whose CRI endpoint answered and is ready; throws (and leaves no
 * connection open) when it is unreachable or not ready.
 */
export async function startContainerRuntime(options: ContainerRuntimeOptions): Promise<ContainerRuntime> {
  const runtime = new ContainerRuntime(options);
  let version: string;
  try {
    version = await runtime.connect();
  } catch (error) {
    await runtime.close();
    throw error;
  }
  options.log.info(
    { criSocket: options.criSocket, runtime: version, volumes: Object.fromEntries(options.volumes), cgroupParent: options.cgroupParent },
    'container mode: CRI runtime ready',
  );
  for (const [name, hostPath] of options.volumes) {
    if (!existsSync(hostPath)) options.log.warn({ volume: name, hostPath }, 'the host path of a volume does not exist (yet)');
  }
  if (runtime.pool) {
    // Before any start: what an earlier executor left idle is removed, not adopted (its count may differ).
    try {
      const removed = await runtime.pool.prune();
      options.log.info({ size: options.sandboxPool, removed }, 'sandbox pool: removed idle sandboxes of an earlier run; filling');
    } catch (error) {
      await runtime.close();
      throw new Error(`cannot list or remove the pooled sandboxes of an earlier run: ${criDetails(error)}`);
    }
    runtime.pool.fill();
  }
  return runtime;
}
