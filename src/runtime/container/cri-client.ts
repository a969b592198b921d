// A small promise-based client for the Kubernetes CRI (runtime.v1) over a
// unix socket: the RuntimeService and ImageService RPCs the container backend
// uses, typed by hand after proto/api.proto (loaded with @grpc/proto-loader,
// keepCase: fields keep their snake_case names; int64 arrive as strings).
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  type ChannelCredentials,
  type ChannelOptions,
  type Client,
  type ClientOptions,
  connectivityState,
  credentials,
  loadPackageDefinition,
  type ServiceError,
  status,
} from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { packageRoot } from '../../util/package-root.js';

export type NamespaceMode = 'POD' | 'CONTAINER' | 'NODE' | 'TARGET';
export type ContainerState = 'CONTAINER_CREATED' | 'CONTAINER_RUNNING' | 'CONTAINER_EXITED' | 'CONTAINER_UNKNOWN';
export type PodSandboxState = 'SANDBOX_READY' | 'SANDBOX_NOTREADY';
export type Labels = Record<string, string>;
/** int64/uint64 fields: strings when read (longs: String), numbers or strings when written. */
export type Int64 = string | number;

export interface NamespaceOption {
  network?: NamespaceMode;
  pid?: NamespaceMode;
  ipc?: NamespaceMode;
}

export interface PodSandboxConfig {
  metadata: { name: string; uid: string; namespace: string; attempt?: number };
  hostname?: string;
  log_directory?: string;
  labels?: Labels;
  annotations?: Labels;
  linux?: {
    cgroup_parent?: string;
    security_context?: { namespace_options?: NamespaceOption };
  };
}

export interface Mount {
  container_path: string;
  host_path: string;
  readonly?: boolean;
}

export interface LinuxContainerResources {
  cpu_period?: Int64;
  cpu_quota?: Int64;
  memory_limit_in_bytes?: Int64;
  unified?: Record<string, string>;
}

export interface ContainerConfig {
  metadata: { name: string; attempt?: number };
  image: { image: string };
  command?: string[];
  args?: string[];
  working_dir?: string;
  envs?: { key: string; value: string }[];
  mounts?: Mount[];
  labels?: Labels;
  annotations?: Labels;
  log_path?: string;
  linux?: {
    resources?: LinuxContainerResources;
    security_context?: { namespace_options?: NamespaceOption };
  };
}

export interface ContainerStatus {
  id: string;
  metadata: { name: string; attempt: number } | null;
  state: ContainerState;
  created_at: string;
  started_at: string;
  finished_at: string;
  exit_code: number;
  reason: string;
  message: string;
  labels: Labels;
  log_path: string;
}

export interface PodSandbox {
  id: string;
  state: PodSandboxState;
  labels: Labels;
}

export interface Container {
  id: string;
  pod_sandbox_id: string;
  state: ContainerState;
  created_at: string;
  labels: Labels;
}

export interface UInt64Value {
  value: string;
}

export interface ContainerStats {
  attributes: { id: string } | null;
  cpu: { timestamp: string; usage_core_nano_seconds: UInt64Value | null; usage_nano_cores: UInt64Value | null } | null;
  memory: {
    timestamp: string;
    working_set_bytes: UInt64Value | null;
    available_bytes: UInt64Value | null;
    usage_bytes: UInt64Value | null;
    rss_bytes: UInt64Value | null;
  } | null;
}

export interface VersionResponse {
  version: string;
  runtime_name: string;
  runtime_version: string;
  runtime_api_version: string;
}

export interface RuntimeCondition {
  type: string;
  status: boolean;
  reason: string;
  message: string;
}

/** A failed CRI call: which RPC, the gRPC code, and the runtime's own words (or why it could not be reached). */
export class CriError extends Error {
  constructor(
    readonly rpc: string,
    readonly code: status,
    readonly details: string,
  ) {
    super(`CRI ${rpc} failed (${status[code] ?? code}): ${details}`);
    this.name = 'CriError';
  }

  /** The runtime could not be reached (or is not serving yet): the call may work later, unchanged. */
  get unreachable(): boolean {
    return this.code === status.UNAVAILABLE;
  }
}

export const isNotFound = (error: unknown): boolean => error instanceof CriError && error.code === status.NOT_FOUND;
export const isUnreachable = (error: unknown): error is CriError => error instanceof CriError && error.unreachable;

/**
 * Why a runtime is unreachable, in a person's words, from grpc-js' text for a
 * failed connection (e.g. "No connection established. Last error: Error:
 * connect ENOENT /run/x.sock (2024-...). Resolution note: ").
 */
export function unreachableReason(details: string): string {
  const errno = /\b(ENOENT|ECONNREFUSED|EACCES|EPERM|ECONNRESET|EPIPE|ETIMEDOUT)\b/.exec(details)?.[1];
  switch (errno) {
    case 'ENOENT':
      return 'its socket does not exist (is it running?)';
    case 'ECONNREFUSED':
      return 'connection refused';
    case 'EACCES':
    case 'EPERM':
      return 'permission denied on its socket';
    case 'ECONNRESET':
    case 'EPIPE':
      return 'the connection was reset';
    case 'ETIMEDOUT':
      return 'the connection timed out';
  }
  if (/not initialized/i.test(details)) return 'it is still starting up';
  if (/connection dropped|goaway|socket closed|stream removed/i.test(details)) return 'the connection was lost';
  const words = details
    .replace(/^(\d+ UNAVAILABLE: )?No connection established\.?( Last error: )?/, '')
    .replace(/\.? Resolution note: .*$/s, '')
    .replace(/^(Error: )+/, '')
    .replace(/ \(\d{4}-\d\d-\d\dT[^)]*\)$/, '')
    .trim();
  return words === '' || words === 'null' ? 'no connection' : words;
}

/** "unix:///run/x.sock" for "/run/x.sock" or "unix:///run/x.sock". */
export function criAddress(socket: string): string {
  if (socket.startsWith('unix:')) return socket;
  return `unix://${socket}`;
}

export interface CriClientOptions {
  /** Deadline of ordinary calls. */
  timeoutMs?: number;
  /**
   * How long a call waits for a connection before it fails as unreachable:
   * short, so that a runtime that is down is noticed at once rather than after
   * a call's own (possibly minutes long) deadline.
   */
  connectTimeoutMs?: number;
  /** Told about every call when it ends: for logging slow or failing calls. */
  onCall?: (rpc: string, ms: number, error?: CriError) => void;
}

type Rpc = (request: unknown, options: { deadline: number }, callback: (error: ServiceError | null, response: unknown) => void) => void;

/** Next to this module when run from src/ (tsx); from the package root when compiled to dist/. */
function protoPath(): string {
  const candidates = [
    join(dirname(fileURLToPath(import.meta.url)), 'proto', 'api.proto'),
    join(packageRoot(), 'src', 'runtime', 'container', 'proto', 'api.proto'),
  ];
  const found = candidates.find((path) => existsSync(path));
  if (!found) throw new Error(`the CRI proto is missing (looked for ${candidates.join(', ')}); ship src/runtime/container/proto with the executor`);
  return found;
}

type ServiceConstructor = new (address: string, creds: ChannelCredentials, options?: ClientOptions) => Client;
interface Services {
  RuntimeService: ServiceConstructor;
  ImageService: ServiceConstructor;
}
let services: Services | undefined;

function loadServices(): Services {
  if (!services) {
    const definition = loadSync(protoPath(), { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true });
    services = (loadPackageDefinition(definition) as unknown as { runtime: { v1: Services } }).runtime.v1;
  }
  return services;
}

/**
 * grpc-js backs off reconnection attempts up to 2 minutes by default; a local
 * runtime that restarts should be used again within a second of its return.
 */
const CHANNEL_OPTIONS: ChannelOptions = {
  'grpc.initial_reconnect_backoff_ms': 100,
  'grpc.max_reconnect_backoff_ms': 500,
};

export class CriClient {
  readonly address: string;
  private readonly runtime: Client;
  private readonly images: Client;
  private readonly timeoutMs: number;
  private readonly connectTimeoutMs: number;
  private readonly onCall: CriClientOptions['onCall'];

  constructor(socket: string, options: CriClientOptions = {}) {
    const { RuntimeService, ImageService } = loadServices();
    this.address = criAddress(socket);
    this.runtime = new RuntimeService(this.address, credentials.createInsecure(), CHANNEL_OPTIONS);
    // One connection for both services: one connectivity state to follow.
    this.images = new ImageService(this.address, credentials.createInsecure(), { channelOverride: this.runtime.getChannel() });
    this.timeoutMs = options.timeoutMs ?? 30_000;
    this.connectTimeoutMs = options.connectTimeoutMs ?? 1500;
    this.onCall = options.onCall;
  }

  close(): void {
    this.runtime.close();
  }

  version(timeoutMs?: number): Promise<VersionResponse> {
    return this.call(this.runtime, 'Version', { version: 'v1' }, timeoutMs);
  }

  async status(timeoutMs?: number): Promise<RuntimeCondition[]> {
    const response = await this.call<{ status: { conditions: RuntimeCondition[] } | null }>(this.runtime, 'Status', {}, timeoutMs);
    return response.status?.conditions ?? [];
  }

  /** The image if the runtime has it, else undefined. */
  async imageStatus(image: string): Promise<{ id: string } | undefined> {
    const response = await this.call<{ image: { id: string } | null }>(this.images, 'ImageStatus', { image: { image } });
    return response.image ?? undefined;
  }

  async pullImage(image: string, sandboxConfig: PodSandboxConfig, timeoutMs: number): Promise<string> {
    const response = await this.call<{ image_ref: string }>(
      this.images,
      'PullImage',
      { image: { image }, sandbox_config: sandboxConfig },
      timeoutMs,
    );
    return response.image_ref;
  }

  async runPodSandbox(config: PodSandboxConfig): Promise<string> {
    return (await this.call<{ pod_sandbox_id: string }>(this.runtime, 'RunPodSandbox', { config })).pod_sandbox_id;
  }

  async stopPodSandbox(id: string): Promise<void> {
    await this.call(this.runtime, 'StopPodSandbox', { pod_sandbox_id: id });
  }

  async removePodSandbox(id: string): Promise<void> {
    await this.call(this.runtime, 'RemovePodSandbox', { pod_sandbox_id: id });
  }

  async listPodSandbox(labelSelector: Labels): Promise<PodSandbox[]> {
    return (await this.call<{ items: PodSandbox[] }>(this.runtime, 'ListPodSandbox', { filter: { label_selector: labelSelector } })).items;
  }

  async createContainer(podSandboxId: string, config: ContainerConfig, sandboxConfig: PodSandboxConfig): Promise<string> {
    const response = await this.call<{ container_id: string }>(this.runtime, 'CreateContainer', {
      pod_sandbox_id: podSandboxId,
      config,
      sandbox_config: sandboxConfig,
    });
    return response.container_id;
  }

  async startContainer(id: string): Promise<void> {
    await this.call(this.runtime, 'StartContainer', { container_id: id });
  }

  /** Asks the container to stop, SIGKILLs it after timeoutSeconds; the call returns once it stopped. */
  async stopContainer(id: string, timeoutSeconds: number): Promise<void> {
    await this.call(this.runtime, 'StopContainer', { container_id: id, timeout: timeoutSeconds }, (timeoutSeconds + 30) * 1000);
  }

  async removeContainer(id: string): Promise<void> {
    await this.call(this.runtime, 'RemoveContainer', { container_id: id });
  }

  async listContainers(filter: { labelSelector?: Labels; podSandboxId?: string }): Promise<Container[]> {
    const response = await this.call<{ containers: Container[] }>(this.runtime, 'ListContainers', {
      filter: { label_selector: filter.labelSelector ?? {}, pod_sandbox_id: filter.podSandboxId ?? '' },
    });
    return response.containers;
  }

  async containerStatus(id: string): Promise<ContainerStatus> {
    const response = await this.call<{ status: ContainerStatus | null }>(this.runtime, 'ContainerStatus', { container_id: id });
    if (!response.status) throw new CriError('ContainerStatus', status.NOT_FOUND, `no status for container ${id}`);
    return response.status;
  }

  async containerStats(id: string): Promise<ContainerStats | undefined> {
    return (await this.call<{ stats: ContainerStats | null }>(this.runtime, 'ContainerStats', { container_id: id })).stats ?? undefined;
  }

  private async call<Res>(client: Client, rpc: string, request: unknown, timeoutMs = this.timeoutMs): Promise<Res> {
    const started = Date.now();
    try {
      await this.connection(rpc, Math.min(timeoutMs, this.connectTimeoutMs));
      const response = await this.invoke<Res>(client, rpc, request, started + timeoutMs);
      this.onCall?.(rpc, Date.now() - started);
      return response;
    } catch (error) {
      const failure = error instanceof CriError ? error : new CriError(rpc, status.UNKNOWN, String(error));
      this.onCall?.(rpc, Date.now() - started, failure);
      throw failure;
    }
  }

  /**
   * Resolves once the channel is connected, or when it is known to have
   * failed (the call then fails at once with the connection's error); rejects
   * as unreachable when no connection is made within `timeoutMs` (a runtime
   * that accepts but does not answer, e.g. stopped with SIGSTOP).
   */
  private async connection(rpc: string, timeoutMs: number): Promise<void> {
    const channel = this.runtime.getChannel();
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const state = channel.getConnectivityState(true);
      if (state === connectivityState.READY || state === connectivityState.TRANSIENT_FAILURE) return;
      if (state === connectivityState.SHUTDOWN) throw new CriError(rpc, status.UNAVAILABLE, 'the CRI client was closed');
      const changed = await new Promise<boolean>((resolve) => channel.watchConnectivityState(state, deadline, (error) => resolve(!error)));
      if (!changed) throw new CriError(rpc, status.UNAVAILABLE, `it accepted no connection within ${timeoutMs} ms`);
    }
  }

  private invoke<Res>(client: Client, rpc: string, request: unknown, deadline: number): Promise<Res> {
    const method = (client as unknown as Record<string, Rpc>)[rpc]!.bind(client);
    return new Promise((resolve, reject) => {
      method(request, { deadline }, (error, response) => {
        if (error) reject(criError(rpc, error));
        else resolve(response as Res);
      });
    });
  }
}

/** A failed call as a CriError; connection failures get a reason a person can act on instead of grpc-js' text. */
function criError(rpc: string, error: ServiceError): CriError {
  const details = error.details || error.message;
  // containerd's CRI answers UNKNOWN "server is not initialized yet" for a while after it starts.
  if (error.code === status.UNAVAILABLE || /server is not initialized yet/.test(details)) {
    return new CriError(rpc, status.UNAVAILABLE, unreachableReason(details));
  }
  return new CriError(rpc, error.code, details);
}
