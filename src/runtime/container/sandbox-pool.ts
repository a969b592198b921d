// A pool of pod sandboxes made ahead of time (--container-sandbox-pool N, off
// by default): RunPodSandbox is about half of a container start's CRI work
// (bench/RESULTS.md), and a sandbox does not depend on the task it will hold.
// Each pooled sandbox is used by exactly one task run and removed with it,
// like a sandbox made for the run: isolation is unchanged. What differs is
// only what the runtime shows of it: its metadata name is `pool-<id>` and its
// labels carry the owner and LABEL_POOL instead of the task and run (the
// container inside carries those). containerd takes a container's log path
// from the sandbox config sent with CreateContainer, so the task's logs still
// go to its own directory.
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { errorMessage } from '../../errors.js';
import type { DeepPartial, PodSandboxConfig } from '../../../gen/cri/runtime/v1/api.js';
import { type CriClient, isNotFound, isUnreachable } from './cri-client.js';
import { LABEL_OWNER, LABEL_POOL, sandboxConfig } from './mapping.js';

export interface SandboxPoolOptions {
  cri: CriClient;
  /** How many idle sandboxes to keep ready. */
  size: number;
  /** The executor's owner label (ownerOf its data dir). */
  owner: string;
  cgroupParent?: string;
  log: Logger;
}

export class SandboxPool {
  private readonly idle: string[] = [];
  /** The refill in progress, if any. */
  private filling: Promise<void> | undefined;
  private closed = false;
  /** The last fill error logged, so a failing runtime is not logged once per sandbox. */
  private reported = '';
  /**
   * Metadata uids of sandboxes whose RunPodSandbox lost its answer to an
   * outage: the runtime may have made them, and nothing else would ever take
   * or remove them (removeLost()).
   */
  private readonly lost = new Set<string>();

  constructor(private readonly options: SandboxPoolOptions) {}

  /** The labels of every pooled sandbox of this executor, idle or in use. */
  get labels(): Record<string, string> {
    return { [LABEL_OWNER]: this.options.owner, [LABEL_POOL]: 'true' };
  }

  /**
   * An idle sandbox for one task run (no longer the pool's), or undefined when
   * none is ready. The caller calls fill() once its start is done: a refill
   * beside the start would slow it down (measured: +35 ms at the median).
   */
  take(): string | undefined {
    return this.idle.shift();
  }

  /**
   * Removes pooled sandboxes an earlier executor left without a container
   * (idle ones, or taken by a start that never made its container); those
   * holding a container belong to a task run and are left to it. Call before
   * any start, then fill().
   */
  async prune(): Promise<number> {
    const { cri } = this.options;
    let removed = 0;
    for (const sandbox of await cri.listPodSandbox(this.labels)) {
      if ((await cri.listContainers({ podSandboxId: sandbox.id })).length > 0) continue;
      await ignoreNotFound(cri.stopPodSandbox(sandbox.id));
      await ignoreNotFound(cri.removePodSandbox(sandbox.id));
      removed++;
    }
    return removed;
  }

  /** Makes sandboxes, one at a time, until `size` are idle; stops at the first failure (the next take() tries again). */
  fill(): void {
    if (this.filling || this.closed) return;
    this.filling = this.fillUp().finally(() => {
      this.filling = undefined;
    });
  }

  /** Removes the idle sandboxes (best effort): a stopped executor keeps no pause process running. */
  async close(): Promise<void> {
    this.closed = true;
    // A sandbox being made now is removed by the refill itself once it sees `closed`.
    await this.filling;
    for (const id of this.idle.splice(0)) {
      try {
        await ignoreNotFound(this.options.cri.stopPodSandbox(id));
        await ignoreNotFound(this.options.cri.removePodSandbox(id));
      } catch (error) {
        this.options.log.warn({ sandboxId: id, err: errorMessage(error) }, 'cannot remove an idle pooled sandbox; the next start of the executor does');
      }
    }
  }

  get ready(): number {
    return this.idle.length;
  }

  /**
   * Removes the sandboxes whose RunPodSandbox answer an outage lost, found
   * by their metadata uid (best effort: what is not removed is tried again
   * after the next outage, and pruned at the next start of the executor).
   */
  async removeLost(): Promise<void> {
    if (this.lost.size === 0) return;
    const { cri } = this.options;
    const uids = [...this.lost];
    try {
      for (const sandbox of await cri.listPodSandbox(this.labels)) {
        if (!sandbox.metadata || !uids.includes(sandbox.metadata.uid)) continue;
        await ignoreNotFound(cri.stopPodSandbox(sandbox.id));
        await ignoreNotFound(cri.removePodSandbox(sandbox.id));
      }
      for (const uid of uids) this.lost.delete(uid);
    } catch (error) {
      if (!isUnreachable(error)) this.options.log.warn({ err: errorMessage(error) }, 'cannot remove pooled sandboxes an outage left behind');
    }
  }

  private async fillUp(): Promise<void> {
    while (!this.closed && this.idle.length < this.options.size) {
      let id: string;
      const config = this.config();
      try {
        id = await this.options.cri.runPodSandbox(config);
      } catch (error) {
        if (isUnreachable(error) && config.metadata?.uid) this.lost.add(config.metadata.uid);
        const message = errorMessage(error);
        // An outage is logged by the runtime's availability tracker.
        if (!isUnreachable(error) && message !== this.reported) this.options.log.warn({ err: message }, 'cannot make a pooled sandbox');
        this.reported = message;
        return;
      }
      this.reported = '';
      if (this.closed) {
        await ignoreNotFound(this.options.cri.stopPodSandbox(id)).catch(() => undefined);
        await ignoreNotFound(this.options.cri.removePodSandbox(id)).catch(() => undefined);
        return;
      }
      this.idle.push(id);
    }
  }

  private config(): DeepPartial<PodSandboxConfig> {
    const uid = randomUUID();
    // No log directory of its own: each container's comes with its CreateContainer.
    return sandboxConfig({ task: `pool-${uid.slice(0, 8)}`, uid, labels: this.labels, logDirectory: '', cgroupParent: this.options.cgroupParent });
  }
}

async function ignoreNotFound(call: Promise<unknown>): Promise<void> {
  try {
    await call;
  } catch (error) {
    if (!isNotFound(error)) throw error;
  }
}
