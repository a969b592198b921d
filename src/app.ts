// Composition root: builds the store, the enabled runtimes, the manager and
// the server from a Config. main.ts and the tests both start executors here.
import { join } from 'node:path';
import type { Logger } from 'pino';
import { startServer } from './api/server.js';
import { type RunningRestServer, startRestServer } from './compat/rest-server.js';
import { type Config, perUserDataDir } from './config.js';
import { errorMessage } from './errors.js';
import { isAuthenticated, loadSecurity, type Security } from './security.js';
import { TaskManager } from './manager/task-manager.js';
import { ProcessRuntime } from './runtime/process/process-runtime.js';
import { RuntimeRegistry } from './runtime/registry.js';
import { TaskStore } from './store/task-store.js';
import { packageRoot } from './util/package-root.js';

export interface Executor {
  address: string;
  /** host:port of the original REST API, when enabled. */
  restAddress?: string;
  dataDir: string;
  manager: TaskManager;
  /** Stops serving and supervising; tasks keep running. */
  close(): Promise<void>;
}

export class StartupError extends Error {}

export async function startExecutor(config: Config, log: Logger): Promise<Executor> {
  if (config.enableSidecarMode) {
    throw new StartupError('--enable-sidecar-mode: the sidecar backend is not available in this version yet');
  }
  if (config.enableContainerMode) {
    throw new StartupError('--enable-container-mode: the container (CRI) backend is not available in this version yet');
  }
  let security: Security;
  try {
    security = loadSecurity(config);
  } catch (error) {
    throw new StartupError(errorMessage(error));
  }
  const dataDir = await resolveDataDir(config, log);
  const store = new TaskStore(dataDir, log.child({ component: 'store' }));
  const runtimes = new RuntimeRegistry(
    [
      new ProcessRuntime({
        shimPath: process.env.TASK_SHIM_PATH || join(packageRoot(), 'build', 'task-shim'),
        logMaxBytes: config.logMaxBytes,
        logMaxFiles: config.logMaxFiles,
        log: log.child({ component: 'process-runtime' }),
      }),
    ],
    [{ accepts: (spec) => spec.container !== undefined, reason: 'start the executor with --enable-container-mode' }],
  );
  const manager = new TaskManager({
    store,
    runtimes,
    log: log.child({ component: 'manager' }),
    reconcileIntervalMs: config.reconcileIntervalMs,
    stopSignal: config.stopSignal,
    stopGraceMs: config.stopGraceMs,
  });
  await manager.start();
  let server;
  try {
    server = await startServer({ listenAddr: config.listenAddr, manager, log: log.child({ component: 'api' }), security });
  } catch (error) {
    await manager.close();
    throw new StartupError(errorMessage(error));
  }
  let rest: RunningRestServer | undefined;
  if (config.httpListenAddr) {
    try {
      rest = await startRestServer({ listenAddr: config.httpListenAddr, manager, log: log.child({ component: 'rest' }), security });
    } catch (error) {
      await server.close();
      await manager.close();
      throw new StartupError(errorMessage(error));
    }
    warnIfExposed(rest.address, security, log);
    log.info({ address: rest.address }, 'original REST API listening');
  }
  warnIfExposed(server.address, security, log);
  log.info({ address: server.address, dataDir }, 'task-executor listening');
  return {
    address: server.address,
    restAddress: rest?.address,
    dataDir,
    manager,
    close: async () => {
      await rest?.close();
      await server.close();
      await manager.close();
    },
  };
}

async function resolveDataDir(config: Config, log: Logger): Promise<string> {
  try {
    await TaskStore.ensureWritable(config.dataDir);
    return config.dataDir;
  } catch (error) {
    if (config.dataDirExplicit) {
      throw new StartupError(`data dir ${config.dataDir} is not writable (${errorMessage(error)}); choose another with --data-dir`);
    }
    const fallback = perUserDataDir();
    try {
      await TaskStore.ensureWritable(fallback);
    } catch (fallbackError) {
      throw new StartupError(
        `neither the default data dir ${config.dataDir} (${errorMessage(error)}) nor ${fallback} ` +
          `(${errorMessage(fallbackError)}) is writable; choose one with --data-dir`,
      );
    }
    log.warn({ default: config.dataDir, using: fallback }, `default data dir is not writable; using per-user dir ${fallback}`);
    return fallback;
  }
}

function warnIfExposed(address: string, security: Security, log: Logger): void {
  if (address.startsWith('unix:') || isAuthenticated(security)) return;
  const host = address.replace(/:\d+$/, '').replace(/^\[|\]$/g, '');
  if (host === 'localhost' || host.startsWith('127.') || host === '::1') return;
  log.warn(
    { address },
    'the API has no authentication and listens beyond loopback: anyone who can reach it can run commands here ' +
      '(use --auth-token-file, --tls-client-ca-file, or a unix:// or loopback address)',
  );
}
