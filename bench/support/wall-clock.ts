// Wall-clock nanoseconds with sub-millisecond resolution, comparable with
// `date +%s%N` in other processes: the monotonic clock anchored at the moment
// Date.now() ticks. A tick noticed late only makes the anchor smaller, so the
// largest of several anchors is the most accurate.
export const wallNs = (() => {
  let offset: bigint | undefined;
  for (let i = 0; i < 20; i++) {
    const start = Date.now();
    let now = start;
    while (now === start) now = Date.now();
    const candidate = BigInt(now) * 1_000_000n - process.hrtime.bigint();
    if (offset === undefined || candidate > offset) offset = candidate;
  }
  return () => process.hrtime.bigint() + offset!;
})();
