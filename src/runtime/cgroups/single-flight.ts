// Coalesces calls of an idempotent job: every caller resolves after a run
// that began after its call, while concurrent callers share runs — at most one
// runs and one waits to run next, whatever the number of callers.
export class SingleFlight {
  private running?: Promise<void>;
  private next?: Promise<void>;

  constructor(private readonly job: () => Promise<void>) {}

  run(): Promise<void> {
    // The queued run has not begun yet: it begins after this call too.
    if (this.next) return this.next;
    if (!this.running) return this.launch();
    // The current run may have read its input before this call: queue one more.
    const next = this.running
      .catch(() => undefined)
      .then(() => {
        this.next = undefined;
        return this.launch();
      });
    this.next = next;
    return next;
  }

  private launch(): Promise<void> {
    const run = this.job().finally(() => {
      if (this.running === run) this.running = undefined;
    });
    this.running = run;
    return run;
  }
}
