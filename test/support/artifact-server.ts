// A local HTTP server for artifact tests: /script.sh at once, /gated/script.sh
// held until open() (a slow download), 404 for anything else; and tasks that
// fetch artifacts.
import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Artifact } from '../../gen/taskexecutor/v1/task.js';
import { type ProcessExtra, processTask } from './executor.js';

export const SCRIPT = 'echo "hello from the downloaded script"\n';
export const sha256 = (data: string) => `sha256:${createHash('sha256').update(data).digest('hex')}`;

/**
 * Serves /script.sh at once, and /gated/script.sh only once open() was
 * called: until then it sends the headers and the first bytes and holds the
 * rest, like a slow download.
 */
export class ScriptServer {
  private server: Server | undefined;
  private held: ServerResponse[] = [];
  private opened = false;
  requests = 0;
  /** Gated requests whose connection the client closed before the body was complete. */
  abandoned = 0;
  url = '';

  async start(): Promise<void> {
    this.server = createServer((req, res) => this.handle(req, res));
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    this.requests++;
    if (req.url === '/script.sh') {
      res.end(SCRIPT);
    } else if (req.url === '/gated/script.sh') {
      if (this.opened) {
        res.end(SCRIPT);
        return;
      }
      res.writeHead(200, { 'content-length': String(Buffer.byteLength(SCRIPT)) });
      res.write(SCRIPT.slice(0, 4));
      this.held.push(res);
      res.on('close', () => {
        if (!res.writableEnded) this.abandoned++;
      });
    } else {
      res.writeHead(404).end();
    }
  }

  open(): void {
    this.opened = true;
    for (const res of this.held.splice(0)) res.end(SCRIPT.slice(4));
  }

  close(): void {
    this.server?.closeAllConnections();
    this.server?.close();
  }
}

/** A process task running `command` with these artifacts. */
export const withArtifacts = (name: string, command: string[], artifacts: Partial<Artifact>[], extra: ProcessExtra = {}) => {
  const task = processTask(name, command, extra);
  task.spec!.artifacts = artifacts.map((a) => Artifact.fromPartial(a));
  return task;
};
