// Whether a unix socket file has a process behind it: the test for a stale
// socket file (its process died without removing it) before binding the path.
import { connect } from 'node:net';

/** Resolves true when something accepts a connection on `path`, false on any error (ECONNREFUSED: a stale file). */
export function socketAnswers(path: string): Promise<boolean> {
  return new Promise<boolean>((resolve) => {
    const socket = connect(path);
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/** The longest path a unix socket can be bound to on Linux (sun_path holds 108 bytes with the NUL). */
export const MAX_UNIX_SOCKET_PATH_BYTES = 107;
