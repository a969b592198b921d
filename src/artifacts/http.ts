// Downloads an http(s) artifact with Node's built-in fetch: redirects are
// followed (fetch's limit of 20), and transient failures (5xx, 429, a refused
// or dropped connection) are retried with exponential backoff, honouring a
// short Retry-After. The caller's signal bounds the whole download, retries
// included (--artifact-fetch-timeout, and Delete).
import { setTimeout as sleep } from 'node:timers/promises';
import { ArtifactError } from './errors.js';
import { type Written, writeLimited } from './sink.js';
import type { Algorithm } from './source.js';

export interface HttpOptions {
  headers: Record<string, string>;
  maxBytes: number;
  signal: AbortSignal;
  algorithm?: Algorithm;
  /** Retries after the first attempt; default 3. */
  retries?: number;
  /** First backoff; doubles per retry. Default 500 ms. */
  backoffMs?: number;
}

/** Longest Retry-After honoured; a server asking for more gets the usual backoff. */
const MAX_RETRY_AFTER_MS = 10_000;
/** Network errors that say nothing about the artifact: the same request may well work next time. */
const TRANSIENT_CODES = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'EPIPE',
  'ETIMEDOUT',
  'EAI_AGAIN',
  'ENETUNREACH',
  'EHOSTUNREACH',
  'UND_ERR_SOCKET',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
]);

export async function downloadHttp(url: URL, path: string, options: HttpOptions): Promise<Written> {
  const retries = options.retries ?? 3;
  const backoffMs = options.backoffMs ?? 500;
  for (let attempt = 0; ; attempt++) {
    try {
      return await attemptDownload(url, path, options);
    } catch (error) {
      options.signal.throwIfAborted();
      const failure = error instanceof ArtifactError ? error : networkError(url, error);
      if (!failure.transient || attempt >= retries) {
        if (failure.transient) throw new ArtifactError(`${failure.message} (gave up after ${attempt + 1} attempts)`, { cause: failure });
        throw failure;
      }
      const retryAfter = failure.cause instanceof RetryAfter ? failure.cause.ms : undefined;
      await sleep(retryAfter ?? backoffMs * 2 ** attempt, undefined, { signal: options.signal });
    }
  }
}

async function attemptDownload(url: URL, path: string, options: HttpOptions): Promise<Written> {
  const response = await fetch(url, { headers: options.headers, signal: options.signal, redirect: 'follow' });
  if (!response.ok) {
    await response.body?.cancel().catch(() => undefined);
    const status = `${response.status}${response.statusText ? ` ${response.statusText}` : ''}`;
    const transient = response.status >= 500 || response.status === 429;
    const retryAfter = parseRetryAfter(response.headers.get('retry-after'));
    throw new ArtifactError(`GET ${redact(response.url || url)} answered HTTP ${status}`, {
      transient,
      ...(retryAfter !== undefined ? { cause: new RetryAfter(retryAfter) } : {}),
    });
  }
  const length = Number(response.headers.get('content-length') ?? Number.NaN);
  if (length > options.maxBytes) {
    await response.body?.cancel().catch(() => undefined);
    throw new ArtifactError(`GET ${redact(url)} announces ${length} bytes, more than ${options.maxBytes} (--artifact-max-bytes)`);
  }
  if (!response.body) throw new ArtifactError(`GET ${redact(url)} answered without a body`);
  return writeLimited(response.body, path, options.maxBytes, `GET ${redact(url)}`, options.algorithm);
}

class RetryAfter extends Error {
  constructor(readonly ms: number) {
    super(`retry after ${ms} ms`);
  }
}

function parseRetryAfter(value: string | null): number | undefined {
  if (value === null || !/^\d+$/.test(value.trim())) return undefined;
  const ms = Number(value.trim()) * 1000;
  return ms <= MAX_RETRY_AFTER_MS ? ms : undefined;
}

/** A fetch that failed below HTTP: transient when the network, not the request, is to blame. */
function networkError(url: URL, error: unknown): ArtifactError {
  const cause = error instanceof Error && error.cause instanceof Error ? error.cause : error;
  const code = typeof cause === 'object' && cause !== null && 'code' in cause ? String(cause.code) : '';
  const text = cause instanceof Error ? cause.message : String(cause);
  // A body cut short mid-transfer surfaces as "terminated" with the socket error as its cause.
  const transient = TRANSIENT_CODES.has(code) || (error instanceof Error && error.message === 'terminated');
  return new ArtifactError(`GET ${redact(url)} failed: ${text}${code && !text.includes(code) ? ` (${code})` : ''}`, { transient, cause: error });
}

/** The URL without its query, which may carry a signed token. */
function redact(url: URL | string): string {
  const parsed = typeof url === 'string' ? new URL(url) : url;
  return `${parsed.origin}${parsed.pathname}${parsed.search ? '?…' : ''}`;
}
