// A client that opens Logs streams and never reads them, at the HTTP/2 level:
// its streams stay paused, so once the executor has filled the stream's flow
// control window it can send nothing more. (A grpc-js client that attaches no
// 'data' listener is not that: it goes on receiving into its own buffers.)
import { type ClientHttp2Session, type ClientHttp2Stream, connect, constants } from 'node:http2';
import { LogsRequest } from '../../gen/taskexecutor/v1/task_executor_service.js';

export interface StuckStream {
  stream: ClientHttp2Stream;
  /** The grpc-status of the response headers or trailers, once there (a refused call ends at once). */
  status: Promise<{ code: number; message: string }>;
}

/** `address`: host:port of the executor's plaintext gRPC listener. */
export class StuckClient {
  readonly session: ClientHttp2Session;

  constructor(address: string) {
    // A small window per stream: what the executor can push before it must wait.
    this.session = connect(`http://${address}`, { settings: { initialWindowSize: 65_535 } });
    this.session.on('error', () => {});
  }

  /** Opens a Logs call with `request` and never reads its messages. */
  logs(request: Partial<LogsRequest>): StuckStream {
    const body = LogsRequest.encode(LogsRequest.fromPartial(request)).finish();
    const frame = Buffer.alloc(5 + body.length);
    frame.writeUInt32BE(body.length, 1);
    frame.set(body, 5);
    const stream = this.session.request({
      [constants.HTTP2_HEADER_METHOD]: 'POST',
      [constants.HTTP2_HEADER_PATH]: '/taskexecutor.v1.TaskExecutorService/Logs',
      'content-type': 'application/grpc',
      te: 'trailers',
    });
    stream.on('error', () => {});
    stream.pause(); // never read: no 'data' listener, no resume
    stream.end(frame);
    const status = new Promise<{ code: number; message: string }>((resolve) => {
      const take = (headers: Record<string, unknown>) => {
        if (headers['grpc-status'] !== undefined) resolve({ code: Number(headers['grpc-status']), message: decodeURIComponent(String(headers['grpc-message'] ?? '')) });
      };
      stream.on('response', take);
      stream.on('trailers', take);
    });
    return { stream, status };
  }

  close(): void {
    this.session.destroy();
  }
}
