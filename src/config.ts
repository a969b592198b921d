// Flags and environment variables. Every flag of the original task-executor is
// accepted (also in Go's single-dash form); a flag wins over its env var.
import { homedir } from 'node:os';
import { join } from 'node:path';
import { Command, InvalidArgumentError, Option } from 'commander';
import { DEFAULT_SECCOMP_PROFILE_ROOT } from './model/seccomp-profile.js';
import { METRICS_AUTH_MODES, type MetricsAuth } from './security.js';
import { parseDuration } from './util/duration.js';
import { parseSignal } from './util/signals.js';

export const DEFAULT_DATA_DIR = '/var/lib/sandbox/tasks';
/** --max-log-streams: a few per task of a busy node; streams whose clients do not read then hold about 300 MiB at most (RSS). */
export const DEFAULT_MAX_LOG_STREAMS = 256;
/** --max-streams: Watch and Stats streams are light (a subscription, a timer), but each Stats one reads cgroup files on its interval. */
export const DEFAULT_MAX_STREAMS = 1024;

export interface Config {
  dataDir: string;
  /** False when dataDir is the built-in default, which may be replaced by a per-user dir. */
  dataDirExplicit: boolean;
  listenAddr: string;
  /** Optional listener for the original REST API; empty when off. */
  httpListenAddr: string;
  enableSidecarMode: boolean;
  mainContainerName: string;
  /** Sidecar mode: the main container's pid, instead of looking for SANDBOX_MAIN_CONTAINER. */
  mainContainerPid?: number;
  /** Sidecar mode: a file holding the main container's pid, read again before every start. */
  mainContainerPidFile?: string;
  enableContainerMode: boolean;
  criSocket: string;
  /** Container mode: volume name -> absolute host path, for ContainerSpec.volumeMounts (--volume). */
  volumes: Record<string, string>;
  /** Container mode: cgroup parent of every task's pod sandbox; empty for the runtime's default. */
  containerCgroupParent: string;
  /** Container mode: how long getting an image may take, its pull attempts and the back-off between them together. */
  imagePullTimeoutMs: number;
  /** Container mode: a Docker config.json with registry credentials for pulls; empty: pull anonymously. */
  imagePullConfig: string;
  /** Container mode: pod sandboxes made ahead of time for container tasks to start in; 0: one made per start. */
  containerSandboxPool: number;
  /** The safety-net resync of every task; changes are normally pushed by the runtimes. */
  reconcileIntervalMs: number;
  /** Most tasks held at once (being deleted included); 0: no limit. */
  maxTasks: number;
  /** Worker threads for bulk chunked Logs reads, started when needed (0: all on the main thread). */
  logsReadWorkers: number;
  /** gRPC: a connection with no call open this long is closed (GOAWAY); 0: never. */
  grpcMaxConnectionIdleMs: number;
  /** gRPC: how often the server pings each connection; 0: never. */
  grpcKeepaliveTimeMs: number;
  /** gRPC: a ping not answered within this closes the connection and cancels its calls. */
  grpcKeepaliveTimeoutMs: number;
  /** Most Logs streams open at once; more is RESOURCE_EXHAUSTED; 0: no limit. */
  maxLogStreams: number;
  /** Most Watch and Stats streams open at once (together); more is RESOURCE_EXHAUSTED; 0: no limit. */
  maxStreams: number;
  stopSignal: NodeJS.Signals;
  stopGraceMs: number;
  logMaxBytes: number;
  logMaxFiles: number;
  /**
   * Also keep <task dir>/stdout.log and stderr.log as plain text (the original's layout),
   * each bounded by logMaxFiles x logMaxBytes. Default: on when httpListenAddr is set.
   */
  plainLogFiles: boolean;
  logLevel: string;
  tlsCertFile: string;
  tlsKeyFile: string;
  tlsClientCaFile: string;
  authTokenFile: string;
  unixSocketMode: number;
  /** Optional Prometheus /metrics listener; empty when off. */
  metricsListenAddr: string;
  /** Access to /metrics: "api" (the API's TLS and token) or "none" (plain HTTP, open). */
  metricsAuth: MetricsAuth;
  /** Where the cgroup hierarchies are mounted; empty: detect; "off": no cgroups. */
  cgroupRoot: string;
  /** A built task-shim to use instead of the package's own (build/task-shim, built on first start if missing). */
  shimPath: string;
  /** Capabilities of process and sidecar tasks: "default" (Docker's set) or "all" (the original executor's: untouched). */
  taskCapabilities: 'default' | 'all';
  /** Seccomp of process and sidecar tasks without a profile of their own, and of container tasks: "default" or "unconfined". */
  taskSeccomp: 'default' | 'unconfined';
  /** Where process and sidecar tasks' LOCALHOST seccomp profiles are read from (a relative localhostProfile is under it). */
  seccompProfileRoot: string;
  /** Artifacts: largest download, and most bytes one archive unpacks to. */
  artifactMaxBytes: number;
  /** Artifacts: most entries one archive may hold. */
  artifactMaxEntries: number;
  /** Artifacts: longest one artifact's fetch may take, retries included. */
  artifactFetchTimeoutMs: number;
  /** Artifacts: size of the cache of checksummed artifacts under the data dir; 0: no cache. */
  artifactCacheBytes: number;
}

const bool = (value: string | undefined): boolean => {
  if (value === undefined || /^(1|t|true|yes|on)$/i.test(value)) return true;
  if (/^(0|f|false|no|off)$/i.test(value)) return false;
  throw new InvalidArgumentError('expected true or false');
};

const duration = (value: string): number => {
  try {
    return parseDuration(value);
  } catch (error) {
    throw new InvalidArgumentError((error as Error).message);
  }
};

/** Node's longest timer (about 24.8 days): a longer one fires after 1 ms instead. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** A duration a timer is set to (grpc-js sets its keepalive and idle timers to these): at most MAX_TIMER_MS. */
const timerDuration = (value: string): number => {
  const ms = duration(value);
  if (ms > MAX_TIMER_MS) throw new InvalidArgumentError('expected at most 596h (about 24.8 days, the longest timer); use 0s to turn it off where that is allowed');
  return ms;
};

const positiveDuration = (value: string): number => {
  const ms = timerDuration(value);
  if (ms <= 0) throw new InvalidArgumentError('expected a duration above zero, e.g. 20s');
  return ms;
};

const positiveInt = (min: number) => (value: string): number => {
  const n = Number(value);
  if (!Number.isInteger(n) || n < min) throw new InvalidArgumentError(`expected a whole number >= ${min}`);
  return n;
};

const poolSize = (value: string): number => {
  const n = positiveInt(0)(value);
  if (n > 64) throw new InvalidArgumentError('expected at most 64 (each idle sandbox is a pause process)');
  return n;
};

const octalMode = (value: string): number => {
  if (!/^0?[0-7]{3}$/.test(value)) throw new InvalidArgumentError('expected octal permission bits such as 0660');
  return parseInt(value, 8);
};

// A volume name is what ContainerSpec.volumeMounts[].name must match: a DNS-1123 subdomain.
const VOLUME_NAME = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/** NAME=HOSTPATH, repeatable; the env var takes a comma-separated list. */
const volumes = (value: string, previous: Record<string, string>): Record<string, string> => {
  const result = { ...previous };
  for (const entry of value.split(',').map((e) => e.trim()).filter(Boolean)) {
    const eq = entry.indexOf('=');
    const name = entry.slice(0, eq);
    const hostPath = entry.slice(eq + 1);
    if (eq <= 0 || !VOLUME_NAME.test(name) || name.length > 253) {
      throw new InvalidArgumentError(`expected NAME=HOSTPATH with NAME a DNS-1123 name such as "data"; got ${JSON.stringify(entry)}`);
    }
    if (!hostPath.startsWith('/')) throw new InvalidArgumentError(`the host path of volume "${name}" must be absolute; got ${JSON.stringify(hostPath)}`);
    if (name in result) throw new InvalidArgumentError(`volume "${name}" is given more than once`);
    result[name] = hostPath;
  }
  return result;
};

const signal = (value: string): NodeJS.Signals => {
  const name = parseSignal(value);
  if (!name) throw new InvalidArgumentError('expected a signal name such as SIGTERM, SIGINT or SIGQUIT');
  return name;
};

function program(): Command {
  return new Command('task-executor')
    .description('Runs and supervises short-lived tasks behind a gRPC API (with reflection and grpc.health.v1).')
    .addOption(new Option('--data-dir <path>', 'task state and logs').env('DATA_DIR'))
    .addOption(
      new Option('--listen-addr <addr>', 'gRPC address: host:port or unix:///path.sock').env('LISTEN_ADDR').default('0.0.0.0:5758'),
    )
    .addOption(
      new Option('--http-listen-addr <addr>', "also serve the original REST API here (host:port); off when empty")
        .env('HTTP_LISTEN_ADDR')
        .default(''),
    )
    .addOption(
      new Option('--enable-sidecar-mode [bool]', "run process tasks in the main container's namespaces")
        .env('ENABLE_SIDECAR_MODE')
        .argParser(bool)
        .default(false),
    )
    .addOption(
      new Option('--main-container-name <name>', 'sidecar mode: value of SANDBOX_MAIN_CONTAINER marking the main container')
        .env('MAIN_CONTAINER_NAME')
        .default('main'),
    )
    .addOption(
      new Option('--main-container-pid <pid>', 'sidecar mode: pid of the main container (instead of the SANDBOX_MAIN_CONTAINER lookup)')
        .env('MAIN_CONTAINER_PID')
        .argParser(positiveInt(1)),
    )
    .addOption(
      new Option('--main-container-pid-file <path>', "sidecar mode: file holding the main container's pid, read before every start")
        .env('MAIN_CONTAINER_PID_FILE'),
    )
    .addOption(
      new Option('--enable-container-mode [bool]', 'run container tasks through the CRI')
        .env('ENABLE_CONTAINER_MODE')
        .argParser(bool)
        .default(false),
    )
    .addOption(
      new Option('--cri-socket <path>', 'CRI runtime socket').env('CRI_SOCKET').default('/var/run/containerd/containerd.sock'),
    )
    .addOption(
      new Option('--volume <name=hostpath>', 'container mode: a volume container tasks may mount by name (repeatable; env: comma-separated)')
        .env('TASK_VOLUMES')
        .argParser(volumes)
        .default({}, 'none'),
    )
    .addOption(
      new Option('--container-cgroup-parent <path>', "container mode: cgroup parent of the tasks' pod sandboxes")
        .env('CONTAINER_CGROUP_PARENT')
        .default('', "the runtime's"),
    )
    .addOption(
      new Option('--image-pull-timeout <duration>', 'container mode: how long getting an image may take, retries after transient failures included')
        .env('IMAGE_PULL_TIMEOUT')
        .argParser(duration)
        .default(300_000, '5m'),
    )
    .addOption(
      new Option(
        '--container-sandbox-pool <n>',
        'container mode: pod sandboxes kept ready ahead of time (at most 64), each used by one task run: about halves Create-to-running; 0: one made per start',
      )
        .env('CONTAINER_SANDBOX_POOL')
        .argParser(poolSize)
        .default(0, 'off'),
    )
    .addOption(
      new Option('--image-pull-config <path>', 'container mode: registry credentials for image pulls, a Docker config.json ("auths"); read at startup')
        .env('IMAGE_PULL_CONFIG')
        .default('', 'none: pull anonymously'),
    )
    .addOption(
      new Option(
        '--reconcile-interval <duration>',
        'how often every task is checked against its runtime, as a safety net (exits, timeouts and restarts are acted on at once)',
      )
        .env('RECONCILE_INTERVAL')
        .argParser(duration)
        .default(10_000, '10s'),
    )
    .addOption(
      new Option(
        '--logs-read-workers <n>',
        'worker threads that read and encode big Logs reads with chunks (no follow, timestamps, since or limitBytes; logs of 1 MiB or more), so the main thread only sends them; 0: read on the main thread',
      )
        .env('LOGS_READ_WORKERS')
        .argParser(positiveInt(0))
        .default(1),
    )
    .addOption(
      new Option(
        '--grpc-max-connection-idle <duration>',
        'gRPC: a connection with no call open for this long is closed with GOAWAY (clients reconnect on their next call; an open Watch or Logs stream is a call); it also ends connections that never send anything; 0s: never',
      )
        .env('GRPC_MAX_CONNECTION_IDLE')
        .argParser(timerDuration)
        .default(300_000, '5m'),
    )
    .addOption(
      new Option(
        '--grpc-keepalive-time <duration>',
        "gRPC: ping every connection this often, so a client whose node vanished is found and its open streams ended; 0s: never",
      )
        .env('GRPC_KEEPALIVE_TIME')
        .argParser(timerDuration)
        .default(60_000, '1m'),
    )
    .addOption(
      new Option('--grpc-keepalive-timeout <duration>', 'gRPC: a ping not answered within this closes its connection and cancels its calls')
        .env('GRPC_KEEPALIVE_TIMEOUT')
        .argParser(positiveDuration)
        .default(20_000, '20s'),
    )
    .addOption(
      new Option(
        '--max-log-streams <n>',
        'most Logs streams open at once (one whose client does not read holds about 1 MiB); more is RESOURCE_EXHAUSTED; 0: no limit',
      )
        .env('MAX_LOG_STREAMS')
        .argParser(positiveInt(0))
        .default(DEFAULT_MAX_LOG_STREAMS),
    )
    .addOption(
      new Option('--max-streams <n>', 'most Watch and Stats streams open at once, together; more is RESOURCE_EXHAUSTED; 0: no limit')
        .env('MAX_STREAMS')
        .argParser(positiveInt(0))
        .default(DEFAULT_MAX_STREAMS),
    )
    .addOption(
      new Option('--max-tasks <n>', 'most tasks held at once, being deleted included; more is RESOURCE_EXHAUSTED (HTTP 429); 0: no limit')
        .env('MAX_TASKS')
        .argParser(positiveInt(0))
        .default(0, 'no limit'),
    )
    .addOption(
      new Option('--stop-signal <signal>', 'signal that asks a task to stop').env('STOP_SIGNAL').argParser(signal).default('SIGTERM'),
    )
    .addOption(
      new Option('--stop-grace-period <duration>', 'time between the stop signal and SIGKILL of the whole tree')
        .env('STOP_GRACE_PERIOD')
        .argParser(duration)
        .default(10_000, '10s'),
    )
    .addOption(
      new Option('--log-max-file-size <bytes>', 'task logs: size of one log file before rotation')
        .env('TASK_LOG_MAX_FILE_SIZE')
        .argParser(positiveInt(1024))
        .default(10 * 1024 * 1024, '10 MiB'),
    )
    .addOption(
      new Option('--log-max-files <n>', 'task logs: rotated files kept per task')
        .env('TASK_LOG_MAX_FILES')
        .argParser(positiveInt(1))
        .default(10),
    )
    .addOption(
      new Option(
        '--plain-log-files [bool]',
        "task logs: also keep <data-dir>/<task>/stdout.log and stderr.log as plain text, as the original did, each at most --log-max-files x --log-max-file-size bytes (default: on when --http-listen-addr is set)",
      )
        .env('PLAIN_LOG_FILES')
        .argParser(bool)
        .default(undefined),
    )
    .addOption(
      new Option('--log-level <level>', 'executor log level')
        .env('LOG_LEVEL')
        .choices(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'])
        .default('info'),
    )
    .addOption(new Option('--tls-cert-file <path>', 'serve TLS with this certificate (PEM)').env('TLS_CERT_FILE').default(''))
    .addOption(new Option('--tls-key-file <path>', 'private key of --tls-cert-file (PEM)').env('TLS_KEY_FILE').default(''))
    .addOption(
      new Option('--tls-client-ca-file <path>', 'mutual TLS: accept only clients with a certificate from this CA (PEM)')
        .env('TLS_CLIENT_CA_FILE')
        .default(''),
    )
    .addOption(
      new Option('--auth-token-file <path>', 'require "authorization: Bearer <token>" with the token in this file (health checks stay open)')
        .env('AUTH_TOKEN_FILE')
        .default(''),
    )
    .addOption(
      new Option('--unix-socket-mode <octal>', 'permissions of a unix:// listener socket')
        .env('UNIX_SOCKET_MODE')
        .argParser(octalMode)
        .default(0o660, '0660'),
    )
    .addOption(
      new Option('--metrics-listen-addr <addr>', 'serve Prometheus metrics at <addr>/metrics; off when empty')
        .env('METRICS_LISTEN_ADDR')
        .default(''),
    )
    .addOption(
      new Option(
        '--metrics-auth <mode>',
        '/metrics access: "api" = the same TLS (mutual with --tls-client-ca-file) and bearer token as the API; "none" = plain HTTP, no token',
      )
        .env('METRICS_AUTH')
        .choices(METRICS_AUTH_MODES)
        .default('api'),
    )
    .addOption(
      new Option('--cgroup-root <path|off>', 'cgroup mount to use for per-task cgroups (default: detected; "off": none)')
        .env('TASK_EXECUTOR_CGROUP_ROOT')
        .default(''),
    )
    .addOption(
      new Option('--shim-path <path>', "a built task-shim to use instead of the package's own (default: build/task-shim, built at first start)")
        .env('TASK_SHIM_PATH')
        .default(''),
    )
    .addOption(
      new Option(
        '--task-capabilities <set>',
        'capabilities of root process and sidecar tasks: "default" = Docker\'s default set; "all" = the executor\'s own, as the original executor (a task\'s securityContext.capabilities still applies)',
      )
        .env('TASK_CAPABILITIES')
        .choices(['default', 'all'])
        .default('default'),
    )
    .addOption(
      new Option(
        '--task-seccomp <profile>',
        'seccomp profile of tasks that name none: "default" = the executor\'s default profile (container tasks: the runtime\'s); "unconfined" = no filter, as the original executor',
      )
        .env('TASK_SECCOMP')
        .choices(['default', 'unconfined'])
        .default('default'),
    )
    .addOption(
      new Option(
        '--seccomp-profile-root <dir>',
        'process and sidecar tasks\' SECCOMP_PROFILE_TYPE_LOCALHOST profiles are read from this directory only (a relative localhostProfile is under it), as the kubelet\'s',
      )
        .env('SECCOMP_PROFILE_ROOT')
        .argParser((dir: string) => {
          if (!dir.startsWith('/')) throw new InvalidArgumentError(`must be an absolute path; got ${JSON.stringify(dir)}`);
          return dir;
        })
        .default(DEFAULT_SECCOMP_PROFILE_ROOT),
    )
    .addOption(
      new Option('--artifact-max-bytes <bytes>', "artifacts: largest download, and most bytes one archive may unpack to; more fails the task (ArtifactFetchFailed)")
        .env('ARTIFACT_MAX_BYTES')
        .argParser(positiveInt(1))
        .default(1024 ** 3, '1 GiB'),
    )
    .addOption(
      new Option('--artifact-max-entries <n>', 'artifacts: most files, directories and links one archive may hold')
        .env('ARTIFACT_MAX_ENTRIES')
        .argParser(positiveInt(1))
        .default(100_000),
    )
    .addOption(
      new Option('--artifact-fetch-timeout <duration>', "artifacts: longest one artifact's fetch may take, retries included")
        .env('ARTIFACT_FETCH_TIMEOUT')
        .argParser(duration)
        .default(600_000, '10m'),
    )
    .addOption(
      new Option(
        '--artifact-cache-bytes <bytes>',
        'artifacts: keep checksummed artifacts under <data-dir>/.artifact-cache/ up to this size (least recently used go first), so tasks with the same artifact download it once; 0: no cache',
      )
        .env('ARTIFACT_CACHE_BYTES')
        .argParser(positiveInt(0))
        .default(0, 'no cache'),
    )
    .helpOption('-h, --help', 'show this help')
    .showHelpAfterError();
}

/** Accepts Go's "-flag=value" spelling for long flags, as the original did. */
function normaliseGoFlags(argv: string[]): string[] {
  return argv.map((arg) => (/^-[a-z][a-z-]+/.test(arg) && !arg.startsWith('--') ? `-${arg}` : arg));
}

export function parseConfig(argv: string[], env: NodeJS.ProcessEnv = process.env): Config {
  const saved = process.env;
  process.env = env; // commander reads env vars from process.env
  try {
    const command = program();
    command.parse(normaliseGoFlags(argv), { from: 'user' });
    const o = command.opts();
    return {
      dataDir: o.dataDir ?? DEFAULT_DATA_DIR,
      dataDirExplicit: o.dataDir !== undefined,
      listenAddr: o.listenAddr,
      httpListenAddr: o.httpListenAddr,
      enableSidecarMode: o.enableSidecarMode,
      mainContainerName: o.mainContainerName,
      mainContainerPid: o.mainContainerPid,
      mainContainerPidFile: o.mainContainerPidFile || undefined,
      enableContainerMode: o.enableContainerMode,
      criSocket: o.criSocket,
      volumes: o.volume,
      containerCgroupParent: o.containerCgroupParent,
      imagePullTimeoutMs: o.imagePullTimeout,
      imagePullConfig: o.imagePullConfig,
      containerSandboxPool: o.containerSandboxPool,
      reconcileIntervalMs: o.reconcileInterval,
      maxTasks: o.maxTasks,
      logsReadWorkers: o.logsReadWorkers,
      grpcMaxConnectionIdleMs: o.grpcMaxConnectionIdle,
      grpcKeepaliveTimeMs: o.grpcKeepaliveTime,
      grpcKeepaliveTimeoutMs: o.grpcKeepaliveTimeout,
      maxLogStreams: o.maxLogStreams,
      maxStreams: o.maxStreams,
      stopSignal: o.stopSignal,
      stopGraceMs: o.stopGracePeriod,
      logMaxBytes: o.logMaxFileSize,
      logMaxFiles: o.logMaxFiles,
      // Drop-in users of the original REST API get its file layout unless they say otherwise.
      plainLogFiles: o.plainLogFiles ?? o.httpListenAddr !== '',
      logLevel: o.logLevel,
      tlsCertFile: o.tlsCertFile,
      tlsKeyFile: o.tlsKeyFile,
      tlsClientCaFile: o.tlsClientCaFile,
      authTokenFile: o.authTokenFile,
      unixSocketMode: o.unixSocketMode,
      metricsListenAddr: o.metricsListenAddr,
      metricsAuth: o.metricsAuth,
      cgroupRoot: o.cgroupRoot,
      shimPath: o.shimPath,
      taskCapabilities: o.taskCapabilities,
      taskSeccomp: o.taskSeccomp,
      seccompProfileRoot: o.seccompProfileRoot,
      artifactMaxBytes: o.artifactMaxBytes,
      artifactMaxEntries: o.artifactMaxEntries,
      artifactFetchTimeoutMs: o.artifactFetchTimeout,
      artifactCacheBytes: o.artifactCacheBytes,
    };
  } finally {
    process.env = saved;
  }
}

/** Where a user without write access to the default data dir keeps state (XDG state dir). */
export function perUserDataDir(env: NodeJS.ProcessEnv = process.env): string {
  const stateHome = env.XDG_STATE_HOME || join(env.HOME || homedir(), '.local', 'state');
  return join(stateHome, 'task-executor', 'tasks');
}
