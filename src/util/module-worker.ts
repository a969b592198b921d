// Worker threads whose entry is one of our own modules, run from the build
// (.js) or from source (.ts through tsx, in tests and benches).
import { extname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';

/** The URL of module `name` (no extension) beside `base` (the caller's import.meta.url), with the caller's own extension. */
export function siblingModuleUrl(base: string, name: string): URL {
  return new URL(`./${name}${extname(fileURLToPath(base))}`, base);
}

/**
 * A worker running the module at `url`. From source, the worker registers
 * tsx itself first: Node 20 does not hand the main thread's module hooks to a
 * worker's entry module.
 */
export function startModuleWorker(url: URL): Worker {
  if (!url.pathname.endsWith('.ts')) return new Worker(url);
  const tsx = import.meta.resolve('tsx/esm/api');
  return new Worker(`import(${JSON.stringify(tsx)}).then(({ register }) => { register(); return import(${JSON.stringify(url.href)}); })`, { eval: true });
}
