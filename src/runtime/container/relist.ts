// Change detection for running containers by relisting, as the kubelet's
// PLEG does: the CRI of containerd 1.6 pushes no container events
// (GetContainerEvents came later), so once a second one ListContainers per
// owner (the executor's data dir) answers for every watched container, and
// only a container whose state changed (or that vanished) wakes its task.
// Before, each running container woke its task every second, and each wake
// was a ContainerStatus call: N calls a second for N containers.
import type { Container, ContainerState } from '../../../gen/cri/runtime/v1/api.js';
import { LABEL_OWNER } from './mapping.js';

export interface Watched {
  /** The owner label of its containers. */
  owner: string;
  /** Its current container id (it may change when the runtime re-attaches by label); undefined: none yet. */
  containerId(): string | undefined;
  onChange(): void;
}

interface Entry extends Watched {
  /** The state the last relist saw; undefined before the first. */
  last?: ContainerState | 'absent';
}

export class Relist {
  private readonly watched = new Set<Entry>();
  private timer: NodeJS.Timeout | undefined;
  private running = false;

  constructor(
    /** ListContainers with a label selector. */
    private readonly list: (labelSelector: Record<string, string>) => Promise<Container[]>,
    private readonly intervalMs: number,
  ) {}

  /** Wakes `watched.onChange` whenever its container's state changes; returns the function that stops it. */
  add(watched: Watched): () => void {
    const entry: Entry = { ...watched };
    this.watched.add(entry);
    if (!this.timer) {
      this.timer = setInterval(() => void this.relist(), this.intervalMs);
      this.timer.unref();
    }
    return () => {
      this.watched.delete(entry);
      if (this.watched.size === 0) this.close();
    };
  }

  close(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /** One pass; a pass still running when the next is due is not doubled. */
  async relist(): Promise<void> {
    if (this.running) return;
    this.running = true;
    try {
      const owners = new Set([...this.watched].map((entry) => entry.owner));
      const states = new Map<string, ContainerState>();
      const unanswered = new Set<string>();
      for (const owner of owners) {
        try {
          for (const container of await this.list({ [LABEL_OWNER]: owner })) states.set(container.id, container.state);
        } catch {
          unanswered.add(owner);
        }
      }
      for (const entry of [...this.watched]) {
        if (unanswered.has(entry.owner)) {
          // The runtime did not answer: the task's own inspection says what that means.
          entry.onChange();
          continue;
        }
        const id = entry.containerId();
        const state = id !== undefined && states.has(id) ? states.get(id)! : 'absent';
        if (state === entry.last) continue;
        entry.last = state;
        entry.onChange();
      }
    } finally {
      this.running = false;
    }
  }
}
