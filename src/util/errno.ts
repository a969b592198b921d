// The code of a failed system call ('ENOENT', 'EACCES', ...) read from a caught
// error, which TypeScript types as unknown: one checked read instead of a cast
// to NodeJS.ErrnoException wherever an error is told apart by its code.

/** The error's string `code` (Node's system errors: 'ENOENT' and the like); undefined when it has none. */
export function errnoOf(error: unknown): string | undefined {
  if (typeof error !== 'object' || error === null || !('code' in error)) return undefined;
  return typeof error.code === 'string' ? error.code : undefined;
}

/** Whether the error's code is one of `codes`. */
export function isErrno(error: unknown, ...codes: string[]): boolean {
  const code = errnoOf(error);
  return code !== undefined && codes.includes(code);
}

/** For messages: the error's code, or the error as text when it has none. */
export function errnoText(error: unknown): string {
  return errnoOf(error) ?? String(error);
}
