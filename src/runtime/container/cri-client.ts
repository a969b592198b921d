// A small promise-based client for the Kubernetes CRI (runtime.v1) over a
// unix socket: the RuntimeService and ImageService RPCs the container backend
// uses, typed by hand after proto/api.proto (loaded with @grpc/proto-loader,
// keepCase: fields keep their snake_case names; int64 arrive as strings).
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type ChannelCredentials, type Client, credentials, loadPackageDefinition, type ServiceError, status } from '@grpc/grpc-js';
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

/** A failed CRI call: which RPC, the gRPC code, and the runtime's own words. */
export class CriError extends Error {
  constructor(
    readonly rpc: string,
    readonly code: status,
    readonly details: string,
  ) {
    super(`CRI ${rpc} failed (${status[code] ?? code}): ${details}`);
    this.name = 'CriError';
  }
}

export const isNotFound = (error: unknown): boolean => error instanceof CriError && error.code === status.NOT_FOUND;

/** "unix:///run/x.sock" for "/run/x.sock" or "unix:///run/x.sock". */
export function criAddress(socket: string): string {
  if (socket.startsWith('unix:')) return socket;
  return `unix://${socket}`;
}

export interface CriClientOptions {
  /** Deadline of ordinary calls. */
  timeoutMs?: number;
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

type ServiceConstructor = new (address: string, creds: ChannelCredentials) => Client;
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

export class CriClient {
  readonly address: string;
  private readonly runtime: Client;
  private readonly images: Client;
  private readonly timeoutMs: number;
  private readonly onCall: CriClientOptions['onCall'];

  constructor(socket: string, options: CriClientOptions = {}) {
    const { RuntimeService, ImageService } = loadServices();
    this.address = criAddress(socket);
    this.runtime = new RuntimeService(this.address, credentials.createInsecure());
    this.images = new ImageService(this.address, credentials.createInsecure());
    this.timeoutMs = options.timeoutMs ?? 30_000;
    this.onCall = options.onCall;
  }

  close(): void {
    this.runtime.close();
    this.images.close();
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

  private call<Res>(client: Client, rpc: string, request: unknown, timeoutMs = this.timeoutMs): Promise<Res> {
    const method = (client as unknown as Record<string, Rpc>)[rpc]!.bind(client);
    const started = Date.now();
    return new Promise((resolve, reject) => {
      method(request, { deadline: started + timeoutMs }, (error, response) => {
        const failure = error ? new CriError(rpc, error.code, error.details || error.message) : undefined;
        this.onCall?.(rpc, Date.now() - started, failure);
        if (failure) reject(failure);
        else resolve(response as Res);
      });
    });
  }
}
