// A stand-in CRI runtime on a unix socket for what a real containerd cannot
// show without a registry: which AuthConfig a PullImage carries, and pulls
// that fail as a registry in trouble makes them fail. It reports itself
// ready, has no images (ImageStatus: none), records every PullImage request
// and answers it by the image's script (scriptPulls), else refuses it; it
// lists no containers or sandboxes, so a task's release finds nothing to
// remove; every other RPC is UNIMPLEMENTED (grpc-js' answer for a method
// without a handler), so a task whose pull succeeds fails at RunPodSandbox.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type sendUnaryData, Server, ServerCredentials, type ServerUnaryCall, status } from '@grpc/grpc-js';
import {
  ImageServiceService,
  type ImageStatusRequest,
  ImageStatusResponse,
  type ListContainersRequest,
  ListContainersResponse,
  type ListPodSandboxRequest,
  ListPodSandboxResponse,
  type PullImageRequest,
  PullImageResponse,
  RuntimeServiceService,
  type StatusRequest,
  StatusResponse,
  type VersionRequest,
  VersionResponse,
} from '../../gen/cri/runtime/v1/api.js';

export interface FakeCri {
  socket: string;
  /** Every PullImage request received, in order. */
  pulls: PullImageRequest[];
  /** When each PullImage arrived (Date.now()), beside `pulls`. */
  pullTimes: number[];
  /** What PullImage answers an image without a script (the runtime's words in the task's failure). */
  pullError: string;
  /**
   * Makes the next `times` PullImage calls for `image` fail with `code` and
   * `details` (Infinity: every one); once they are used up, pulls of it
   * succeed, unless `afterwards` is 'refuse' (answered like an unscripted image).
   */
  scriptPulls(image: string, script: { times: number; code: status; details: string; afterwards?: 'succeed' | 'refuse' }): void;
  /** The PullImage requests received for one image. */
  pullsOf(image: string): PullImageRequest[];
  close(): Promise<void>;
}

interface PullScript {
  times: number;
  code: status;
  details: string;
  afterwards: 'succeed' | 'refuse';
}

export async function startFakeCri(): Promise<FakeCri> {
  const dir = mkdtempSync(join(tmpdir(), 'te-fake-cri-'));
  const socket = join(dir, 'cri.sock');
  const server = new Server();
  const scripts = new Map<string, PullScript>();
  const fake: FakeCri = {
    socket,
    pulls: [],
    pullTimes: [],
    pullError: 'pull access denied (fake registry)',
    scriptPulls: (image, script) => scripts.set(image, { afterwards: 'succeed', ...script }),
    pullsOf: (image) => fake.pulls.filter((request) => request.image?.image === image),
    close: async () => {},
  };
  const answerPull = (image: string, done: sendUnaryData<PullImageResponse>) => {
    const script = scripts.get(image);
    if (script && script.times > 0) {
      script.times--;
      return done({ code: script.code, details: script.details });
    }
    if (script?.afterwards === 'succeed') return done(null, PullImageResponse.fromPartial({ imageRef: `sha256:fake-${image}` }));
    done({ code: status.PERMISSION_DENIED, details: fake.pullError });
  };
  server.addService(RuntimeServiceService, {
    version: (_call: ServerUnaryCall<VersionRequest, VersionResponse>, done: sendUnaryData<VersionResponse>) =>
      done(null, VersionResponse.fromPartial({ version: '0.1.0', runtimeName: 'fake-cri', runtimeVersion: '0', runtimeApiVersion: 'v1' })),
    status: (_call: ServerUnaryCall<StatusRequest, StatusResponse>, done: sendUnaryData<StatusResponse>) =>
      done(
        null,
        StatusResponse.fromPartial({
          status: { conditions: [{ type: 'RuntimeReady', status: true }, { type: 'NetworkReady', status: true }] },
        }),
      ),
    listContainers: (_call: ServerUnaryCall<ListContainersRequest, ListContainersResponse>, done: sendUnaryData<ListContainersResponse>) =>
      done(null, ListContainersResponse.fromPartial({})),
    listPodSandbox: (_call: ServerUnaryCall<ListPodSandboxRequest, ListPodSandboxResponse>, done: sendUnaryData<ListPodSandboxResponse>) =>
      done(null, ListPodSandboxResponse.fromPartial({})),
  });
  server.addService(ImageServiceService, {
    imageStatus: (_call: ServerUnaryCall<ImageStatusRequest, ImageStatusResponse>, done: sendUnaryData<ImageStatusResponse>) =>
      done(null, ImageStatusResponse.fromPartial({})),
    pullImage: (call: ServerUnaryCall<PullImageRequest, PullImageResponse>, done: sendUnaryData<PullImageResponse>) => {
      fake.pulls.push(call.request);
      fake.pullTimes.push(Date.now());
      answerPull(call.request.image?.image ?? '', done);
    },
  });
  await new Promise<void>((resolve, reject) =>
    server.bindAsync(`unix://${socket}`, ServerCredentials.createInsecure(), (error) => (error ? reject(error) : resolve())),
  );
  fake.close = async () => {
    await new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
    rmSync(dir, { recursive: true, force: true });
  };
  return fake;
}
