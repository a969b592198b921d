// Puts a task's artifacts into its directory before it runs, so that the
// task never sees part of them, even across an executor restart:
//
//   1. <task dir>/.artifacts-complete exists: they are there (a restart under
//      the restart policy, or an executor restart after the fetch); done.
//   2. Everything is fetched into <task dir>/.artifacts-staging/, laid out as
//      it will be (staging/<destination>/...), from scratch: a staging
//      directory left by an executor that died is removed first.
//   3. Each top-level name the destinations use ("artifacts") is renamed from
//      staging into the task directory (replacing what an interrupted earlier
//      move left there), then the marker is written atomically.
//
// An executor that dies anywhere before the marker leaves a task without a
// recorded start: it is relaunched after the restart, and this starts again
// at 2. A task is only started after fetch() resolved, so after the marker.
import { chmod, mkdir, readdir, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Semaphore } from 'async-mutex';
import type { Logger } from 'pino';
import type { Artifact, TaskSpec } from '../model/task.js';
import { writeFileAtomic } from '../util/atomic-file.js';
import { isErrno } from '../util/errno.js';
import { errorMessage } from '../errors.js';
import type { ArtifactCache } from './cache.js';
import { ArtifactError } from './errors.js';
import { copyLocalFile, isExecutable } from './file.js';
import { fetchGit } from './git.js';
import { downloadHttp } from './http.js';
import type { Written } from './sink.js';
import { type ResolvedArtifact, resolveArtifact, topLevelNames } from './source.js';
import { unpackArchive } from './unpack.js';

export const COMPLETE_MARKER = '.artifacts-complete';
export const STAGING_DIR = '.artifacts-staging';
/** Tasks fetching at once: enough to overlap slow servers, few enough to bound sockets, disk writes and memory. */
const DEFAULT_CONCURRENCY = 8;

export interface FetcherOptions {
  /** Largest download, and most bytes one archive may unpack to (--artifact-max-bytes). */
  maxBytes: number;
  /** Most entries one archive may hold (--artifact-max-entries). */
  maxEntries: number;
  /** Longest one artifact may take, retries included (--artifact-fetch-timeout). */
  timeoutMs: number;
  /** Verified artifacts kept by checksum for other tasks (--artifact-cache-bytes); none: no cache. */
  cache?: ArtifactCache;
  /** Tasks fetching at once; default 8. */
  concurrency?: number;
  /** First backoff between HTTP retries (tests shorten it). */
  retryBackoffMs?: number;
  log: Logger;
}

export class ArtifactFetcher {
  /** Fetches in flight, aborted by close() so that a shutdown never waits for a slow download. */
  private readonly inFlight = new Set<AbortController>();
  private readonly slots: Semaphore;
  private closed = false;

  constructor(private readonly options: FetcherOptions) {
    this.slots = new Semaphore(options.concurrency ?? DEFAULT_CONCURRENCY);
  }

  /** Whether a fetch for this task directory completed (the marker exists). */
  isComplete(taskDir: string): Promise<boolean> {
    return exists(join(taskDir, COMPLETE_MARKER));
  }

  /**
   * Makes the task's artifacts complete in `taskDir` (at most `concurrency`
   * tasks fetch at once; the others queue). Rejects with an ArtifactError for
   * a failed artifact (its message says which and why), with an AbortError
   * when `signal` or close() stopped it.
   */
  async fetch(taskDir: string, spec: TaskSpec, signal: AbortSignal): Promise<void> {
    const artifacts = spec.artifacts ?? [];
    if (artifacts.length === 0 || (await this.isComplete(taskDir))) return;
    const release = await this.slot(signal);
    try {
      await this.fetchInto(taskDir, artifacts, signal);
    } finally {
      release();
    }
  }

  /**
   * A fetch slot, or an AbortError as soon as `signal` aborts: a task deleted
   * while it queues behind other tasks' downloads is gone at once, not when a
   * slot frees (a slot granted after that is given back at once).
   */
  private slot(signal: AbortSignal): Promise<() => void> {
    const acquiring = this.slots.acquire();
    return new Promise((resolve, reject) => {
      const onAbort = () => {
        reject(signal.reason instanceof Error ? signal.reason : new DOMException('the fetch was aborted', 'AbortError'));
        void acquiring.then(([, release]) => release());
      };
      if (signal.aborted) return onAbort();
      signal.addEventListener('abort', onAbort, { once: true });
      void acquiring.then(([, release]) => {
        signal.removeEventListener('abort', onAbort);
        if (signal.aborted) release();
        else resolve(release);
      });
    });
  }

  private async fetchInto(taskDir: string, artifacts: readonly Artifact[], signal: AbortSignal): Promise<void> {
    const controller = new AbortController();
    const abort = () => controller.abort(signal.reason);
    signal.addEventListener('abort', abort, { once: true });
    if (signal.aborted) abort();
    if (this.closed) controller.abort();
    this.inFlight.add(controller);
    const staging = join(taskDir, STAGING_DIR);
    try {
      await rm(staging, { recursive: true, force: true });
      await mkdir(staging);
      const resolved = artifacts.map((artifact, i) => resolveArtifact(artifact, `artifacts[${i}]`));
      for (const [i, artifact] of resolved.entries()) {
        await this.fetchOne(artifact, artifacts[i]!, i, staging, controller.signal);
      }
      try {
        for (const top of topLevelNames(resolved)) {
          await rm(join(taskDir, top), { recursive: true, force: true });
          await rename(join(staging, top), join(taskDir, top));
        }
        await writeFileAtomic(join(taskDir, COMPLETE_MARKER), `${JSON.stringify({ completedAt: new Date().toISOString(), artifacts: artifacts.length })}\n`);
      } catch (error) {
        if (outOfSpace(error)) throw new ArtifactError(`the artifacts were fetched, but ${NO_SPACE}`, { cause: error });
        throw error;
      }
      this.options.log.info({ dir: taskDir, artifacts: artifacts.length }, 'artifacts fetched');
    } finally {
      this.inFlight.delete(controller);
      signal.removeEventListener('abort', abort);
      await rm(staging, { recursive: true, force: true }).catch(() => undefined);
    }
  }

  /** Stops every fetch in flight or queued (shutdown); their tasks are fetched again after the next start. */
  close(): void {
    this.closed = true;
    for (const controller of this.inFlight) controller.abort();
  }

  private async fetchOne(artifact: ResolvedArtifact, spec: Artifact, index: number, staging: string, parent: AbortSignal): Promise<void> {
    const what = `artifacts[${index}] (${describeSource(spec.source)})`;
    const timeout = AbortSignal.timeout(this.options.timeoutMs);
    const signal = AbortSignal.any([parent, timeout]);
    const destination = join(staging, artifact.destination);
    try {
      await mkdir(destination, { recursive: true });
      if (artifact.source.kind === 'git') {
        const checkout = join(staging, `.git-${index}`);
        await fetchGit(artifact.source.url, artifact.source.ref, checkout, { maxBytes: this.options.maxBytes, maxEntries: this.options.maxEntries }, signal);
        await moveContents(checkout, destination);
        return;
      }
      const download = join(staging, `.download-${index}`);
      const algorithm = artifact.checksum?.algorithm;
      const source = artifact.source;
      const get = (): Promise<Written> =>
        source.kind === 'http'
          ? downloadHttp(source.url, download, {
              headers: artifact.headers,
              maxBytes: this.options.maxBytes,
              signal,
              ...(algorithm ? { algorithm } : {}),
              ...(this.options.retryBackoffMs !== undefined ? { backoffMs: this.options.retryBackoffMs } : {}),
            })
          : copyLocalFile(source.path, download, this.options.maxBytes, signal, algorithm);
      const cache = this.options.cache;
      const written = artifact.checksum && cache ? await cache.obtain(artifact.checksum, download, this.options.maxBytes, signal, get) : await get();
      if (artifact.checksum && written.digest !== artifact.checksum.hex) {
        throw new ArtifactError(`checksum mismatch: expected ${artifact.checksum.algorithm}:${artifact.checksum.hex}, got ${artifact.checksum.algorithm}:${written.digest}`);
      }
      if (artifact.mode === 'archive') {
        await unpackArchive(download, 'the archive', destination, { maxBytes: this.options.maxBytes, maxEntries: this.options.maxEntries }, signal);
        await rm(download, { force: true });
        return;
      }
      const target = join(destination, artifact.fileName!);
      await rm(target, { recursive: true, force: true });
      await rename(download, target);
      if (source.kind === 'file' && (await isExecutable(source.path))) await chmod(target, 0o755);
    } catch (error) {
      parent.throwIfAborted();
      if (timeout.aborted) throw new ArtifactError(`${what}: took longer than ${this.options.timeoutMs / 1000}s (--artifact-fetch-timeout)`);
      if (outOfSpace(error)) throw new ArtifactError(`${what}: ${NO_SPACE}`, { cause: error });
      // A file system error names its path on the executor's node; the client sees it relative to the task directory.
      throw new ArtifactError(`${what}: ${errorMessage(error).replaceAll(`${staging}/`, '')}`, { cause: error });
    }
  }
}

/** Moves every entry of `from` into `to` (replacing same-named ones), then removes `from`. */
async function moveContents(from: string, to: string): Promise<void> {
  for (const entry of await readdir(from)) {
    await rm(join(to, entry), { recursive: true, force: true });
    await rename(join(from, entry), join(to, entry));
  }
  await rm(from, { recursive: true, force: true });
}

/** What a full data dir means for a task's artifacts; the client sees no path of the executor's node. */
const NO_SPACE = "the executor's data dir has no space left for it; free space on the node";

/** ENOSPC or EDQUOT, raised by the file system or carried as the cause of an unpacking error. */
function outOfSpace(error: unknown): boolean {
  return isErrno(error, 'ENOSPC', 'EDQUOT') || (error instanceof Error && isErrno(error.cause, 'ENOSPC', 'EDQUOT'));
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

/** A source for messages: without a URL's query, which may carry a signed token. */
function describeSource(source: string): string {
  const query = source.indexOf('?');
  return query >= 0 && !source.startsWith('git::') ? `${source.slice(0, query)}?…` : source;
}
