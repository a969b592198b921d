// Serves /metrics (Prometheus text format) on its own, optional address.
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { splitHostPort } from '../util/host-port.js';
import type { Metrics } from './metrics.js';

export async function startMetricsServer(listenAddr: string, metrics: Metrics): Promise<{ address: string; close(): Promise<void> }> {
  const [host, port] = splitHostPort(listenAddr, '--metrics-listen-addr', '0.0.0.0:9090');
  const server = createServer((request, response) => {
    if (request.method !== 'GET' || new URL(request.url ?? '/', 'http://x').pathname !== '/metrics') {
      response.writeHead(404, { 'Content-Type': 'text/plain' }).end('try GET /metrics\n');
      return;
    }
    metrics.render().then(
      ({ contentType, body }) => response.writeHead(200, { 'Content-Type': contentType }).end(body),
      (error: unknown) => response.writeHead(500, { 'Content-Type': 'text/plain' }).end(String(error)),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (error) => reject(new Error(`cannot listen on ${listenAddr}: ${error.message}`)));
    server.listen(port, host, resolve);
  });
  const bound = (server.address() as AddressInfo).port;
  return { address: `${host}:${bound}`, close: () => new Promise((resolve) => server.close(() => resolve())) };
}
