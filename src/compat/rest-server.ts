// The original task-executor's REST API, served from the same manager as the
// gRPC API: a thin adapter with one error -> HTTP status mapping. Routes:
//   POST /tasks, GET /tasks/{name}, DELETE /tasks/{name}, POST /setTasks,
//   GET /getTasks, GET /health
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import { TaskError, type TaskErrorKind, invalidArgument } from '../errors.js';
import type { TaskManager } from '../manager/task-manager.js';
import { splitHostPort } from '../util/host-port.js';
import { bearerTokenMatches, type Security, UNAUTHENTICATED_MESSAGE } from '../security.js';
import { desiredFromJson, type Json, taskToJson } from './original-json.js';

export const MAX_BODY_BYTES = 4 * 1024 * 1024;

export const HTTP_STATUS: Record<TaskErrorKind, number> = {
  InvalidArgument: 400,
  NotFound: 404,
  AlreadyExists: 409,
  FailedPrecondition: 409,
  ResourceExhausted: 429,
  Unavailable: 503,
  Internal: 500,
};

const STATUS_TEXT: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  404: 'Not Found',
  405: 'Method Not Allowed',
  409: 'Conflict',
  413: 'Request Entity Too Large',
  429: 'Too Many Requests',
  500: 'Internal Server Error',
  503: 'Service Unavailable',
};

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

interface Route {
  pattern: RegExp;
  methods: Record<string, (manager: TaskManager, body: () => Promise<unknown>, name: string) => Promise<[number, Json | undefined]>>;
}

const ROUTES: Route[] = [
  {
    pattern: /^\/tasks$/,
    methods: {
      POST: async (manager, body) => {
        const task = desiredFromJson(await body());
        if (task.name === '') throw invalidArgument('task name is required');
        return [201, taskToJson(await manager.create(task.name, task.spec))];
      },
    },
  },
  {
    pattern: /^\/tasks\/([^/]+)$/,
    methods: {
      GET: async (manager, _body, name) => [200, taskToJson(manager.get(name))],
      DELETE: async (manager, _body, name) => {
        await manager.delete(name);
        return [204, undefined];
      },
    },
  },
  {
    pattern: /^\/setTasks$/,
    methods: {
      POST: async (manager, body) => {
        const parsed = await body();
        // The original treats a literal null as "no tasks".
        if (parsed !== null && !Array.isArray(parsed)) throw invalidArgument('request body must be a JSON array of tasks');
        const tasks = await manager.setTasks((parsed ?? []).map(desiredFromJson));
        return [200, tasks.map(taskToJson)];
      },
    },
  },
  { pattern: /^\/getTasks$/, methods: { GET: async (manager) => [200, manager.list().map(taskToJson)] } },
  { pattern: /^\/health$/, methods: { GET: async () => [200, { status: 'healthy' }] } },
];

export interface RunningRestServer {
  address: string;
  close(): Promise<void>;
}

export async function startRestServer(options: {
  listenAddr: string;
  manager: TaskManager;
  log: Logger;
  security: Security;
}): Promise<RunningRestServer> {
  const { manager, log, security } = options;
  const listener = (request: IncomingMessage, response: ServerResponse) => {
    if (security.token && !isExempt(request) && !bearerTokenMatches(request.headers.authorization, security.token)) {
      send(response, 401, { code: 'Unauthorized', message: UNAUTHENTICATED_MESSAGE });
      request.resume();
      return;
    }
    void handle(manager, log, request, response);
  };
  const tls = security.tls;
  const server: Server = tls
    ? createHttpsServer({ cert: tls.cert, key: tls.key, ca: tls.clientCa, requestCert: !!tls.clientCa, rejectUnauthorized: !!tls.clientCa }, listener)
    : createServer(listener);
  server.requestTimeout = 30_000;
  const [host, port] = splitHostPort(options.listenAddr, '--http-listen-addr', '0.0.0.0:5758');
  await new Promise<void>((resolve, reject) => {
    server.once('error', (error) => reject(new Error(`cannot listen on ${options.listenAddr}: ${error.message}`)));
    server.listen(port, host, resolve);
  });
  const bound = server.address() as AddressInfo;
  return {
    address: `${host.includes(':') ? `[${host}]` : host}:${bound.port}`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

async function handle(manager: TaskManager, log: Logger, request: IncomingMessage, response: ServerResponse): Promise<void> {
  const path = new URL(request.url ?? '/', 'http://localhost').pathname;
  const route = ROUTES.find((r) => r.pattern.test(path));
  if (!route) {
    response.writeHead(404, { 'Content-Type': 'text/plain; charset=utf-8' }).end('404 page not found\n');
    request.resume();
    return;
  }
  const handler = route.methods[request.method ?? ''];
  if (!handler) {
    response.writeHead(405, { Allow: Object.keys(route.methods).join(', '), 'Content-Type': 'text/plain; charset=utf-8' });
    response.end('Method Not Allowed\n');
    request.resume();
    return;
  }
  const name = decodeURIComponent(route.pattern.exec(path)?.[1] ?? '');
  try {
    const [status, body] = await handler(manager, () => readJson(request), name);
    if (body === undefined) response.writeHead(status).end();
    else send(response, status, body);
  } catch (error) {
    const status = error instanceof HttpError ? error.status : error instanceof TaskError ? HTTP_STATUS[error.kind] : 500;
    if (status === 500) log.error({ err: error, path }, 'unexpected error while handling a REST request');
    const message = error instanceof Error ? error.message : String(error);
    send(response, status, { code: STATUS_TEXT[status] ?? String(status), message });
    request.resume();
  }
}

/** /health stays open so that probes need no secret, as with grpc.health.v1. */
const isExempt = (request: IncomingMessage) => request.method === 'GET' && request.url === '/health';

function send(response: ServerResponse, status: number, body: Json): void {
  response.writeHead(status, { 'Content-Type': 'application/json' }).end(JSON.stringify(body));
}

async function readJson(request: IncomingMessage): Promise<unknown> {
  const declared = Number(request.headers['content-length'] ?? 0);
  if (declared > MAX_BODY_BYTES) throw new HttpError(413, `request body is larger than ${MAX_BODY_BYTES} bytes`);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of request as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) throw new HttpError(413, `request body is larger than ${MAX_BODY_BYTES} bytes`);
    chunks.push(chunk);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  if (text.trim() === '') throw new HttpError(400, 'invalid request body: empty body, expected JSON');
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new HttpError(400, `invalid request body: ${(error as Error).message}`);
  }
}
