// Go-style durations ("500ms", "10s", "1m30s"), as the original's flags use.
const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** Milliseconds, or an Error naming the accepted forms. */
export function parseDuration(text: string): number {
  const trimmed = text.trim();
  const parts = [...trimmed.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h)/g)];
  if (trimmed === '' || parts.map((p) => p[0]).join('') !== trimmed) {
    throw new Error(`invalid duration ${JSON.stringify(text)}: use a number with a unit, e.g. 500ms, 10s, 1m30s`);
  }
  return parts.reduce((total, [, value, unit]) => total + Number(value) * UNITS[unit!]!, 0);
}
