// Whether the CRI runtime can be reached, learnt from the outcome of every
// call: an outage is logged once when it begins and once when it ends (never
// per failing call), and while it lasts a cheap probe runs so that its end is
// noticed, and listeners told, without waiting for the next task operation.
import type { Logger } from 'pino';

export type AvailabilityListener = (available: boolean) => void;

export interface AvailabilityOptions {
  /** The runtime's address, for log lines. */
  address: string;
  log: Logger;
  /** One call that succeeds when the runtime answers (its outcome is reported through reachable/unreachable). */
  probe: () => Promise<unknown>;
  probeIntervalMs: number;
}

export class Availability {
  private up = true;
  private downSince = 0;
  private probeTimer: NodeJS.Timeout | undefined;
  private probing = false;
  private closed = false;
  private readonly listeners = new Set<AvailabilityListener>();

  constructor(private readonly options: AvailabilityOptions) {}

  get available(): boolean {
    return this.up;
  }

  /** A call got an answer (any answer, errors included): the runtime is there. */
  reachable(): void {
    if (this.up) return;
    this.up = true;
    this.stopProbing();
    this.options.log.info({ criSocket: this.options.address, downMs: Math.round(performance.now() - this.downSince) }, 'the container runtime is reachable again');
    this.notify();
  }

  /** A call could not reach the runtime. */
  unreachable(reason: string): void {
    if (!this.up || this.closed) return;
    this.up = false;
    this.downSince = performance.now();
    this.options.log.warn({ criSocket: this.options.address, reason }, 'the container runtime is unreachable; container tasks wait until it is back');
    this.scheduleProbe();
    this.notify();
  }

  /** Calls `listener` on every change; returns the function that unsubscribes it. */
  subscribe(listener: AvailabilityListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  close(): void {
    this.closed = true;
    this.stopProbing();
    this.listeners.clear();
  }

  private notify(): void {
    for (const listener of [...this.listeners]) {
      try {
        listener(this.up);
      } catch (error) {
        this.options.log.error({ err: error }, 'a runtime availability listener failed');
      }
    }
  }

  private scheduleProbe(): void {
    if (this.closed || this.up || this.probeTimer || this.probing) return;
    this.probeTimer = setTimeout(() => {
      this.probeTimer = undefined;
      this.probing = true;
      // A failed probe is reported through unreachable(), like any call.
      void this.options
        .probe()
        .then(
          () => this.reachable(),
          () => undefined,
        )
        .finally(() => {
          this.probing = false;
          this.scheduleProbe();
        });
    }, this.options.probeIntervalMs);
    // Waiting for the runtime must not keep the process alive.
    this.probeTimer.unref();
  }

  private stopProbing(): void {
    clearTimeout(this.probeTimer);
    this.probeTimer = undefined;
  }
}
