// A private Docker registry for one test file: Debian's docker-registry (the
// CNCF distribution registry, 2.8) on its own config, storage and htpasswd
// file under a fresh temp dir, on 127.0.0.1 and a port the kernel picks,
// plain HTTP, needing no network. A push speaks the registry's v2 API
// directly (blob uploads, then the manifest): the images the tests push are
// built in memory (oci-image.ts), so a push client such as skopeo (and its
// dependencies) would add a package for what is three kinds of HTTP request.
//
// The registry accepts only bcrypt htpasswd entries. The entry is made with
// crypt(3) through perl (perl-base is Essential in Debian: always there), as
// Debian's libcrypt (libxcrypt) does bcrypt; no apache2-utils needed.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ImageParts } from './oci-image.js';

export const REGISTRY_BINARY = '/usr/bin/docker-registry';

export interface PrivateRegistry {
  /** host:port, e.g. "127.0.0.1:41234": the registry part of an image reference. */
  host: string;
  /** Pushes an image as <host>/<repository>:<tag>, with the registry's user and password. */
  push(repository: string, tag: string, image: ImageParts): Promise<void>;
  /** What the registry wrote to stdout and stderr so far (its access log included). */
  log(): string;
  /** Stops the registry and removes its files. */
  stop(): Promise<void>;
}

/** Throws a message saying what to install unless the registry can run here. */
export function requireRegistry(): void {
  if (!existsSync(REGISTRY_BINARY)) {
    throw new Error(`the registry test needs ${REGISTRY_BINARY}: apt-get install docker-registry (.ci/run installs it)`);
  }
}

/** bcrypt's base64 alphabet. */
const BCRYPT_CHARS = './ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';

/** An htpasswd line "user:$2b$..." for the registry (cost 5: the minimum is 4, and every request checks it). */
export function htpasswdEntry(user: string, password: string): string {
  const random = randomBytes(22);
  // 22 characters carry 128 bits: the last one has its 4 low bits zero, one of ".Oeu".
  const salt = [...random.subarray(0, 21)].map((b) => BCRYPT_CHARS[b % 64]).join('') + '.Oeu'[random[21]! % 4];
  // The password goes through the environment, not argv: no process listing shows it.
  const hash = execFileSync('perl', ['-e', 'print crypt($ENV{PW}, $ENV{SALT})'], {
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', PW: password, SALT: `$2b$05$${salt}` },
    encoding: 'utf8',
  });
  if (!hash.startsWith('$2b$05$') || hash.length !== 60) throw new Error(`perl's crypt() made no bcrypt hash (got ${JSON.stringify(hash.slice(0, 7))}): libcrypt without bcrypt?`);
  return `${user}:${hash}`;
}

function configYml(dir: string): string {
  return `version: 0.1
log:
  level: info
storage:
  filesystem:
    rootdirectory: ${dir}/data
http:
  # Port 0: the kernel picks one; the registry logs which ("listening on ...").
  addr: 127.0.0.1:0
  # A fixed secret, so that it does not warn about a generated one.
  secret: ${randomBytes(16).toString('hex')}
auth:
  htpasswd:
    realm: te-test-registry
    path: ${dir}/htpasswd
`;
}

export async function startPrivateRegistry(user: string, password: string): Promise<PrivateRegistry> {
  requireRegistry();
  const dir = mkdtempSync('/tmp/te-registry-');
  writeFileSync(join(dir, 'htpasswd'), `${htpasswdEntry(user, password)}\n`, { mode: 0o600 });
  writeFileSync(join(dir, 'config.yml'), configYml(dir));
  const child: ChildProcess = spawn(REGISTRY_BINARY, ['serve', join(dir, 'config.yml')], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  let exited = false;
  child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exit = new Promise<void>((resolve) =>
    child.on('exit', () => {
      exited = true;
      resolve();
    }),
  );
  const stop = async () => {
    if (!exited) {
      child.kill('SIGTERM');
      await exit;
    }
    rmSync(dir, { recursive: true, force: true });
  };

  let host: string;
  try {
    host = await listeningOn(() => output, () => exited);
  } catch (error) {
    await stop();
    throw error;
  }
  const authorization = `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
  return {
    host,
    push: (repository, tag, image) => push(`http://${host}`, authorization, repository, tag, image),
    log: () => output,
    stop,
  };
}

/** The address from the registry's "listening on 127.0.0.1:PORT" line, once it is up. */
async function listeningOn(output: () => string, exited: () => boolean): Promise<string> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const match = /listening on (127\.0\.0\.1:\d+)/.exec(output());
    if (match?.[1]) return match[1];
    if (exited()) throw new Error(`docker-registry exited during startup:\n${output()}`);
    if (Date.now() > deadline) throw new Error(`docker-registry did not listen within 10 s:\n${output()}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

const digestOf = (data: Buffer) => `sha256:${createHash('sha256').update(data).digest('hex')}`;

async function expectStatus(response: Response, expected: number, what: string): Promise<void> {
  if (response.status !== expected) {
    throw new Error(`registry push: ${what}: HTTP ${response.status} (expected ${expected}): ${await response.text()}`);
  }
}

/** The v2 push: each blob by a monolithic upload (POST, then PUT with its digest), then the manifest by tag. */
async function push(base: string, authorization: string, repository: string, tag: string, image: ImageParts): Promise<void> {
  const headers = { authorization };
  for (const blob of image.blobs) {
    const digest = digestOf(blob);
    const started = await fetch(`${base}/v2/${repository}/blobs/uploads/`, { method: 'POST', headers });
    await expectStatus(started, 202, `start of the upload of ${digest}`);
    const location = started.headers.get('location');
    if (!location) throw new Error(`registry push: the upload of ${digest} got no Location`);
    const upload = new URL(location, base);
    upload.searchParams.set('digest', digest);
    const put = await fetch(upload, {
      method: 'PUT',
      headers: { ...headers, 'content-type': 'application/octet-stream', 'content-length': String(blob.length) },
      body: blob,
    });
    await expectStatus(put, 201, `upload of ${digest}`);
  }
  const manifest = await fetch(`${base}/v2/${repository}/manifests/${tag}`, {
    method: 'PUT',
    headers: { ...headers, 'content-type': image.mediaType },
    body: image.manifest,
  });
  await expectStatus(manifest, 201, `manifest ${repository}:${tag}`);
}
