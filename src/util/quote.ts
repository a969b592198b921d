/** A value for an error message: quoted, and cut short so that a huge input cannot make a huge status. */
export function quote(value: string, max = 80): string {
  return value.length > max ? `${JSON.stringify(value.slice(0, max))}… (${value.length} characters)` : JSON.stringify(value);
}
