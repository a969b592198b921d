// A stand-in CRI runtime on a unix socket for what a real containerd cannot
// show without a registry: which AuthConfig a PullImage carries. It reports
// itself ready, has no images (ImageStatus: none), records every PullImage
// request and refuses it; every other RPC is UNIMPLEMENTED (grpc-js' answer
// for a method without a handler).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type sendUnaryData, Server, ServerCredentials, type ServerUnaryCall, status } from '@grpc/grpc-js';
import {
  ImageServiceService,
  type ImageStatusRequest,
  ImageStatusResponse,
  type PullImageRequest,
  type PullImageResponse,
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
  /** What PullImage answers (the runtime's words in the task's failure). */
  pullError: string;
  close(): Promise<void>;
}

export async function startFakeCri(): Promise<FakeCri> {
  const dir = mkdtempSync(join(tmpdir(), 'te-fake-cri-'));
  const socket = join(dir, 'cri.sock');
  const server = new Server();
  const fake: FakeCri = { socket, pulls: [], pullError: 'pull access denied (fake registry)', close: async () => {} };
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
  });
  server.addService(ImageServiceService, {
    imageStatus: (_call: ServerUnaryCall<ImageStatusRequest, ImageStatusResponse>, done: sendUnaryData<ImageStatusResponse>) =>
      done(null, ImageStatusResponse.fromPartial({})),
    pullImage: (call: ServerUnaryCall<PullImageRequest, PullImageResponse>, done: sendUnaryData<PullImageResponse>) => {
      fake.pulls.push(call.request);
      done({ code: status.PERMISSION_DENIED, details: fake.pullError });
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
