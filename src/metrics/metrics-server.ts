// Serves /metrics (Prometheus text format) on its own, optional address, with
// the access rules --metrics-auth chose (by default the API's TLS and token).
import type { Logger } from 'pino';
import type { HttpAccess } from '../security.js';
import { HttpError, type RunningHttpListener, startHttpListener } from '../util/http-listener.js';
import type { Metrics } from './metrics.js';

export function startMetricsServer(options: { listenAddr: string; metrics: Metrics; access: HttpAccess; log: Logger }): Promise<RunningHttpListener> {
  return startHttpListener({
    listenAddr: options.listenAddr,
    flag: '--metrics-listen-addr',
    example: '0.0.0.0:9090',
    access: options.access,
    log: options.log,
    handle: async (request, response, path) => {
      if (path !== '/metrics') throw new HttpError(404, `no such path ${JSON.stringify(path.slice(0, 200))}: this listener serves only GET /metrics`);
      if (request.method !== 'GET' && request.method !== 'HEAD') throw new HttpError(405, 'use GET /metrics', { Allow: 'GET, HEAD' });
      request.resume();
      const { contentType, body } = await options.metrics.render();
      response.writeHead(200, { 'Content-Type': contentType }).end(body);
    },
  });
}
