// One executor per data dir. A second executor started on the same data dir
// (a mistyped --data-dir, a rolling update of pods sharing a hostPath) would
// take every task as its own: a Create of a name the first one runs wrote
// over that task's directory and record while its processes kept running,
// and after a restart the first task's processes were nobody's.
//
// The lock is a unix socket in the data dir that the executor listens on.
// Unlike a pid file it works across PID namespaces (pods sharing a hostPath
// see the same socket file), and the kernel releases it when the process
// dies: a file left by a `kill -9` accepts no connection, so the next
// executor removes it and takes the lock.
//
// That take-over is check-then-act (probe the file, remove it, bind), so two
// executors starting together after a crash could both find the dead file,
// and the slower one would remove the faster one's new socket and bind its
// own: both would hold the lock. So every attempt (bind, probe, remove, bind
// again) runs under an exclusive flock(2) on the data dir itself, taken by a
// short-lived helper (util/dir-flock.ts; released by the kernel when the
// helper or this process dies, and, being on the directory's inode, shared
// across PID namespaces like the socket). Why that is enough:
//
// - The socket file is created only by bind, which fails if the name exists,
//   and only inside the flock; every bind is followed by listen before the
//   flock is let go (Node binds and listens in one call; we release after its
//   callback). So whoever holds the flock next and finds a file finds it
//   either listening or belonging to a process that has closed it or died.
// - It is removed only (a) inside the flock, after a connect to it failed, so
//   its process is dead, or it is releasing and no longer listening; or (b)
//   by its own process on release: libuv unlinks the path before it closes
//   the socket, so a holder's release never removes a later holder's file (if
//   its file is gone, its path is free, and nobody else's file is there until
//   after it was unlinked).
// Hence a live holder's file is never removed by another executor, and at
// most one live process holds the lock. The flock is only held for those few
// milliseconds; the socket stays the lock for the process's life.
//
// If the flock cannot be taken (a --shim-path built before --lock-dir
// existed, a file system without flock), the take-over runs without it, as
// before, with a warning.
import { rmSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { DirFlockTimeoutError, flockDir, type HeldDirFlock } from '../util/dir-flock.js';
import { errorMessage } from '../errors.js';
import { errnoOf, errnoText } from '../util/errno.js';
import { MAX_UNIX_SOCKET_PATH_BYTES, socketAnswers } from '../util/unix-socket.js';

/** In the data dir; dot-names are never task directories (task names start with a letter or digit). */
export const LOCK_NAME = '.executor.lock';

export interface DataDirLock {
  release(): Promise<void>;
}

export class DataDirInUseError extends Error {}

const NO_LOCK: DataDirLock = { release: async () => {} };

/** How long an attempt waits for another one on the same data dir (which takes milliseconds). */
const TAKEOVER_WAIT_MS = 30_000;

/**
 * Takes the data dir's lock; throws DataDirInUseError when a live process holds it.
 * `shimPath` is the task-shim, whose --lock-dir mode makes attempts on one data dir take turns.
 */
export async function lockDataDir(dataDir: string, shimPath: string, log: Logger): Promise<DataDirLock> {
  const path = join(dataDir, LOCK_NAME);
  if (Buffer.byteLength(path) > MAX_UNIX_SOCKET_PATH_BYTES) {
    log.warn({ path }, `the data dir's path is too long for its lock socket (at most ${MAX_UNIX_SOCKET_PATH_BYTES} bytes): nothing stops a second executor on this data dir`);
    return NO_LOCK;
  }
  const turn = await takeTurn(dataDir, shimPath, log);
  try {
    return await bindLock(dataDir, path, log);
  } finally {
    await turn?.release();
  }
}

/** The flock that makes lock attempts on `dataDir` take turns; undefined when it cannot be had. */
async function takeTurn(dataDir: string, shimPath: string, log: Logger): Promise<HeldDirFlock | undefined> {
  try {
    return await flockDir(shimPath, dataDir, TAKEOVER_WAIT_MS);
  } catch (error) {
    if (error instanceof DirFlockTimeoutError) {
      throw new DataDirInUseError(
        `data dir ${dataDir}: another executor has been taking its lock for more than ${TAKEOVER_WAIT_MS / 1000} s (${error.message}); is one stopped (SIGSTOP) while starting?`,
      );
    }
    log.warn(
      { dataDir, error: errorMessage(error) },
      'cannot flock the data dir: two executors starting at the same moment after a crash could both take its lock',
    );
    return undefined;
  }
}

async function bindLock(dataDir: string, path: string, log: Logger): Promise<DataDirLock> {
  for (let attempt = 0; ; attempt++) {
    const server = createServer((connection) => connection.destroy());
    try {
      await listen(server, path);
    } catch (error) {
      if (errnoOf(error) === 'EADDRINUSE' && attempt === 0) {
        if (await socketAnswers(path)) {
          throw new DataDirInUseError(
            `data dir ${dataDir} is in use by another executor (it listens on ${path}): two executors on one data dir would both take its tasks as ` +
              'their own; stop the other one first, or give this one its own --data-dir',
          );
        }
        rmSync(path, { force: true }); // left by an executor that died (or gone: its owner has just released it)
        log.warn({ path }, 'removed the lock of an executor that is gone');
        continue;
      }
      // A file system without unix sockets must not keep the executor from starting.
      log.warn({ path, error: errnoText(error) }, 'cannot create the data dir lock: nothing stops a second executor on this data dir');
      return NO_LOCK;
    }
    // It must not keep the process alive on its own (a failed start exits).
    server.unref();
    return {
      release: () =>
        new Promise<void>((resolve) => {
          // close() removes the socket file (before it closes the socket: see the top of this file).
          server.close(() => resolve());
        }),
    };
  }
}

function listen(server: Server, path: string): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => {
      server.off('error', reject);
      resolve();
    });
  });
}
