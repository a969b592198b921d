// A content-addressed cache of verified artifacts, keyed by their checksum,
// under <data-dir>/.artifact-cache/ (the store ignores names starting with
// '.'): 100 tasks with the same checksummed artifact download it once. Bounded
// by size (--artifact-cache-bytes); the least recently used entries go first.
// Only artifacts with a checksum are cached: without one, nothing says two
// downloads of a URL are the same bytes.
//
// A hit is copied (never linked: a task may change its files) and hashed on
// the way, so a cache entry that rotted on disk is dropped, not used. Tasks
// asking for the same entry at once share one download (single flight); if
// that download fails, each of them fetches on its own.
import { randomBytes } from 'node:crypto';
import { copyFile, mkdir, open, readdir, rename, rm, stat, utimes } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { type Written, writeLimited } from './sink.js';
import type { Checksum } from './source.js';

export const CACHE_DIR = '.artifact-cache';
/** A copy being stored: `.tmp-<pid>-<random>-<n>`, renamed to its entry's name once complete. */
const TEMP_PREFIX = '.tmp-';

export class ArtifactCache {
  private readonly inFlight = new Map<string, Promise<boolean>>();
  private sequence = 0;
  /** This executor's temporary files; random too, as an executor in a container is pid 1 every time. */
  private readonly tempPrefix = `${TEMP_PREFIX}${process.pid}-${randomBytes(4).toString('hex')}-`;

  constructor(
    private readonly directory: string,
    private readonly maxBytes: number,
    private readonly log: Logger,
  ) {}

  /**
   * Puts the artifact with `checksum` at `target`: from the cache when it is
   * there, else by `download` (which writes `target` and returns what it
   * wrote), keeping a verified copy for the next task. `signal` (the task's
   * Delete, the fetch timeout) also ends the wait for another task's download.
   */
  async obtain(checksum: Checksum, target: string, maxBytes: number, signal: AbortSignal, download: () => Promise<Written>): Promise<Written> {
    const key = `${checksum.algorithm}-${checksum.hex}`;
    const hit = await this.copyOut(key, checksum, target, maxBytes);
    if (hit) return hit;
    const leader = this.inFlight.get(key);
    if (leader) {
      // Another task is downloading the same bytes: wait for it, then copy.
      if (await untilAborted(leader, signal)) {
        const shared = await this.copyOut(key, checksum, target, maxBytes);
        if (shared) return shared;
      }
      return download();
    }
    let stored: (ok: boolean) => void = () => undefined;
    this.inFlight.set(key, new Promise<boolean>((resolve) => (stored = resolve)));
    try {
      const written = await download();
      stored(written.digest === checksum.hex && (await this.store(key, target)));
      return written;
    } catch (error) {
      stored(false);
      throw error;
    } finally {
      this.inFlight.delete(key);
    }
  }

  /** Copies a cached entry to `target`, verifying it; undefined when there is none (or it no longer matches). */
  private async copyOut(key: string, checksum: Checksum, target: string, maxBytes: number): Promise<Written | undefined> {
    const entry = join(this.directory, key);
    try {
      // Opened first: a stream of a missing file would report its error before anyone listens.
      const handle = await open(entry, 'r');
      const written = await writeLimited(handle.createReadStream(), target, maxBytes, `cached ${key}`, checksum.algorithm);
      if (written.digest !== checksum.hex) {
        this.log.warn({ entry }, 'a cached artifact no longer matches its checksum; removed');
        await rm(entry, { force: true });
        return undefined;
      }
      const now = new Date();
      await utimes(entry, now, now).catch(() => undefined); // most recently used
      return written;
    } catch {
      return undefined;
    }
  }

  /** Adds a verified file to the cache (copy, then rename), then evicts down to the size limit. */
  private async store(key: string, source: string): Promise<boolean> {
    try {
      await mkdir(this.directory, { recursive: true });
      await this.removeLeftovers();
      const temp = join(this.directory, `${this.tempPrefix}${++this.sequence}`);
      await copyFile(source, temp);
      await rename(temp, join(this.directory, key));
      await this.evict();
      return true;
    } catch (error) {
      this.log.warn({ err: error }, 'cannot keep an artifact in the cache; tasks fetch it on their own');
      return false;
    }
  }

  /**
   * Removes the partial copies an earlier executor left when it died in
   * store(): no bound counts them, so each would hold its space for ever (one
   * executor per data dir: another instance's temporary file is no copy in flight).
   */
  private async removeLeftovers(): Promise<void> {
    for (const name of await readdir(this.directory)) {
      if (name.startsWith(TEMP_PREFIX) && !name.startsWith(this.tempPrefix)) await rm(join(this.directory, name), { force: true });
    }
  }

  /** Removes the least recently used entries until the cache holds at most maxBytes. */
  async evict(): Promise<void> {
    const names = (await readdir(this.directory)).filter((name) => !name.startsWith('.'));
    const entries = (
      await Promise.all(
        names.map(async (name) => {
          try {
            const info = await stat(join(this.directory, name));
            return { name, size: info.size, used: info.mtimeMs };
          } catch {
            return undefined;
          }
        }),
      )
    ).filter((entry) => entry !== undefined);
    let total = entries.reduce((sum, entry) => sum + entry.size, 0);
    for (const entry of entries.sort((a, b) => a.used - b.used)) {
      if (total <= this.maxBytes) break;
      await rm(join(this.directory, entry.name), { force: true });
      total -= entry.size;
    }
  }
}

/**
 * `leader`'s outcome (false when it failed), or an AbortError as soon as
 * `signal` aborts: a task deleted while another task downloads its artifact
 * ends at once, not when that download does (up to --artifact-fetch-timeout).
 */
function untilAborted(leader: Promise<boolean>, signal: AbortSignal): Promise<boolean> {
  signal.throwIfAborted();
  return new Promise((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    leader
      .catch(() => false)
      .then(resolve)
      .finally(() => signal.removeEventListener('abort', onAbort));
  });
}
