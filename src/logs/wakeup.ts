// Lets a follower sleep until something may have changed: a file in the log
// directory was written or created (fs.watch, i.e. inotify on Linux), any
// other source calls wake() (task state changes, cancellation), or the poll
// interval passed (the fallback when watching is not possible or misses
// something, e.g. a directory that does not exist yet). A wake() while nobody
// waits is remembered, so no change between a read and the next wait is lost.
import { type FSWatcher, watch } from 'node:fs';

export class Wakeup {
  private watcher: FSWatcher | undefined;
  private pending = false;
  private resolve: (() => void) | undefined;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(
    private readonly dir: string,
    private readonly pollMs: number,
  ) {
    this.startWatching();
  }

  wake = (): void => {
    if (this.resolve) this.finish();
    else this.pending = true;
  };

  /** Resolves on a change, or after `timeoutMs` (at most the poll interval). */
  wait(timeoutMs = this.pollMs): Promise<void> {
    if (this.closed) return Promise.resolve();
    if (!this.watcher) this.startWatching(); // the directory may exist by now
    if (this.pending) {
      this.pending = false;
      return Promise.resolve();
    }
    return new Promise<void>((resolve) => {
      this.resolve = resolve;
      this.timer = setTimeout(() => this.finish(), Math.max(0, Math.min(timeoutMs, this.pollMs)));
    });
  }

  close(): void {
    this.closed = true;
    this.watcher?.close();
    this.watcher = undefined;
    this.finish();
  }

  private finish(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    const resolve = this.resolve;
    this.resolve = undefined;
    this.pending = false;
    resolve?.();
  }

  private startWatching(): void {
    try {
      const watcher = watch(this.dir, { persistent: false }, this.wake);
      watcher.on('error', () => {
        // e.g. the directory was removed: fall back to polling.
        watcher.close();
        if (this.watcher === watcher) this.watcher = undefined;
      });
      this.watcher = watcher;
    } catch {
      // Missing directory or no inotify watches left: polling still works.
    }
  }
}
