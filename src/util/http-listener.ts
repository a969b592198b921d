// One way to serve HTTP(S) for the REST API and /metrics, so that both get the
// same TLS, bearer-token check and, above all, the same guarantee: no request
// can end the process. A malformed request gets a 400/404 naming what is wrong,
// and an unexpected throw in a handler (synchronous or not) becomes a logged 500.
import { createServer, type IncomingMessage, type Server, type ServerResponse, STATUS_CODES } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import type { Logger } from 'pino';
import { bearerTokenMatches, type HttpAccess, UNAUTHENTICATED_MESSAGE } from '../security.js';
import { splitHostPort } from './host-port.js';

/** Thrown by handlers for an answer other than 2xx; anything else thrown is a 500. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

// The original's error bodies carry Go's http.StatusText, which differs from Node's for 413.
const STATUS_TEXT: Record<number, string> = { 413: 'Request Entity Too Large' };
export const statusText = (status: number): string => STATUS_TEXT[status] ?? STATUS_CODES[status] ?? String(status);

/** The original's error body: {"code": <status text>, "message": ...}, always JSON. */
export function sendError(response: ServerResponse, status: number, message: string, headers: Record<string, string> = {}): void {
  sendJson(response, status, { code: statusText(status), message }, headers);
}

/** A body that is JSON text already (sendJson sends it as it is). */
export class JsonText {
  constructor(readonly text: string) {}
}

export function sendJson(response: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = body instanceof JsonText ? body.text : JSON.stringify(body);
  response.writeHead(status, { ...headers, 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) }).end(text);
}

/**
 * The path of a request target, undecoded, or undefined when the target is not
 * an absolute path. Never throws: `new URL("//", base)` does, and it once took
 * the whole executor down.
 */
export function requestPath(target: string | undefined): string | undefined {
  // absolute-form ("GET http://host/path"), which HTTP/1.1 servers must accept
  const withoutAuthority = (target ?? '').replace(/^[a-z][a-z0-9+.-]*:\/\/[^/?#]*/i, '');
  const path = withoutAuthority.split(/[?#]/, 1)[0]!;
  return path.startsWith('/') ? path : undefined;
}

/** One percent-encoded path segment, decoded; a malformed escape is the client's error (400). */
export function decodePathSegment(segment: string, what: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    throw new HttpError(
      400,
      `${what} ${JSON.stringify(segment.slice(0, 200))} in the path is not valid percent-encoding (each % must start an escape of ` +
        'valid UTF-8, e.g. %C3%A9); encode the value with encodeURIComponent',
    );
  }
}

export type HttpHandler = (request: IncomingMessage, response: ServerResponse, path: string) => void | Promise<void>;

export interface HttpListenerOptions {
  listenAddr: string;
  /** The flag that sets listenAddr and an example value, for the error about a bad address. */
  flag: string;
  example: string;
  access: HttpAccess;
  /** Requests served without the bearer token (health probes). */
  isOpen?: (method: string, path: string) => boolean;
  log: Logger;
  handle: HttpHandler;
  /** How long a new connection may send nothing before it is closed; default FIRST_REQUEST_TIMEOUT_MS. */
  firstRequestTimeoutMs?: number;
}

/**
 * Node's headersTimeout starts only with a request's first byte, so a
 * connection that never sends one (a client that vanished, a TCP check that
 * never closes) held its socket and fd for as long as the executor ran.
 */
export const FIRST_REQUEST_TIMEOUT_MS = 60_000;

export interface RunningHttpListener {
  /** host:port actually bound. */
  address: string;
  close(): Promise<void>;
}

export async function startHttpListener(options: HttpListenerOptions): Promise<RunningHttpListener> {
  const { access, log } = options;
  const listener = (request: IncomingMessage, response: ServerResponse) => {
    // A request came: from here Node's own timeouts (request, keep-alive) apply.
    request.socket.setTimeout(0);
    const fail = (error: unknown) => answerFailure(request, response, error, log);
    try {
      const path = requestPath(request.url);
      if (path === undefined) {
        throw new HttpError(400, `malformed request target ${JSON.stringify((request.url ?? '').slice(0, 200))}: expected an absolute path such as /health`);
      }
      const method = request.method ?? '';
      if (access.token && !options.isOpen?.(method, path) && !bearerTokenMatches(request.headers.authorization, access.token)) {
        throw new HttpError(401, UNAUTHENTICATED_MESSAGE, { 'WWW-Authenticate': 'Bearer' });
      }
      Promise.resolve(options.handle(request, response, path)).catch(fail);
    } catch (error) {
      fail(error);
    }
  };
  const tls = access.tls;
  const server: Server = tls
    ? createHttpsServer({ cert: tls.cert, key: tls.key, ca: tls.clientCa, requestCert: !!tls.clientCa, rejectUnauthorized: !!tls.clientCa }, listener)
    : createServer(listener);
  server.requestTimeout = 30_000;
  server.on('clientError', answerClientError);
  // Node destroys a socket whose timeout passes (the server has no 'timeout' listener). With TLS, the
  // socket requests arrive on is the TLS one (a handshake that never ends has TLS's own 120 s timeout).
  const idleUntilFirstRequest = (socket: Socket) => socket.setTimeout(options.firstRequestTimeoutMs ?? FIRST_REQUEST_TIMEOUT_MS);
  server.on(tls ? 'secureConnection' : 'connection', idleUntilFirstRequest);
  const [host, port] = splitHostPort(options.listenAddr, options.flag, options.example);
  await new Promise<void>((resolve, reject) => {
    server.once('error', (error) => reject(new Error(`cannot listen on ${options.listenAddr}: ${error.message}`)));
    server.listen(port, host, resolve);
  });
  const bound = server.address() as AddressInfo;
  return {
    address: `${host.includes(':') ? `[${host}]` : host}:${bound.port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
      }),
  };
}

function answerFailure(request: IncomingMessage, response: ServerResponse, error: unknown, log: Logger): void {
  const known = error instanceof HttpError;
  if (!known) log.error({ err: error, method: request.method, url: request.url?.slice(0, 200) }, 'unexpected error while handling an HTTP request');
  // The body may still be arriving; drain it so that the answer reaches the client.
  request.resume();
  if (response.headersSent) {
    response.destroy();
    return;
  }
  if (known) sendError(response, error.status, error.message, error.headers);
  else sendError(response, 500, 'internal error while handling the request; the executor log has the details');
}

/**
 * A request Node cannot even parse (bad request line, header overflow...). With
 * a 'clientError' listener Node leaves the answer to us; we give the usual
 * status, with a body saying what was wrong, and close the connection.
 */
function answerClientError(error: NodeJS.ErrnoException, socket: Socket): void {
  // As Node's own default: never write into a response that has already begun (it would corrupt it).
  const inFlight = (socket as Socket & { _httpMessage?: ServerResponse })._httpMessage;
  if (error.code === 'ECONNRESET' || !socket.writable || inFlight?.headersSent) {
    socket.destroy();
    return;
  }
  const status = error.code === 'HPE_HEADER_OVERFLOW' ? 431 : error.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
  const body = JSON.stringify({ code: statusText(status), message: `malformed HTTP request: ${error.message}` });
  socket.end(
    `HTTP/1.1 ${status} ${statusText(status)}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n` +
      `Connection: close\r\n\r\n${body}`,
  );
}
