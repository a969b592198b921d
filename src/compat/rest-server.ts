// The original task-executor's REST API, served from the same manager as the
// gRPC API: a thin adapter with one error -> HTTP status mapping. Routes:
//   POST /tasks, GET /tasks/{name}, DELETE /tasks/{name}, POST /setTasks,
//   GET /getTasks, GET /health
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import { TaskError, type TaskErrorKind, invalidArgument } from '../errors.js';
import { decodeUtf8 } from '../logs/utf8.js';
import type { TaskManager } from '../manager/task-manager.js';
import type { Security } from '../security.js';
import { decodePathSegment, HttpError, JsonText, type RunningHttpListener, sendError, sendJson, startHttpListener } from '../util/http-listener.js';
import { desiredFromJson, type Json, taskToJson, tasksJsonText } from './original-json.js';

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

interface Route {
  pattern: RegExp;
  methods: Record<string, (manager: TaskManager, body: () => Promise<unknown>, name: string) => Promise<[number, Json | JsonText | undefined]>>;
}

const ROUTES: Route[] = [
  {
    pattern: /^\/tasks$/,
    methods: {
      POST: async (manager, body) => {
        const task = desiredFromJson(await body(), '');
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
        const tasks = await manager.setTasks((parsed ?? []).map((entry, i) => desiredFromJson(entry, `tasks[${i}]`)));
        return [200, new JsonText(tasksJsonText(tasks))];
      },
    },
  },
  { pattern: /^\/getTasks$/, methods: { GET: async (manager) => [200, new JsonText(tasksJsonText(manager.list()))] } },
  { pattern: /^\/health$/, methods: { GET: async () => [200, { status: 'healthy' }] } },
];

export type RunningRestServer = RunningHttpListener;

export function startRestServer(options: { listenAddr: string; manager: TaskManager; log: Logger; security: Security }): Promise<RunningRestServer> {
  const { manager, log, security } = options;
  return startHttpListener({
    listenAddr: options.listenAddr,
    flag: '--http-listen-addr',
    example: '0.0.0.0:5758',
    access: security,
    // /health stays open so that probes need no secret, as with grpc.health.v1.
    isOpen: (method, path) => method === 'GET' && path === '/health',
    log,
    handle: (request, response, path) => handle(manager, log, request, response, path),
  });
}

async function handle(manager: TaskManager, log: Logger, request: IncomingMessage, response: ServerResponse, path: string): Promise<void> {
  const route = ROUTES.find((r) => r.pattern.test(path));
  if (!route) {
    // Go's ServeMux answer, which the original's clients may match on.
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
  try {
    const segment = route.pattern.exec(path)?.[1];
    const name = segment === undefined ? '' : decodePathSegment(segment, 'the task name');
    const [status, body] = await handler(manager, () => readJson(request), name);
    if (body === undefined) response.writeHead(status).end();
    else sendJson(response, status, body);
  } catch (error) {
    if (!(error instanceof TaskError)) throw error; // HttpError and the unexpected: the listener answers
    if (error.kind === 'Internal') log.error({ err: error, path }, 'internal error while handling a REST request');
    sendError(response, HTTP_STATUS[error.kind], error.message);
    request.resume();
  }
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
  // JSON must be UTF-8 (RFC 8259); decoding leniently would turn bad bytes into U+FFFD and run the task with other arguments than sent.
  const text = decodeUtf8(Buffer.concat(chunks));
  if (text === undefined) {
    throw new HttpError(400, 'invalid request body: it is not valid UTF-8; JSON must be UTF-8 text (encode every string, e.g. a command argument, as UTF-8)');
  }
  if (text.trim() === '') throw new HttpError(400, 'invalid request body: empty body, expected JSON');
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new HttpError(400, `invalid request body: ${(error as Error).message}`);
  }
}
