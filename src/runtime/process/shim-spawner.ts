// Starts task-shims through one small helper process (`task-shim --spawner`,
// src/runtime/shim/spawner.c) instead of forking the executor: fork() copies
// the parent's page tables, which blocked the executor's event loop for
// 6-7 ms per start at ~150 MiB (and more as it grows), while the helper
// starts a shim with posix_spawn in a fraction of a millisecond. The helper
// relays each shim's output lines and exit, so callers see what a child
// process would give them.
import { type ChildProcessByStdio, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import type { Readable, Writable } from 'node:stream';
import type { Logger } from 'pino';

/** The spawner ended while a shim's start was under way: the shim may or may not run. */
export class SpawnerLost extends Error {
  constructor(reason: string) {
    super(`the shim spawner ended (${reason})`);
    this.name = 'SpawnerLost';
  }
}

/** A shim started by the spawner: its pid, its stdout lines in order, its stderr lines, its exit. */
export class SpawnedShim {
  /** The first stderr lines (for error messages). */
  readonly stderr: string[] = [];
  /** The shim's exit status (an exit code or a signal name); 'unknown' if the spawner ended first. */
  readonly exited: Promise<string>;
  /** True when the lines stopped because the spawner ended, not because the shim did. */
  lost = false;
  private readonly queued: string[] = [];
  private waiter: ((line: string | undefined) => void) | undefined;
  private follower: ((line: string) => void) | undefined;
  private ended = false;
  private settle!: (status: string) => void;

  constructor(
    readonly pid: number,
    private readonly control: (verb: 'go' | 'abort') => void,
  ) {
    this.exited = new Promise((resolve) => {
      this.settle = resolve;
    });
  }

  /** A gated shim (its --gate) may start the task now. */
  go(): void {
    this.control('go');
  }

  /** A gated shim leaves without starting the task. */
  abort(): void {
    this.control('abort');
  }

  /** The next stdout line not yet taken, or undefined once stdout ended. */
  nextLine(): Promise<string | undefined> {
    const line = this.queued.shift();
    if (line !== undefined || this.ended) return Promise.resolve(line);
    return new Promise((resolve) => {
      this.waiter = resolve;
    });
  }

  /** Hands every later stdout line to `onLine`, starting with any already received. */
  follow(onLine: (line: string) => void): void {
    this.follower = onLine;
    for (const line of this.queued.splice(0)) onLine(line);
  }

  /** @internal */
  line(line: string): void {
    if (this.waiter) {
      const waiter = this.waiter;
      this.waiter = undefined;
      waiter(line);
    } else if (this.follower) {
      this.follower(line);
    } else {
      this.queued.push(line);
    }
  }

  /** @internal */
  errorLine(line: string): void {
    if (this.stderr.length < 20) this.stderr.push(line);
  }

  /** @internal */
  end(status: string, lost: boolean): void {
    this.ended = true;
    this.lost = lost;
    this.waiter?.(undefined);
    this.waiter = undefined;
    this.settle(status);
  }
}

type Helper = ChildProcessByStdio<Writable, Readable, null>;

/** Shims kept started ahead: two serve a Create and the one right behind it without an exec each. */
export const DEFAULT_POOL_SIZE = 2;
/** The spawner's limit (task-shim --spawner --pool N). */
const MAX_POOL_SIZE = 64;

export class ShimSpawner {
  private helper: Helper | undefined;
  private nextId = 1;
  private readonly starting = new Map<string, { resolve: (shim: SpawnedShim) => void; reject: (error: Error) => void }>();
  private readonly running = new Map<string, SpawnedShim>();
  private readonly watches = new Map<string, { opened: () => void; gone: () => void }>();
  private closed = false;

  /**
   * `poolSize`: how many shims the helper keeps started ahead, each waiting for
   * the arguments of a start (spawner.c, "Pre-started shims"), so that a start
   * does not wait for exec and dynamic loading; 0: none, every start execs one.
   */
  constructor(
    readonly shimPath: string,
    private readonly log: Logger,
    private readonly poolSize = DEFAULT_POOL_SIZE,
  ) {
    if (!Number.isInteger(poolSize) || poolSize < 0 || poolSize > MAX_POOL_SIZE) throw new RangeError(`shim pool size must be 0 to ${MAX_POOL_SIZE}, got ${poolSize}`);
    if (!existsSync(shimPath)) throw new Error(`task-shim not found at ${shimPath}: run "npm run build:shim" (needs a C compiler)`);
  }

  /**
   * Starts `shimPath args...` in a session of its own with exactly `env`.
   * `gated`: its stdin is a pipe kept here, for `--gate 1` (see go/abort).
   */
  spawn(args: readonly string[], env: NodeJS.ProcessEnv, { gated = false } = {}): Promise<SpawnedShim> {
    if (this.closed) return Promise.reject(new Error('the executor is shutting down'));
    const environment = Object.entries(env).flatMap(([key, value]) => (value === undefined ? [] : [`${key}=${value}`]));
    const fields = [this.shimPath, ...args];
    // The request's fields end with NUL bytes; exec could not pass one anyway.
    const bad = [...fields, ...environment].find((field) => field.includes('\0'));
    if (bad !== undefined) return Promise.reject(new TypeError(`cannot pass a NUL byte to task-shim: ${JSON.stringify(bad.slice(0, 80))}`));
    const id = String(this.nextId++);
    const request = ['start', id, gated ? '1' : '0', String(fields.length), ...fields, String(environment.length), ...environment];
    return new Promise((resolve, reject) => {
      this.starting.set(id, { resolve, reject });
      this.send(request);
    });
  }

  /**
   * Calls `onGone` once when the process `pid` ends, pushed by a pidfd the
   * helper holds (for shims an earlier executor started: nothing else tells
   * of their end). `isSame` is asked once the pidfd is open, so a pid that
   * already names another process counts as gone. Also called, spuriously,
   * if the helper ends. Returns the cancel function.
   */
  watchPid(pid: number, isSame: () => boolean, onGone: () => void): () => void {
    if (this.closed) return () => {};
    const id = String(this.nextId++);
    let done = false;
    const fire = () => {
      if (done) return;
      done = true;
      this.watches.delete(id);
      onGone();
    };
    this.watches.set(id, { opened: () => isSame() || fire(), gone: fire });
    this.send(['watch', id, String(pid)]);
    return () => {
      done = true;
      this.watches.delete(id);
    };
  }

  private send(fields: readonly string[]): void {
    this.ensureHelper().stdin.write(fields.join('\0') + '\0');
  }

  /**
   * Ends the helper; shims it started keep running (their later lines are no
   * longer relayed). Until then the helper keeps the event loop alive, as the
   * server does: the executor owns it for its whole life.
   */
  close(): void {
    this.closed = true;
    this.helper?.stdin.end();
  }

  private ensureHelper(): Helper {
    if (this.helper) return this.helper;
    const helper = spawn(this.shimPath, ['--spawner', ...(this.poolSize > 0 ? ['--pool', String(this.poolSize)] : [])], { stdio: ['pipe', 'pipe', 'inherit'] });
    this.helper = helper;
    helper.stdin.on('error', () => {}); // a helper that died is handled on 'exit'
    helper.once('error', (error) => this.lose(helper, error.message));
    helper.once('exit', (code, signal) => this.lose(helper, `exit ${code ?? signal}`));
    // Split on LF only: readline also ends a line at a lone CR, which a relayed shim line may hold,
    // and the rest would be read as a reply of its own (about any shim).
    let partial = '';
    helper.stdout.setEncoding('utf8');
    helper.stdout.on('data', (chunk: string) => {
      const lines = (partial + chunk).split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines) this.onReply(line);
    });
    return helper;
  }

  private onReply(line: string): void {
    const first = line.indexOf(' ');
    const second = line.indexOf(' ', first + 1);
    const id = line.slice(0, first);
    const kind = line.slice(first + 1, second);
    const text = line.slice(second + 1);
    if (kind === 'out') this.running.get(id)?.line(text);
    else if (kind === 'err') this.running.get(id)?.errorLine(text);
    else if (kind === 'watching') this.watches.get(id)?.opened();
    else if (kind === 'gone') this.watches.get(id)?.gone();
    else if (kind === 'exit') {
      this.running.get(id)?.end(text, false);
      this.running.delete(id);
    } else if (kind === 'pid' || kind === 'error') {
      const start = this.starting.get(id);
      this.starting.delete(id);
      if (kind === 'pid') {
        const shim = new SpawnedShim(Number(text), (verb) => this.send([verb, id]));
        this.running.set(id, shim);
        start?.resolve(shim);
      } else if (start) {
        start.reject(new Error(`cannot start task-shim: ${text}`));
      } else {
        this.watches.get(id)?.gone(); // a pidfd could not be opened: let the caller look for itself
      }
    }
  }

  /** The helper ended: starts under way fail, running shims stop reporting, the next start begins a new helper. */
  private lose(helper: Helper, reason: string): void {
    if (this.helper !== helper) return;
    this.helper = undefined;
    if (!this.closed) this.log.warn({ reason }, 'the shim spawner ended; the next start begins a new one');
    for (const start of this.starting.values()) start.reject(new SpawnerLost(reason));
    for (const shim of this.running.values()) shim.end('unknown', true);
    const watches = [...this.watches.values()];
    this.starting.clear();
    this.running.clear();
    this.watches.clear();
    for (const watch of watches) watch.gone();
  }
}
