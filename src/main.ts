#!/usr/bin/env node
// Entry point: parse flags, start the executor, stop serving on SIGTERM/SIGINT.
// Running tasks are left alone on shutdown; the next start picks them up.
import { startExecutor, StartupError } from './app.js';
import { parseConfig } from './config.js';
import { createLogger } from './logger.js';

const config = parseConfig(process.argv.slice(2));
const log = createLogger(config.logLevel);

// A promise left rejected by a bug must not take the node's executor down:
// tasks run on under their supervisors either way, but every client would
// lose the API. The listeners and the manager catch what they expect; this
// is the backstop, logged loudly so the bug gets fixed.
process.on('unhandledRejection', (reason) => log.error({ err: reason }, 'unhandled promise rejection (a bug); the executor keeps serving'));

try {
  const executor = await startExecutor(config, log);
  let stopping = false;
  const shutdown = (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'shutting down; running tasks keep running');
    executor.close().then(
      () => process.exit(0),
      (error: unknown) => {
        log.error({ err: error }, 'error during shutdown');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', shutdown);
  process.on('SIGINT', shutdown);
} catch (error) {
  if (error instanceof StartupError) {
    log.fatal(error.message);
    process.exitCode = 1;
  } else {
    log.fatal({ err: error }, 'task-executor failed to start');
    process.exitCode = 1;
  }
}
