// A client in its own process, as a controller is: issues one RPC back to back
// for a while and prints how many it completed per second. Used by
// control-path.ts so that the client's decoding does not count as the
// executor's time. Usage: rps-client.ts <address> <seconds> get <name> | list <pageSize>
// | list-compact <pageSize> (List with TASK_VIEW_COMPACT) | list-raw <pageSize> (full, not decoded)
// | rest <url> (GET of the REST drop-in's /getTasks over a keep-alive connection, JSON.parse of the body)
import { Agent, get } from 'node:http';
import { Client, credentials, type ServiceError } from '@grpc/grpc-js';
import { ListRequest, TaskExecutorServiceClient, TaskView } from '../../gen/taskexecutor/v1/task_executor_service.js';

const [address, seconds, method, arg] = process.argv.slice(2);
if (!address || !seconds || !['get', 'list', 'list-compact', 'list-raw', 'rest'].includes(method ?? '') || !arg) {
  console.error('usage: rps-client.ts <address> <seconds> get <name> | list <pageSize> | list-compact <pageSize> | list-raw <pageSize> | rest <url>');
  process.exit(2);
}
const options = { 'grpc.max_receive_message_length': 64 << 20 };
const client = new TaskExecutorServiceClient(address, credentials.createInsecure(), options);
// list-raw: the same List call with the reply left undecoded, to measure the executor rather than this client.
const raw = new Client(address, credentials.createInsecure(), options);
const LIST_PATH = '/taskexecutor.v1.TaskExecutorService/List';
const encodeList = (request: ListRequest) => Buffer.from(ListRequest.encode(request).finish());
const agent = new Agent({ keepAlive: true, maxSockets: 1 });
const getJson = (url: string) =>
  new Promise<void>((resolve, reject) => {
    get(url, { agent }, (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('end', () => {
        if (response.statusCode !== 200) return reject(new Error(`GET ${url}: ${response.statusCode}`));
        JSON.parse(Buffer.concat(chunks).toString('utf8'));
        resolve();
      });
      response.on('error', reject);
    }).on('error', reject);
  });
const call = () =>
  new Promise<void>((resolve, reject) => {
    if (method === 'rest') return void getJson(arg).then(resolve, reject);
    const done = (error: ServiceError | null) => (error ? reject(error) : resolve());
    if (method === 'get') client.get({ name: arg }, done);
    else if (method === 'list') client.list({ pageSize: Number(arg) }, done);
    else if (method === 'list-compact') client.list({ pageSize: Number(arg), view: TaskView.TASK_VIEW_COMPACT }, done);
    else raw.makeUnaryRequest(LIST_PATH, encodeList, (bytes: Buffer) => bytes, { pageSize: Number(arg) }, done);
  });

for (let i = 0; i < 50; i++) await call(); // warm-up
let count = 0;
const start = performance.now();
const end = start + Number(seconds) * 1000;
while (performance.now() < end) {
  await call();
  count++;
}
console.log(JSON.stringify({ rps: count / ((performance.now() - start) / 1000) }));
client.close();
raw.close();
agent.destroy();
