// The floor of a followed line's gRPC leg: a bare grpc-js server of the same
// service, in its own process like the executor, whose Logs writes one
// batched message with one line (the wall-clock time in ns, as `date +%s%N`
// prints it) every GAP_MS, LINES times, from a timer. No files, no inotify, no
// src/: what grpc-js and Node's HTTP/2 cost on this machine between a
// call.write and the client's 'data'. Prints the port it listens on.
import { Server, ServerCredentials, type ServerWritableStream } from '@grpc/grpc-js';
import { LogStream, type LogsRequest, LogsResponse, TaskExecutorServiceService } from '../../gen/taskexecutor/v1/task_executor_service.js';
import { wallNs } from './wall-clock.js';

const LINES = Number(process.env.LINES ?? 200);
const GAP_MS = Number(process.env.GAP_MS ?? 20);

const server = new Server();
server.addService(TaskExecutorServiceService, {
  logs(call: ServerWritableStream<LogsRequest, LogsResponse>) {
    let sent = 0;
    const timer = setInterval(() => {
      const text = String(wallNs());
      call.write(LogsResponse.fromPartial({ entries: [{ stream: LogStream.LOG_STREAM_STDOUT, content: { $case: 'text', value: text } }] }));
      if (++sent === LINES) {
        clearInterval(timer);
        call.end();
      }
    }, GAP_MS);
    call.on('cancelled', () => clearInterval(timer));
  },
} as never);
const port = await new Promise<number>((resolve, reject) =>
  server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (error, bound) => (error ? reject(error) : resolve(bound))),
);
console.log(port);
