// A pino logger that keeps every line, to look through afterwards (for a
// secret that must not be there, a message that must).
import { Writable } from 'node:stream';
import { type Logger, pino } from 'pino';

export function capturingLogger(): { log: Logger; text: () => string } {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(chunk.toString());
      done();
    },
  });
  return { log: pino({ level: 'trace' }, sink), text: () => lines.join('') };
}
