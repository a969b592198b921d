import { constants } from 'node:os';

/** "TERM", "sigterm" or "SIGTERM" -> "SIGTERM"; undefined for anything that is not a signal name. */
export function parseSignal(name: string): NodeJS.Signals | undefined {
  const upper = name.trim().toUpperCase();
  const full = (upper.startsWith('SIG') ? upper : `SIG${upper}`) as NodeJS.Signals;
  return full in constants.signals ? full : undefined;
}
