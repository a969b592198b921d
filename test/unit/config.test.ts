// Configuration from flags and environment variables, parsed in-process (the
// command line itself, run as a process, is in test/integration/config-and-cli.test.ts).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseConfig, perUserDataDir } from '../../src/config.js';

describe('configuration', () => {
  test("defaults are the original's", () => {
    const config = parseConfig([], {});
    assert.equal(config.dataDir, '/var/lib/sandbox/tasks');
    assert.equal(config.dataDirExplicit, false);
    assert.equal(config.listenAddr, '0.0.0.0:5758');
    assert.equal(config.enableSidecarMode, false);
    assert.equal(config.mainContainerName, 'main');
    assert.equal(config.enableContainerMode, false);
    assert.equal(config.criSocket, '/var/run/containerd/containerd.sock');
    assert.equal(config.reconcileIntervalMs, 10_000);
    assert.equal(config.stopSignal, 'SIGTERM');
    assert.equal(config.stopGraceMs, 10_000);
    assert.equal(config.containerSandboxPool, 0);
    assert.equal(parseConfig(['--container-sandbox-pool', '4'], {}).containerSandboxPool, 4);
    assert.equal(parseConfig([], { CONTAINER_SANDBOX_POOL: '64' }).containerSandboxPool, 64);
    assert.equal(config.logsReadWorkers, 1);
    assert.equal(parseConfig(['--logs-read-workers', '0'], {}).logsReadWorkers, 0);
    assert.equal(parseConfig([], { LOGS_READ_WORKERS: '2' }).logsReadWorkers, 2);
  });

  test('gRPC connection limits default to 5m idle and a ping every 1m answered within 20s; 0s turns idle and pings off', () => {
    const defaults = parseConfig([], {});
    assert.equal(defaults.grpcMaxConnectionIdleMs, 300_000);
    assert.equal(defaults.grpcKeepaliveTimeMs, 60_000);
    assert.equal(defaults.grpcKeepaliveTimeoutMs, 20_000);
    const off = parseConfig(['--grpc-max-connection-idle', '0s', '--grpc-keepalive-time=0s'], { GRPC_KEEPALIVE_TIMEOUT: '5s' });
    assert.equal(off.grpcMaxConnectionIdleMs, 0);
    assert.equal(off.grpcKeepaliveTimeMs, 0);
    assert.equal(off.grpcKeepaliveTimeoutMs, 5000);
    assert.equal(parseConfig([], { GRPC_MAX_CONNECTION_IDLE: '1m30s' }).grpcMaxConnectionIdleMs, 90_000);
  });

  test('environment variables set values and flags win over them', () => {
    const env = { DATA_DIR: '/env/dir', LISTEN_ADDR: '127.0.0.1:1', ENABLE_SIDECAR_MODE: 'true', MAIN_CONTAINER_NAME: 'app', RECONCILE_INTERVAL: '2s' };
    const fromEnv = parseConfig([], env);
    assert.equal(fromEnv.dataDir, '/env/dir');
    assert.equal(fromEnv.dataDirExplicit, true);
    assert.equal(fromEnv.enableSidecarMode, true);
    assert.equal(fromEnv.mainContainerName, 'app');
    assert.equal(fromEnv.reconcileIntervalMs, 2000);
    const fromFlags = parseConfig(['--data-dir=/flag/dir', '--listen-addr', 'unix:///tmp/x.sock', '--enable-sidecar-mode=false'], env);
    assert.equal(fromFlags.dataDir, '/flag/dir');
    assert.equal(fromFlags.listenAddr, 'unix:///tmp/x.sock');
    assert.equal(fromFlags.enableSidecarMode, false);
  });

  test("Go-style single-dash flags and durations are accepted, as the original's were", () => {
    const config = parseConfig(['-data-dir=/go/style', '-reconcile-interval=1m30s', '-enable-container-mode', '-stop-grace-period', '250ms'], {});
    assert.equal(config.dataDir, '/go/style');
    assert.equal(config.reconcileIntervalMs, 90_000);
    assert.equal(config.enableContainerMode, true);
    assert.equal(config.stopGraceMs, 250);
  });

  test('--metrics-auth is "api" unless "none" is asked for, by flag or METRICS_AUTH', () => {
    assert.equal(parseConfig([], {}).metricsAuth, 'api');
    assert.equal(parseConfig([], { METRICS_AUTH: 'none' }).metricsAuth, 'none');
    assert.equal(parseConfig(['--metrics-auth', 'api'], { METRICS_AUTH: 'none' }).metricsAuth, 'api');
  });

  test('task privileges default to least privilege; "all" and "unconfined" restore the original, by flag or env', () => {
    const defaults = parseConfig([], {});
    assert.deepEqual([defaults.taskCapabilities, defaults.taskSeccomp], ['default', 'default']);
    const original = parseConfig(['--task-capabilities', 'all'], { TASK_SECCOMP: 'unconfined' });
    assert.deepEqual([original.taskCapabilities, original.taskSeccomp], ['all', 'unconfined']);
  });

  test('volumes, socket mode, stop signal and task limit are parsed into their typed values', () => {
    const fromFlags = parseConfig(['--volume', 'data=/srv/data', '--volume=cache=/var/cache', '--unix-socket-mode', '0600', '--stop-signal', 'int', '--max-tasks', '5'], {});
    assert.deepEqual(fromFlags.volumes, { data: '/srv/data', cache: '/var/cache' });
    assert.equal(fromFlags.unixSocketMode, 0o600);
    assert.equal(fromFlags.stopSignal, 'SIGINT');
    assert.equal(fromFlags.maxTasks, 5);
    const fromEnv = parseConfig([], { TASK_VOLUMES: ' a=/x , b.c=/y ', UNIX_SOCKET_MODE: '640' });
    assert.deepEqual(fromEnv.volumes, { a: '/x', 'b.c': '/y' });
    assert.equal(fromEnv.unixSocketMode, 0o640);
  });

  test('the per-user data dir follows XDG_STATE_HOME, then HOME', () => {
    assert.equal(perUserDataDir({ XDG_STATE_HOME: '/x/state', HOME: '/home/u' }), '/x/state/task-executor/tasks');
    assert.equal(perUserDataDir({ HOME: '/home/u' }), '/home/u/.local/state/task-executor/tasks');
  });
});
