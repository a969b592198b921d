// Lets one loop sleep until something may have changed (a task event, a file
// write, a cancellation) or a timeout passes. Wakes are hints, not events: the
// loop re-checks what it waits for after every wait. A wake() while nobody
// waits is remembered, so a change between a check and the next wait is never
// lost; several such wakes count as one.
export class Wakeup {
  private pending = false;
  private closed = false;
  private waiter: { resolve: () => void; timer: NodeJS.Timeout | undefined } | undefined;

  /** Aborting `signal` closes the wakeup: the current wait and every later one return at once. */
  constructor(private readonly signal?: AbortSignal) {
    signal?.addEventListener('abort', this.close);
    if (signal?.aborted) this.close();
  }

  wake = (): void => {
    if (this.waiter) this.finish();
    else this.pending = true;
  };

  /** Resolves on a wake (also one that came before this call), on close, or after `timeoutMs` (none: no timeout). */
  wait(timeoutMs?: number): Promise<void> {
    if (this.closed || this.pending) {
      this.pending = false;
      return Promise.resolve();
    }
    return new Promise<void>((resolve) => {
      const timer = timeoutMs === undefined ? undefined : setTimeout(() => this.finish(), Math.max(0, timeoutMs));
      this.waiter = { resolve, timer };
    });
  }

  close = (): void => {
    this.closed = true;
    this.signal?.removeEventListener('abort', this.close);
    this.finish();
  };

  private finish(): void {
    const waiter = this.waiter;
    this.waiter = undefined;
    this.pending = false;
    if (!waiter) return;
    clearTimeout(waiter.timer);
    waiter.resolve();
  }
}
