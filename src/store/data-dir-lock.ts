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
import { unlinkSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { errnoOf, errnoText } from '../util/errno.js';
import { MAX_UNIX_SOCKET_PATH_BYTES, socketAnswers } from '../util/unix-socket.js';

/** In the data dir; dot-names are never task directories (task names start with a letter or digit). */
export const LOCK_NAME = '.executor.lock';

export interface DataDirLock {
  release(): Promise<void>;
}

export class DataDirInUseError extends Error {}

const NO_LOCK: DataDirLock = { release: async () => {} };

/** Takes the data dir's lock; throws DataDirInUseError when a live process holds it. */
export async function lockDataDir(dataDir: string, log: Logger): Promise<DataDirLock> {
  const path = join(dataDir, LOCK_NAME);
  if (Buffer.byteLength(path) > MAX_UNIX_SOCKET_PATH_BYTES) {
    log.warn({ path }, `the data dir's path is too long for its lock socket (at most ${MAX_UNIX_SOCKET_PATH_BYTES} bytes): nothing stops a second executor on this data dir`);
    return NO_LOCK;
  }
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
        unlinkSync(path); // left by an executor that died
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
          // close() removes the socket file.
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
