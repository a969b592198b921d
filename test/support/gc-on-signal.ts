// Preloaded into an executor (node --expose-gc --import this): on SIGUSR2 it
// collects garbage and prints one line `memory {"rss":...,"heapUsed":...,...}`
// to stderr, so a bench reads live memory instead of RSS with garbage in it.
process.on('SIGUSR2', () => {
  const gc = (globalThis as { gc?: () => void }).gc;
  gc?.();
  gc?.();
  process.stderr.write(`memory ${JSON.stringify(process.memoryUsage())}\n`);
});
