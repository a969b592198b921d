// Composition root: builds the store, the enabled runtimes, the manager and
// the server from a Config. main.ts and the tests both start executors here.
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { ChunkWorkers } from './api/log-chunks-offload.js';
import { startServer } from './api/server.js';
import { type RunningRestServer, startRestServer } from './compat/rest-server.js';
import { type Config, perUserDataDir } from './config.js';
import { ArtifactCache, CACHE_DIR } from './artifacts/cache.js';
import { DataDirInUseError, lockDataDir } from './store/data-dir-lock.js';
import { ArtifactFetcher } from './artifacts/fetcher.js';
import { errorMessage } from './errors.js';
import { describeAccess, isAuthenticated, loadSecurity, metricsAccess, type Security } from './security.js';
import { TaskManager } from './manager/task-manager.js';
import type { TaskSpec } from './model/task.js';
import { Metrics } from './metrics/metrics.js';
import { startMetricsServer } from './metrics/metrics-server.js';
import { CgroupManager } from './runtime/cgroups/index.js';
import { type ContainerRuntime, startContainerRuntime } from './runtime/container/container-runtime.js';
import { RegistryAuth } from './runtime/container/registry-auth.js';
import { ProcessRuntime } from './runtime/process/process-runtime.js';
import { ShimSpawner } from './runtime/process/shim-spawner.js';
import { RuntimeRegistry } from './runtime/registry.js';
import { ensureShim } from './runtime/shim/ensure-shim.js';
import { FILTERS_DIR } from './runtime/shim/compiled-filters.js';
import { TaskPrivileges } from './runtime/shim/task-privileges.js';
import { processBackends, sidecarModeProblem } from './runtime/sidecar/index.js';
import { TaskStore } from './store/task-store.js';
import { packageRoot } from './util/package-root.js';

export interface Executor {
  address: string;
  /** host:port of /metrics, when enabled. */
  metricsAddress?: string;
  /** host:port of the original REST API, when enabled. */
  restAddress?: string;
  dataDir: string;
  manager: TaskManager;
  /** The worker threads of bulk Logs reads (--logs-read-workers), for tests. */
  logReadWorkers?: ChunkWorkers;
  /** Stops serving and supervising; tasks keep running. */
  close(): Promise<void>;
}

export class StartupError extends Error {}

export async function startExecutor(config: Config, log: Logger): Promise<Executor> {
  const sidecarProblem = config.enableSidecarMode ? sidecarModeProblem() : undefined;
  if (sidecarProblem) throw new StartupError(`--enable-sidecar-mode: ${sidecarProblem}`);
  let security: Security;
  try {
    security = loadSecurity(config);
  } catch (error) {
    throw new StartupError(errorMessage(error));
  }
  let shimPath: string;
  try {
    shimPath = config.shimPath || ensureShim(packageRoot(), log);
  } catch (error) {
    throw new StartupError(errorMessage(error));
  }
  const dataDir = await resolveDataDir(config, log);
  let containers: ContainerRuntime | undefined;
  const registryAuth = loadRegistryAuth(config, log);
  if (config.containerSandboxPool > 0 && !config.enableContainerMode) {
    throw new StartupError('--container-sandbox-pool is for container tasks: give --enable-container-mode too');
  }
  // Before anything touches the data dir's tasks, containers or cgroups.
  const lock = await lockDataDir(dataDir, shimPath, log).catch((error: unknown) => {
    throw error instanceof DataDirInUseError ? new StartupError(error.message) : error;
  });
  if (config.enableContainerMode) {
    try {
      containers = await startContainerRuntime({
        criSocket: config.criSocket,
        volumes: new Map(Object.entries(config.volumes)),
        cgroupParent: config.containerCgroupParent,
        pullTimeoutMs: config.imagePullTimeoutMs,
        registryAuth,
        logMaxBytes: config.logMaxBytes,
        logMaxFiles: config.logMaxFiles,
        seccompDefault: config.taskSeccomp,
        sandboxPool: config.containerSandboxPool,
        dataDir,
        log: log.child({ component: 'container-runtime' }),
      });
    } catch (error) {
      await lock.release();
      throw new StartupError(`--enable-container-mode: ${errorMessage(error)}`);
    }
  }
  const store = new TaskStore(dataDir, log.child({ component: 'store' }));
  // Least privilege for process and sidecar tasks: the defaults, and what this shim build can apply.
  const privileges = TaskPrivileges.forShim(
    shimPath,
    { capabilities: config.taskCapabilities, seccomp: config.taskSeccomp },
    config.seccompProfileRoot,
    join(dataDir, FILTERS_DIR),
  );
  const described = privileges.describe();
  log.info({ taskCapabilities: config.taskCapabilities, taskSeccomp: config.taskSeccomp }, described.message);
  for (const missing of described.missing) log.warn(`task privileges: ${missing}`);
  privileges.precompileDefault();
  // Per-task cgroups: the hierarchy --cgroup-root names, or the one this host mounts ("off": none).
  const cgroups = new CgroupManager({ root: config.cgroupRoot || undefined, log: log.child({ component: 'cgroups' }) });
  // One small helper process starts every shim, so the executor never forks itself (see spawner.c).
  const spawner = new ShimSpawner(shimPath, log.child({ component: 'shim-spawner' }));
  const runtimes = new RuntimeRegistry(
    [
      // In sidecar mode, new process tasks go to the sidecar backend, which wraps this runtime.
      ...processBackends(config, log, shimPath, new ProcessRuntime({
        spawner,
        logMaxBytes: config.logMaxBytes,
        logMaxFiles: config.logMaxFiles,
        plainLogFiles: config.plainLogFiles,
        log: log.child({ component: 'process-runtime' }),
        cgroups,
        privileges,
      }), privileges),
      ...(containers ? [containers] : []),
    ],
    [
      ...(containers ? [] : [{ accepts: (spec: TaskSpec) => spec.container !== undefined, reason: 'start the executor with --enable-container-mode' }]),
    ],
  );
  const artifactLog = log.child({ component: 'artifacts' });
  const artifacts = new ArtifactFetcher({
    ...(config.artifactCacheBytes > 0 ? { cache: new ArtifactCache(join(dataDir, CACHE_DIR), config.artifactCacheBytes, artifactLog) } : {}),
    maxBytes: config.artifactMaxBytes,
    maxEntries: config.artifactMaxEntries,
    timeoutMs: config.artifactFetchTimeoutMs,
    log: artifactLog,
  });
  const manager = new TaskManager({
    store,
    artifacts,
    runtimes,
    log: log.child({ component: 'manager' }),
    reconcileIntervalMs: config.reconcileIntervalMs,
    maxTasks: config.maxTasks > 0 ? config.maxTasks : undefined,
    stopSignal: config.stopSignal,
    stopGraceMs: config.stopGraceMs,
  });
  // Everything started so far, closed in reverse order on shutdown or on a failed start.
  // The store after the manager (its admission writer's thread).
  const closers: (() => unknown)[] = [() => lock.release(), () => store.close(), () => containers?.close(), () => spawner.close()];
  const closeAll = async () => {
    for (const close of closers.reverse().splice(0)) await close();
  };
  try {
    await manager.start();
    closers.push(() => manager.close());
    // Closed first (closers run in reverse): a fetch in flight must not hold up the manager's drain.
    closers.push(() => artifacts.close());
    const metrics = config.metricsListenAddr ? new Metrics(manager) : undefined;
    const server = await startServer({
      listenAddr: config.listenAddr,
      manager,
      log: log.child({ component: 'api' }),
      security,
      interceptors: metrics ? [metrics.interceptor] : [],
      logsReadWorkers: config.logsReadWorkers,
      connections: {
        maxIdleMs: config.grpcMaxConnectionIdleMs,
        keepaliveTimeMs: config.grpcKeepaliveTimeMs,
        keepaliveTimeoutMs: config.grpcKeepaliveTimeoutMs,
      },
      maxLogStreams: config.maxLogStreams,
      maxStreams: config.maxStreams,
    });
    closers.push(() => server.close());
    const access = metricsAccess(security, config.metricsAuth);
    const metricsServer = metrics
      ? await startMetricsServer({ listenAddr: config.metricsListenAddr, metrics, access, log: log.child({ component: 'metrics' }) })
      : undefined;
    if (metricsServer) {
      closers.push(() => metricsServer.close());
      log.info(
        { address: metricsServer.address, metricsAuth: config.metricsAuth },
        `metrics listening on /metrics: --metrics-auth ${config.metricsAuth} (${describeAccess(access)})`,
      );
    }
    let rest: RunningRestServer | undefined;
    if (config.httpListenAddr) {
      rest = await startRestServer({ listenAddr: config.httpListenAddr, manager, log: log.child({ component: 'rest' }), security });
      closers.push(() => rest?.close());
      warnIfExposed(rest.address, security, log);
      log.info({ address: rest.address }, 'original REST API listening');
    }
    warnIfExposed(server.address, security, log);
    log.info({ address: server.address, dataDir }, 'task-executor listening');
    return {
      address: server.address,
      restAddress: rest?.address,
      metricsAddress: metricsServer?.address,
      dataDir,
      manager,
      logReadWorkers: server.logReadWorkers,
      close: closeAll,
    };
  } catch (error) {
    await closeAll();
    throw error instanceof StartupError ? error : new StartupError(errorMessage(error));
  }
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

/** --image-pull-config, read and checked before anything starts: a bad file stops the executor with what is wrong in it. */
function loadRegistryAuth(config: Config, log: Logger): RegistryAuth | undefined {
  if (!config.imagePullConfig) return undefined;
  if (!config.enableContainerMode) throw new StartupError('--image-pull-config is for container tasks: give --enable-container-mode too');
  let auth: RegistryAuth;
  try {
    auth = RegistryAuth.load(config.imagePullConfig);
  } catch (error) {
    throw new StartupError(`--image-pull-config: ${errorMessage(error)}`);
  }
  log.info({ file: config.imagePullConfig, registries: auth.registries }, 'container mode: registry credentials loaded');
  return auth;
}
