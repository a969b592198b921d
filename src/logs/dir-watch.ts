// Calls back when a file in a log directory is written or created (fs.watch,
// i.e. inotify on Linux), so followers sleep until there is output instead of
// polling. Best effort: when watching is not possible (the directory does not
// exist yet, no inotify watches left) or the watch breaks (the directory was
// removed), followers poll; retry() tries again.
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

  /**
   * Starts watching if not watching yet (the directory may exist by now).
   * 'started': the watch began just now, so writes made before it went
   * unannounced; 'watching': every write from here on calls back;
   * 'unavailable': the caller must poll.
   */
  retry(): 'started' | 'watching' | 'unavailable' {
    if (this.closed) return 'unavailable';
    if (this.watcher) return 'watching';
    try {
      const watcher = watch(this.dir, { persistent: false }, () => this.onChange());
      watcher.on('error', () => {
        watcher.close();
        if (this.watcher === watcher) this.watcher = undefined;
        this.onChange(); // the follower must look again (and poll from now on)
      });
      this.watcher = watcher;
      return 'started';
    } catch {
      return 'unavailable'; // missing directory or no inotify watches left
    }
  }

  close(): void {
    this.closed = true;
    this.watcher?.close();
    this.watcher = undefined;
  }
}
