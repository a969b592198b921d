// A stand-in CRI runtime on a unix socket for what a real containerd cannot
// show quickly or without a registry:
// - which AuthConfig a PullImage carries, and pulls that fail as a registry in
//   trouble makes them fail: it has no images but those in `images`
//   (ImageStatus: none), records every PullImage request and answers it by the
//   image's script (scriptPulls), else refuses it;
// - containers whose output the test writes: sandboxes and containers are
//   records, a started container's log is a file opened at its LogPath as
//   containerd opens it (append, create, following a symlink), `write` appends
//   CRI log records to it, ReopenContainerLog opens the path again (and fails
//   for a container that is not running, as containerd's does), `exit` ends it.
// Other RPCs are UNIMPLEMENTED (grpc-js' answer for a method without a handler).
import { closeSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type sendUnaryData, Server, ServerCredentials, type ServerUnaryCall, status } from '@grpc/grpc-js';
import {
  ContainerState,
  ContainerStatsResponse,
  ContainerStatusResponse,
  CreateContainerResponse,
  ImageServiceService,
  type ImageStatusRequest,
  ImageStatusResponse,
  ListContainersResponse,
  ListPodSandboxResponse,
  PodSandboxState,
  type PullImageRequest,
  PullImageResponse,
  RemoveContainerResponse,
  RemovePodSandboxResponse,
  ReopenContainerLogResponse,
  RunPodSandboxResponse,
  RuntimeServiceService,
  type RuntimeServiceServer,
  StartContainerResponse,
  StatusResponse,
  StopContainerResponse,
  StopPodSandboxResponse,
  VersionResponse,
} from '../../gen/cri/runtime/v1/api.js';
import { LABEL_TASK } from '../../src/runtime/container/mapping.js';

interface PullScript {
  times: number;
  code: status;
  details: string;
  afterwards: 'succeed' | 'refuse';
}

interface FakeSandbox {
  id: string;
  labels: Record<string, string>;
  metadata: { name: string; uid: string; namespace: string; attempt: number };
  logDirectory: string;
  ready: boolean;
  createdAt: bigint;
}

interface FakeContainer {
  id: string;
  sandboxId: string;
  labels: Record<string, string>;
  image: string;
  logPath: string;
  state: ContainerState;
  createdAt: bigint;
  startedAt: bigint;
  finishedAt: bigint;
  exitCode: number;
  /** The open log file while running. */
  fd: number | undefined;
}

export interface FakeCri {
  socket: string;
  /** Every PullImage request received, in order. */
  pulls: PullImageRequest[];
  /** What PullImage answers (the runtime's words in the task's failure). */
  pullError: string;
  /** When each PullImage arrived (Date.now()), beside `pulls`. */
  pullTimes: number[];
  /**
   * Makes the next `times` PullImage calls for `image` fail with `code` and
   * `details` (Infinity: every one); once they are used up, pulls of it
   * succeed, unless `afterwards` is 'refuse' (answered like an unscripted image).
   */
  scriptPulls(image: string, script: { times: number; code: status; details: string; afterwards?: 'succeed' | 'refuse' }): void;
  /** The PullImage requests received for one image. */
  pullsOf(image: string): PullImageRequest[];
  /** Images the runtime has (ImageStatus finds them, so no pull happens). */
  images: Set<string>;
  /** ReopenContainerLog calls received (container ids), in order. */
  reopens: string[];
  /** Appends one CRI log record per line to the log of the task's running container (stamped `time`, default now). */
  write(task: string, lines: readonly string[], options?: { stream?: 'stdout' | 'stderr'; time?: Date }): void;
  /**
   * Makes the next call of `rpc` fail with `code` and `details` (once), before it does
   * anything; for runPodSandbox, after making the sandbox (its answer was lost).
   */
  failNext(rpc: 'createContainer' | 'startContainer' | 'runPodSandbox', code: status, details: string): void;
  /** The task's running container exits with this code (its log is closed). */
  exit(task: string, exitCode: number): void;
  close(): Promise<void>;
}

const nowNanos = (): bigint => BigInt(Date.now()) * 1_000_000n;

function matches(labels: Record<string, string>, selector: Record<string, string> | undefined): boolean {
  return Object.entries(selector ?? {}).every(([key, value]) => labels[key] === value);
}

/** An RFC 3339 timestamp with nine fractional digits, as containerd writes them. */
function criTimestamp(time: Date): string {
  return time.toISOString().replace(/\.(\d{3})Z$/, '.$1000000Z');
}

export async function startFakeCri(): Promise<FakeCri> {
  const dir = mkdtempSync(join(tmpdir(), 'te-fake-cri-'));
  const socket = join(dir, 'cri.sock');
  const server = new Server();
  const sandboxes = new Map<string, FakeSandbox>();
  const containers = new Map<string, FakeContainer>();
  let nextId = 1;
  const newId = (): string => (nextId++).toString(16).padStart(64, '0');

  const notFound = (what: string, id: string) => ({ code: status.NOT_FOUND, details: `${what} "${id}" not found` });
  const closeLog = (container: FakeContainer): void => {
    if (container.fd !== undefined) closeSync(container.fd);
    container.fd = undefined;
  };
  const finish = (container: FakeContainer, exitCode: number): void => {
    if (container.state !== ContainerState.CONTAINER_RUNNING) return;
    closeLog(container);
    container.state = ContainerState.CONTAINER_EXITED;
    container.exitCode = exitCode;
    container.finishedAt = nowNanos();
  };
  const runningOf = (task: string): FakeContainer => {
    const found = [...containers.values()].find((c) => c.labels[LABEL_TASK] === task && c.state === ContainerState.CONTAINER_RUNNING);
    if (!found) throw new Error(`fake CRI: task ${task} has no running container`);
    return found;
  };

  const scripts = new Map<string, PullScript>();
  const failures = new Map<string, { code: status; details: string }>();
  /** The scripted failure of this call, if any (used up). */
  const failure = (rpc: string) => {
    const found = failures.get(rpc);
    failures.delete(rpc);
    return found;
  };
  const fake: FakeCri = {
    socket,
    pulls: [],
    pullError: 'pull access denied (fake registry)',
    pullTimes: [],
    scriptPulls: (image, script) => scripts.set(image, { afterwards: 'succeed', ...script }),
    pullsOf: (image) => fake.pulls.filter((request) => request.image?.image === image),
    images: new Set(),
    reopens: [],
    write(task, lines, { stream = 'stdout', time = new Date() } = {}) {
      const container = runningOf(task);
      const stamp = criTimestamp(time);
      const text = lines.map((line) => `${stamp} ${stream} F ${line}\n`).join('');
      writeSync(container.fd!, text);
    },
    failNext(rpc, code, details) {
      failures.set(rpc, { code, details });
    },
    exit(task, exitCode) {
      finish(runningOf(task), exitCode);
    },
    close: async () => {},
  };

  const runtimeService = {
    version: ((_call, done) =>
      done(
        null,
        VersionResponse.fromPartial({ version: '0.1.0', runtimeName: 'fake-cri', runtimeVersion: '0', runtimeApiVersion: 'v1' }),
      )),
    status: ((_call, done) =>
      done(
        null,
        StatusResponse.fromPartial({
          status: { conditions: [{ type: 'RuntimeReady', status: true }, { type: 'NetworkReady', status: true }] },
        }),
      )),
    runPodSandbox: ((call, done) => {
      const config = call.request.config;
      const id = newId();
      const metadata = { name: '', uid: '', namespace: '', attempt: 0, ...config?.metadata };
      sandboxes.set(id, { id, labels: { ...config?.labels }, metadata, logDirectory: config?.logDirectory ?? '', ready: true, createdAt: nowNanos() });
      const failed = failure('runPodSandbox');
      if (failed) return done(failed);
      done(null, RunPodSandboxResponse.fromPartial({ podSandboxId: id }));
    }),
    stopPodSandbox: ((call, done) => {
      const sandbox = sandboxes.get(call.request.podSandboxId);
      if (!sandbox) return done(notFound('sandbox', call.request.podSandboxId));
      for (const container of containers.values()) if (container.sandboxId === sandbox.id) finish(container, 137);
      sandbox.ready = false;
      done(null, StopPodSandboxResponse.fromPartial({}));
    }),
    removePodSandbox: ((call, done) => {
      const id = call.request.podSandboxId;
      for (const container of [...containers.values()]) {
        if (container.sandboxId !== id) continue;
        closeLog(container);
        containers.delete(container.id);
      }
      sandboxes.delete(id);
      done(null, RemovePodSandboxResponse.fromPartial({}));
    }),
    listPodSandbox: ((call, done) => {
      const items = [...sandboxes.values()]
        .filter((s) => matches(s.labels, call.request.filter?.labelSelector))
        .map((s) => ({ id: s.id, labels: s.labels, metadata: s.metadata, createdAt: s.createdAt, state: s.ready ? PodSandboxState.SANDBOX_READY : PodSandboxState.SANDBOX_NOTREADY }));
      done(null, ListPodSandboxResponse.fromPartial({ items }));
    }),
    createContainer: ((call, done) => {
      const failed = failure('createContainer');
      if (failed) return done(failed);
      const sandbox = sandboxes.get(call.request.podSandboxId);
      if (!sandbox) return done(notFound('sandbox', call.request.podSandboxId));
      const config = call.request.config;
      const id = newId();
      containers.set(id, {
        id,
        sandboxId: sandbox.id,
        labels: { ...config?.labels },
        image: config?.image?.image ?? '',
        logPath: join(sandbox.logDirectory, config?.logPath ?? ''),
        state: ContainerState.CONTAINER_CREATED,
        createdAt: nowNanos(),
        startedAt: 0n,
        finishedAt: 0n,
        exitCode: 0,
        fd: undefined,
      });
      done(null, CreateContainerResponse.fromPartial({ containerId: id }));
    }),
    startContainer: ((call, done) => {
      const failed = failure('startContainer');
      if (failed) return done(failed);
      const container = containers.get(call.request.containerId);
      if (!container) return done(notFound('container', call.request.containerId));
      container.fd = openSync(container.logPath, 'a', 0o640);
      container.state = ContainerState.CONTAINER_RUNNING;
      container.startedAt = nowNanos();
      done(null, StartContainerResponse.fromPartial({}));
    }),
    stopContainer: ((call, done) => {
      const container = containers.get(call.request.containerId);
      if (!container) return done(notFound('container', call.request.containerId));
      finish(container, 143);
      done(null, StopContainerResponse.fromPartial({}));
    }),
    removeContainer: ((call, done) => {
      const container = containers.get(call.request.containerId);
      if (container) closeLog(container);
      containers.delete(call.request.containerId);
      done(null, RemoveContainerResponse.fromPartial({}));
    }),
    listContainers: ((call, done) => {
      const filter = call.request.filter;
      const found = [...containers.values()]
        .filter((c) => matches(c.labels, filter?.labelSelector) && (!filter?.podSandboxId || filter.podSandboxId === c.sandboxId))
        .map((c) => ({ id: c.id, podSandboxId: c.sandboxId, labels: c.labels, state: c.state, createdAt: c.createdAt, image: { image: c.image } }));
      done(null, ListContainersResponse.fromPartial({ containers: found }));
    }),
    containerStatus: ((call, done) => {
      const c = containers.get(call.request.containerId);
      if (!c) return done(notFound('container', call.request.containerId));
      const { id, state, createdAt, startedAt, finishedAt, exitCode, labels, logPath } = c;
      done(null, ContainerStatusResponse.fromPartial({ status: { id, state, createdAt, startedAt, finishedAt, exitCode, labels, logPath } }));
    }),
    containerStats: ((call, done) => {
      if (!containers.has(call.request.containerId)) return done(notFound('container', call.request.containerId));
      done(null, ContainerStatsResponse.fromPartial({}));
    }),
    reopenContainerLog: ((call, done) => {
      const container = containers.get(call.request.containerId);
      fake.reopens.push(call.request.containerId);
      if (!container) return done(notFound('container', call.request.containerId));
      // containerd's words and code (UNKNOWN) for a container that ended.
      if (container.state !== ContainerState.CONTAINER_RUNNING) return done({ code: status.UNKNOWN, details: 'container is not running' });
      const old = container.fd;
      container.fd = openSync(container.logPath, 'a', 0o640);
      if (old !== undefined) closeSync(old);
      done(null, ReopenContainerLogResponse.fromPartial({}));
    }),
  } satisfies Partial<RuntimeServiceServer>;
  server.addService(RuntimeServiceService, runtimeService);
  server.addService(ImageServiceService, {
    imageStatus: (call: ServerUnaryCall<ImageStatusRequest, ImageStatusResponse>, done: sendUnaryData<ImageStatusResponse>) => {
      const image = call.request.image?.image ?? '';
      done(null, ImageStatusResponse.fromPartial(fake.images.has(image) ? { image: { id: `sha256:${image}` } } : {}));
    },
    pullImage: (call: ServerUnaryCall<PullImageRequest, PullImageResponse>, done: sendUnaryData<PullImageResponse>) => {
      fake.pulls.push(call.request);
      fake.pullTimes.push(Date.now());
      const image = call.request.image?.image ?? '';
      const script = scripts.get(image);
      if (script && script.times > 0) {
        script.times--;
        return done({ code: script.code, details: script.details });
      }
      if (script?.afterwards === 'succeed') {
        fake.images.add(image);
        return done(null, PullImageResponse.fromPartial({ imageRef: `sha256:fake-${image}` }));
      }
      done({ code: status.PERMISSION_DENIED, details: fake.pullError });
    },
  });
  await new Promise<void>((resolve, reject) =>
    server.bindAsync(`unix://${socket}`, ServerCredentials.createInsecure(), (error) => (error ? reject(error) : resolve())),
  );
  fake.close = async () => {
    await new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
    for (const container of containers.values()) closeLog(container);
    rmSync(dir, { recursive: true, force: true });
  };
  return fake;
}
