// Per-key serial work: work for one key runs one item at a time, in call
// order; work for different keys runs concurrently. This is how the manager
// gives every task its own actor (start, reconcile, finalize) without a
// global lock, so one task's slow step never delays another task.

export class KeyedSerializer {
  private readonly tails = new Map<string, Promise<void>>();

  /** Runs `work` after every earlier item for `key` has settled (whatever its outcome). */
  run<T>(key: string, work: () => Promise<T>): Promise<T> {
    const previous = this.tails.get(key) ?? Promise.resolve();
    const result = previous.then(work);
    const tail = result.then(
      () => undefined,
      () => undefined,
    );
    this.tails.set(key, tail);
    // Forget idle keys, so the map holds only keys with work queued or running.
    void tail.then(() => {
      if (this.tails.get(key) === tail) this.tails.delete(key);
    });
    return result;
  }

  /** Resolves once everything queued so far, for every key, has settled. */
  async drain(): Promise<void> {
    while (this.tails.size > 0) await Promise.all(this.tails.values());
  }

  get busyKeys(): number {
    return this.tails.size;
  }
}
