// Calls back when a file in a log directory is written or created (fs.watch,
// i.e. inotify on Linux). Best effort: when watching is not possible (the
// directory does not exist yet, no inotify watches left) or the watch breaks
// (the directory was removed), followers still poll; retry() tries again.
import { type FSWatcher, watch } from 'node:fs';

export class DirectoryWatch {
  private watcher: FSWatcher | undefined;
  private closed = false;

  constructor(
    private readonly dir: string,
    private readonly onChange: () => void,
  ) {
    this.retry();
  }

  /** Starts watching if not watching yet (the directory may exist by now). */
  retry(): void {
    if (this.watcher || this.closed) return;
    try {
      const watcher = watch(this.dir, { persistent: false }, () => this.onChange());
      watcher.on('error', () => {
        watcher.close();
        if (this.watcher === watcher) this.watcher = undefined;
      });
      this.watcher = watcher;
    } catch {
      // Missing directory or no inotify watches left: polling still works.
    }
  }

  close(): void {
    this.closed = true;
    this.watcher?.close();
    this.watcher = undefined;
  }
}
