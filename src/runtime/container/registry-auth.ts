// Registry credentials for image pulls, read from a Docker config.json the
// way the kubelet reads one (pkg/credentialprovider): `auths` keyed by
// registry (with or without scheme, "index.docker.io/v1/" and friends meaning
// docker.io, optionally a repository path prefix), each with `auth`
// (base64 "user:pass") or `username`/`password`, and/or `identitytoken` /
// `registrytoken`. The credentials for an image go to the runtime in the CRI
// PullImage's AuthConfig; they are never logged, and no error message built
// here carries one.
import { readFileSync } from 'node:fs';
import type { AuthConfig } from '../../../gen/cri/runtime/v1/api.js';
import { errnoOf } from '../../util/errno.js';

/** A config.json that cannot be used: the message names the file and the problem, never a secret. */
export class RegistryAuthError extends Error {
  constructor(file: string, problem: string) {
    super(`image pull config ${file}: ${problem}`);
    this.name = 'RegistryAuthError';
  }
}

const DOCKER_HUB = 'docker.io';
/** Every spelling of Docker Hub in a config.json key or an image name (the kubelet's list). */
const DOCKER_HUB_ALIASES = new Set(['docker.io', 'index.docker.io', 'registry-1.docker.io']);

/** A key of `auths`: where it applies. */
interface Scope {
  host: string;
  /** Repository path prefix ("" for the whole registry), without leading or trailing "/". */
  path: string;
}

interface Entry extends Scope {
  auth: AuthConfig;
}

/**
 * Normalises a config.json key: "https://index.docker.io/v1/" -> docker.io,
 * "http://registry:5000" -> registry:5000, "quay.io/team/" -> quay.io + "team".
 * The "/v1/" and "/v2/" suffixes are API versions Docker writes, not paths.
 */
export function parseRegistryKey(key: string): Scope | undefined {
  const rest = key.trim().replace(/^[a-z][a-z0-9+.-]*:\/\//i, '');
  const slash = rest.indexOf('/');
  const host = (slash < 0 ? rest : rest.slice(0, slash)).toLowerCase();
  let path = slash < 0 ? '' : rest.slice(slash + 1);
  path = path.replace(/\/+$/, '').replace(/^v[12]$/, '');
  if (host === '' || /[\s@]/.test(host)) return undefined;
  return { host: DOCKER_HUB_ALIASES.has(host) ? DOCKER_HUB : host, path };
}

/**
 * The registry host and repository path of an image reference, as Docker
 * resolves it: the first component is a host when it has a "." or ":" or is
 * "localhost"; otherwise the image is on Docker Hub ("busybox" is
 * docker.io/library/busybox).
 */
export function imageLocation(image: string): Scope {
  const name = image.replace(/@.*$/, '');
  const slash = name.indexOf('/');
  const first = slash < 0 ? '' : name.slice(0, slash);
  let host = DOCKER_HUB;
  let repository = name;
  if (first !== '' && (first.includes('.') || first.includes(':') || first === 'localhost')) {
    host = first.toLowerCase();
    repository = name.slice(slash + 1);
  }
  // The tag is after the last ":" of the last component (a ":" before a "/" was a port).
  repository = repository.replace(/:[^/]*$/, '');
  if (DOCKER_HUB_ALIASES.has(host)) {
    host = DOCKER_HUB;
    if (!repository.includes('/')) repository = `library/${repository}`;
  }
  return { host, path: repository };
}

export class RegistryAuth {
  private constructor(
    /** Most specific first: the longest path prefix wins, as in the kubelet's keyring. */
    private readonly entries: readonly Entry[],
  ) {}

  /** Reads and checks a Docker config.json; throws RegistryAuthError on anything it cannot use. */
  static load(file: string): RegistryAuth {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (error) {
      const code = errnoOf(error);
      throw new RegistryAuthError(file, code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : `cannot be read (${code ?? 'error'})`);
    }
    return RegistryAuth.parse(file, text);
  }

  /** `file` names the source in error messages only. */
  static parse(file: string, text: string): RegistryAuth {
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      // JSON.parse's message quotes the text around the error: it could be a secret.
      throw new RegistryAuthError(file, 'is not valid JSON');
    }
    if (!isObject(json)) throw new RegistryAuthError(file, 'is not a JSON object (expected {"auths": {...}})');
    const auths = json.auths;
    if (auths === undefined) {
      const helpers = 'credsStore' in json || 'credHelpers' in json ? ' (credential helpers, credsStore and credHelpers, are not supported)' : '';
      throw new RegistryAuthError(file, `has no "auths"${helpers}`);
    }
    if (!isObject(auths)) throw new RegistryAuthError(file, '"auths" is not an object keyed by registry');
    const entries: Entry[] = [];
    for (const [key, value] of Object.entries(auths)) {
      const where = `"auths" entry ${JSON.stringify(key)}`;
      const scope = parseRegistryKey(key);
      if (!scope) throw new RegistryAuthError(file, `${where} does not name a registry`);
      if (!isObject(value)) throw new RegistryAuthError(file, `${where} is not an object`);
      entries.push({ ...scope, auth: credentials(file, where, value) });
    }
    entries.sort((a, b) => b.path.length - a.path.length);
    return new RegistryAuth(entries);
  }

  /** The registries credentials are held for, e.g. for a log line. */
  get registries(): string[] {
    return this.entries.map((e) => (e.path ? `${e.host}/${e.path}` : e.host));
  }

  /** The credentials for pulling `image` and the registry they are for (to name in a log), or undefined to pull anonymously. */
  credentialsFor(image: string): { registry: string; auth: AuthConfig } | undefined {
    const { host, path } = imageLocation(image);
    const entry = this.entries.find((e) => e.host === host && (e.path === '' || path === e.path || path.startsWith(`${e.path}/`)));
    return entry && { registry: entry.host, auth: entry.auth };
  }

  /** The credentials for pulling `image`, or undefined to pull anonymously. */
  authFor(image: string): AuthConfig | undefined {
    return this.credentialsFor(image)?.auth;
  }
}

const STRING_FIELDS = ['auth', 'username', 'password', 'identitytoken', 'registrytoken', 'email', 'serveraddress'] as const;

function credentials(file: string, where: string, value: Record<string, unknown>): AuthConfig {
  const field = (name: (typeof STRING_FIELDS)[number]): string => {
    const v = value[name];
    if (v === undefined || v === null) return '';
    if (typeof v !== 'string') throw new RegistryAuthError(file, `${where}: "${name}" is not a string`);
    return v;
  };
  let username = field('username');
  let password = field('password');
  const encoded = field('auth');
  if (encoded !== '') {
    // Docker's own rule: "auth" wins over username/password.
    const decoded = decodeAuth(encoded);
    if (!decoded) throw new RegistryAuthError(file, `${where}: "auth" is not base64 of "username:password"`);
    [username, password] = decoded;
  }
  const identityToken = field('identitytoken');
  const registryToken = field('registrytoken');
  if (username === '' && identityToken === '' && registryToken === '') {
    throw new RegistryAuthError(file, `${where} has no credentials (expected "auth", "username" and "password", "identitytoken" or "registrytoken")`);
  }
  return {
    username,
    password,
    auth: '',
    // Empty, as the kubelet sends it. containerd (1.6 to 2.x) gives the credentials only to a
    // host equal to url.Parse(serverAddress).Host: a bare "host:port" parses to no host (the
    // credentials silently withheld) or not at all ("127.0.0.1:5000": the pull fails), and
    // "docker.io" is never "registry-1.docker.io", the host it talks to. The image's registry
    // chose these credentials already (credentialsFor), so the runtime need not filter again.
    serverAddress: '',
    identityToken,
    registryToken,
  };
}

function decodeAuth(encoded: string): [string, string] | undefined {
  const trimmed = encoded.trim();
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(trimmed) && !/^[A-Za-z0-9_-]*={0,2}$/.test(trimmed)) return undefined;
  const text = Buffer.from(trimmed, 'base64').toString('utf8');
  const colon = text.indexOf(':');
  if (colon <= 0) return undefined;
  return [text.slice(0, colon), text.slice(colon + 1)];
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
