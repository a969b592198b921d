// A small promise-based client for the Kubernetes CRI (runtime.v1) over a
// unix socket, kubelet-style: the RuntimeService and ImageService RPCs the
// container backend uses, with deadlines, a short connect deadline, and
// errors as CriError. Types and stubs are generated (gen/cri) from the
// vendored upstream api.proto (third_party/cri-api); int64 fields are bigint.
import {
  type CallOptions,
  type ChannelOptions,
  type ClientUnaryCall,
  connectivityState,
  credentials,
  Metadata,
  type ServiceError,
  status,
} from '@grpc/grpc-js';
import {
  type AuthConfig,
  type Container,
  ContainerStatsRequest,
  type ContainerStats,
  type ContainerConfig,
  ContainerStatusRequest,
  type ContainerStatus,
  CreateContainerRequest,
  type DeepPartial,
  ImageServiceClient,
  ImageStatusRequest,
  ListContainersRequest,
  ListPodSandboxRequest,
  type PodSandbox,
  type PodSandboxConfig,
  PullImageRequest,
  RemoveContainerRequest,
  RemovePodSandboxRequest,
  ReopenContainerLogRequest,
  RunPodSandboxRequest,
  type RuntimeCondition,
  RuntimeServiceClient,
  StartContainerRequest,
  StatusRequest,
  StopContainerRequest,
  StopPodSandboxRequest,
  VersionRequest,
  type VersionResponse,
} from '../../../gen/cri/runtime/v1/api.js';

export type Labels = Record<string, string>;

/** A failed CRI call: which RPC, the gRPC code, and the runtime's own words (or why it could not be reached). */
export class CriError extends Error {
  /**
   * `unreachable`: the runtime could not be reached (or is not serving yet),
   * so the call may work later, unchanged. By default every UNAVAILABLE; false
   * for an UNAVAILABLE the runtime itself answered (e.g. about a registry).
   */
  constructor(
    readonly rpc: string,
    readonly code: status,
    readonly details: string,
    readonly unreachable = code === status.UNAVAILABLE,
  ) {
    super(`CRI ${rpc} failed (${status[code] ?? code}): ${details}`);
    this.name = 'CriError';
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

/** A generated unary stub, in the form the client calls it. */
type Unary<Req, Res> = (
  request: Req,
  metadata: Metadata,
  options: Partial<CallOptions>,
  callback: (error: ServiceError | null, response: Res) => void,
) => ClientUnaryCall;

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
  private readonly runtime: RuntimeServiceClient;
  private readonly images: ImageServiceClient;
  private readonly timeoutMs: number;
  private readonly connectTimeoutMs: number;
  private readonly onCall: CriClientOptions['onCall'];

  constructor(socket: string, options: CriClientOptions = {}) {
    this.address = criAddress(socket);
    this.runtime = new RuntimeServiceClient(this.address, credentials.createInsecure(), CHANNEL_OPTIONS);
    // One connection for both services: one connectivity state to follow.
    this.images = new ImageServiceClient(this.address, credentials.createInsecure(), { channelOverride: this.runtime.getChannel() });
    this.timeoutMs = options.timeoutMs ?? 30_000;
    this.connectTimeoutMs = options.connectTimeoutMs ?? 1500;
    this.onCall = options.onCall;
  }

  close(): void {
    this.runtime.close();
  }

  version(timeoutMs?: number): Promise<VersionResponse> {
    return this.call('Version', this.runtime.version, VersionRequest.fromPartial({ version: 'v1' }), timeoutMs);
  }

  async status(timeoutMs?: number): Promise<RuntimeCondition[]> {
    const response = await this.call('Status', this.runtime.status, StatusRequest.fromPartial({}), timeoutMs);
    return response.status?.conditions ?? [];
  }

  /** The image if the runtime has it, else undefined. */
  async imageStatus(image: string): Promise<{ id: string } | undefined> {
    const response = await this.call('ImageStatus', this.images.imageStatus, ImageStatusRequest.fromPartial({ image: { image } }));
    return response.image;
  }

  /**
   * `auth`: the registry credentials for this image, if any (never logged);
   * `signal`: cancels the pull (it then fails with CANCELLED).
   */
  async pullImage(
    image: string,
    sandboxConfig: DeepPartial<PodSandboxConfig>,
    timeoutMs: number,
    auth?: AuthConfig,
    signal?: AbortSignal,
  ): Promise<string> {
    const request = PullImageRequest.fromPartial({ image: { image }, sandboxConfig, auth });
    return (await this.call('PullImage', this.images.pullImage, request, timeoutMs, signal)).imageRef;
  }

  async runPodSandbox(config: DeepPartial<PodSandboxConfig>): Promise<string> {
    return (await this.call('RunPodSandbox', this.runtime.runPodSandbox, RunPodSandboxRequest.fromPartial({ config }))).podSandboxId;
  }

  async stopPodSandbox(id: string): Promise<void> {
    await this.call('StopPodSandbox', this.runtime.stopPodSandbox, StopPodSandboxRequest.fromPartial({ podSandboxId: id }));
  }

  async removePodSandbox(id: string): Promise<void> {
    await this.call('RemovePodSandbox', this.runtime.removePodSandbox, RemovePodSandboxRequest.fromPartial({ podSandboxId: id }));
  }

  async listPodSandbox(labelSelector: Labels): Promise<PodSandbox[]> {
    const request = ListPodSandboxRequest.fromPartial({ filter: { labelSelector } });
    return (await this.call('ListPodSandbox', this.runtime.listPodSandbox, request)).items;
  }

  async createContainer(podSandboxId: string, config: DeepPartial<ContainerConfig>, sandboxConfig: DeepPartial<PodSandboxConfig>): Promise<string> {
    const request = CreateContainerRequest.fromPartial({ podSandboxId, config, sandboxConfig });
    return (await this.call('CreateContainer', this.runtime.createContainer, request)).containerId;
  }

  async startContainer(id: string): Promise<void> {
    await this.call('StartContainer', this.runtime.startContainer, StartContainerRequest.fromPartial({ containerId: id }));
  }

  /** Asks the container to stop, SIGKILLs it after timeoutSeconds; the call returns once it stopped. */
  async stopContainer(id: string, timeoutSeconds: number): Promise<void> {
    const request = StopContainerRequest.fromPartial({ containerId: id, timeout: timeoutSeconds });
    await this.call('StopContainer', this.runtime.stopContainer, request, (timeoutSeconds + 30) * 1000);
  }

  async removeContainer(id: string): Promise<void> {
    await this.call('RemoveContainer', this.runtime.removeContainer, RemoveContainerRequest.fromPartial({ containerId: id }));
  }

  async listContainers(filter: { labelSelector?: Labels; podSandboxId?: string }): Promise<Container[]> {
    const request = ListContainersRequest.fromPartial({ filter: { labelSelector: filter.labelSelector ?? {}, podSandboxId: filter.podSandboxId ?? '' } });
    return (await this.call('ListContainers', this.runtime.listContainers, request)).containers;
  }

  async containerStatus(id: string): Promise<ContainerStatus> {
    const response = await this.call('ContainerStatus', this.runtime.containerStatus, ContainerStatusRequest.fromPartial({ containerId: id }));
    if (!response.status) throw new CriError('ContainerStatus', status.NOT_FOUND, `no status for container ${id}`);
    return response.status;
  }

  /**
   * Makes the runtime open the container's log path again (after the file was
   * moved away): fails when the container is not running.
   */
  async reopenContainerLog(id: string): Promise<void> {
    await this.call('ReopenContainerLog', this.runtime.reopenContainerLog, ReopenContainerLogRequest.fromPartial({ containerId: id }));
  }

  async containerStats(id: string): Promise<ContainerStats | undefined> {
    return (await this.call('ContainerStats', this.runtime.containerStats, ContainerStatsRequest.fromPartial({ containerId: id }))).stats;
  }

  private async call<Req, Res>(rpc: string, method: Unary<Req, Res>, request: Req, timeoutMs = this.timeoutMs, signal?: AbortSignal): Promise<Res> {
    const started = performance.now(); // the call's duration, for onCall
    const deadline = Date.now() + timeoutMs; // grpc-js takes deadlines on the wall clock
    try {
      await this.connection(rpc, Math.min(timeoutMs, this.connectTimeoutMs));
      const response = await this.invoke(rpc, method, request, deadline, signal);
      this.onCall?.(rpc, performance.now() - started);
      return response;
    } catch (error) {
      const failure = error instanceof CriError ? error : new CriError(rpc, status.UNKNOWN, String(error));
      this.onCall?.(rpc, performance.now() - started, failure);
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

  private invoke<Req, Res>(rpc: string, method: Unary<Req, Res>, request: Req, deadline: number, signal?: AbortSignal): Promise<Res> {
    return new Promise((resolve, reject) => {
      const cancel = () => call.cancel();
      // The stubs are methods of the generic client: called with either client, they share one channel.
      const call = method.call(this.runtime, request, new Metadata(), { deadline }, (error, response) => {
        signal?.removeEventListener('abort', cancel);
        if (error) reject(criError(rpc, error, this.runtime.getChannel().getConnectivityState(false) === connectivityState.READY));
        else resolve(response);
      });
      if (signal?.aborted) cancel();
      else signal?.addEventListener('abort', cancel, { once: true });
    });
  }
}

/** grpc-js' own words for a connection that failed or broke, as opposed to a status the runtime sent. */
const CONNECTION_FAILURE =
  /No connection established|Connection dropped|Stream refused|Write (error|failed)|Received HTTP status code|Subchannel not ready|Channel closed|ECONNRESET|ETIMEDOUT|EPIPE|GOAWAY|socket closed|stream removed|RST_STREAM/i;

/**
 * A failed call as a CriError; connection failures get a reason a person can
 * act on instead of grpc-js' text. An UNAVAILABLE the runtime answered itself
 * over a working connection (`connected`), e.g. about a registry, is not an
 * outage of the runtime and keeps its words.
 */
function criError(rpc: string, error: ServiceError, connected: boolean): CriError {
  const details = error.details || error.message;
  if (error.code === status.UNAVAILABLE && connected && !CONNECTION_FAILURE.test(details)) {
    return new CriError(rpc, status.UNAVAILABLE, details, false);
  }
  // containerd's CRI answers UNKNOWN "server is not initialized yet" for a while after it starts.
  if (error.code === status.UNAVAILABLE || /server is not initialized yet/.test(details)) {
    return new CriError(rpc, status.UNAVAILABLE, unreachableReason(details));
  }
  return new CriError(rpc, error.code, details);
}
