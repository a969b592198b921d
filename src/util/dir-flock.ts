// An exclusive flock(2) on a directory, for a short critical section. Node has
// no flock, so `task-shim --lock-dir DIR` (task-shim.c) takes it and holds it
// while its stdin is open: the kernel releases it when that helper exits, which
// it does when we close its stdin or when this process dies (the pipe's EOF).
// Like the flock itself, it works across PID namespaces: it is on the
// directory's inode, which every process that mounts the directory shares.
import { spawn } from 'node:child_process';
import { once } from 'node:events';

export interface HeldDirFlock {
  /** Ends the helper; the lock is free once this resolves. */
  release(): Promise<void>;
}

/** The lock could not be taken at all (a shim without --lock-dir, a file system without flock...). */
export class DirFlockUnavailableError extends Error {}

/** Another process held the lock for longer than the wait allowed. */
export class DirFlockTimeoutError extends Error {}

/** Waits up to `timeoutMs` for an exclusive flock on `dir`, held through `<shimPath> --lock-dir`. */
export function flockDir(shimPath: string, dir: string, timeoutMs: number): Promise<HeldDirFlock> {
  const helper = spawn(shimPath, ['--lock-dir', dir], { stdio: ['pipe', 'pipe', 'pipe'] });
  const exited = once(helper, 'close').catch(() => undefined);
  const release = async () => {
    helper.stdin.end();
    await exited;
  };
  return new Promise<HeldDirFlock>((resolve, reject) => {
    let stdout = '';
    let stderr = '';
    let settled = false;
    const fail = (error: Error) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      helper.kill('SIGKILL');
      reject(error);
    };
    const timer = setTimeout(
      () => fail(new DirFlockTimeoutError(`another process has held the lock on ${dir} for more than ${timeoutMs} ms`)),
      timeoutMs,
    );
    helper.stdin.on('error', () => {}); // EPIPE when the helper has gone: its exit is reported below
    helper.stderr.on('data', (chunk: Buffer) => void (stderr += chunk.toString()));
    helper.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
      const line = stdout.split('\n', 2);
      if (line.length < 2) return;
      if (settled) return;
      if (line[0] === 'locked') {
        settled = true;
        clearTimeout(timer);
        resolve({ release });
      } else {
        fail(new DirFlockUnavailableError(line[0]!.replace(/^error /, '')));
      }
    });
    helper.once('error', (error) => fail(new DirFlockUnavailableError(`cannot run ${shimPath}: ${error.message}`)));
    // 'close', not 'exit': by then its stdout has been read, so an "error ..." line wins.
    helper.once('close', (code, signal) => {
      if (!settled) {
        fail(new DirFlockUnavailableError(`${shimPath} --lock-dir ended (${signal ?? `exit ${code}`}) without the lock: ${stderr.trim() || stdout.trim()}`));
      }
    });
  });
}
