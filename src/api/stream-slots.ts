// A cap on concurrent server streams of one kind (e.g. Logs): each open stream
// holds a slot from its start until it ends however it ends (done, failed,
// cancelled, deadline, dropped connection); one more is RESOURCE_EXHAUSTED.
// Without it a client that opens streams and never reads (buggy, stuck or
// hostile) could pile up streams, each holding read buffers, until the
// executor runs out of memory.
import { TaskError } from '../errors.js';

export class StreamSlots {
  private inUse = 0;

  /**
   * `max`: most streams open at once (0: no limit). `flag`: the setting that
   * raises it, named in the refusal so a person knows what to change.
   */
  constructor(
    private readonly what: string,
    private readonly max: number,
    private readonly flag: string,
  ) {}

  /** Streams open now. */
  get open(): number {
    return this.inUse;
  }

  /** Takes a slot; returns its release (idempotent). Throws RESOURCE_EXHAUSTED when all are taken. */
  acquire(): () => void {
    if (this.max > 0 && this.inUse >= this.max) {
      throw new TaskError(
        'ResourceExhausted',
        `too many ${this.what} streams: ${this.inUse} are open, the most this executor allows (${this.flag} ${this.max}); end or cancel one (a client that stopped reading still holds its stream), or raise ${this.flag}`,
      );
    }
    this.inUse++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.inUse--;
    };
  }
}
