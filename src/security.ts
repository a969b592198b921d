// Access control shared by the gRPC, REST and metrics listeners: TLS material, mutual
// TLS, and an optional bearer token. Loaded once at start, with clear errors.
import { timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { errorMessage } from './errors.js';

export interface Security {
  tls?: { cert: Buffer; key: Buffer; clientCa?: Buffer };
  token?: string;
  /** Permission bits for a unix socket listener. */
  unixSocketMode: number;
}

/** What an HTTP listener enforces: TLS (mutual when a client CA is set) and an optional bearer token. */
export type HttpAccess = Pick<Security, 'tls' | 'token'>;

/**
 * --metrics-auth: "api" puts /metrics behind the API's TLS and token (a scrape
 * reveals task names and counts); "none" serves it in plain HTTP to anyone who
 * can reach the port, which must be asked for explicitly.
 */
export const METRICS_AUTH_MODES = ['api', 'none'] as const;
export type MetricsAuth = (typeof METRICS_AUTH_MODES)[number];

export function metricsAccess(security: Security, mode: MetricsAuth): HttpAccess {
  return mode === 'none' ? {} : { tls: security.tls, token: security.token };
}

/** For the start-up log: what a client of a listener must present. */
export function describeAccess(access: HttpAccess): string {
  const transport = !access.tls ? 'plain HTTP' : access.tls.clientCa ? 'HTTPS with client certificates (mutual TLS)' : 'HTTPS';
  return `${transport}, ${access.token ? 'bearer token required' : 'no token'}`;
}

export interface SecurityFlags {
  tlsCertFile: string;
  tlsKeyFile: string;
  tlsClientCaFile: string;
  authTokenFile: string;
  unixSocketMode: number;
}

export function loadSecurity(flags: SecurityFlags): Security {
  const read = (flag: string, path: string): Buffer => {
    try {
      return readFileSync(path);
    } catch (error) {
      throw new Error(`${flag} ${path}: ${errorMessage(error)}`);
    }
  };
  if (Boolean(flags.tlsCertFile) !== Boolean(flags.tlsKeyFile)) {
    throw new Error('--tls-cert-file and --tls-key-file go together: give both or neither');
  }
  if (flags.tlsClientCaFile && !flags.tlsCertFile) {
    throw new Error('--tls-client-ca-file (mutual TLS) needs --tls-cert-file and --tls-key-file');
  }
  const security: Security = { unixSocketMode: flags.unixSocketMode };
  if (flags.tlsCertFile) {
    security.tls = {
      cert: read('--tls-cert-file', flags.tlsCertFile),
      key: read('--tls-key-file', flags.tlsKeyFile),
      ...(flags.tlsClientCaFile ? { clientCa: read('--tls-client-ca-file', flags.tlsClientCaFile) } : {}),
    };
  }
  if (flags.authTokenFile) {
    const token = read('--auth-token-file', flags.authTokenFile).toString('utf8').trim();
    if (token.length < 16) throw new Error(`--auth-token-file ${flags.authTokenFile}: the token must have at least 16 characters`);
    security.token = token;
  }
  return security;
}

/**
 * Constant-time check of an `authorization: Bearer <token>` value; the scheme is
 * case-insensitive (RFC 7235, 2.1), as clients that send `bearer` expect.
 */
export function bearerTokenMatches(header: unknown, token: string): boolean {
  if (typeof header !== 'string') return false;
  const match = /^bearer +(.+)$/i.exec(header.trim());
  if (!match) return false;
  const given = Buffer.from(match[1]!);
  const expected = Buffer.from(token);
  return given.length === expected.length && timingSafeEqual(given, expected);
}

export const UNAUTHENTICATED_MESSAGE = 'missing or wrong bearer token: send the header "authorization: Bearer <token>"';

/** True when callers are authenticated (token or client certificates). */
export function isAuthenticated(security: Security): boolean {
  return security.token !== undefined || security.tls?.clientCa !== undefined;
}
