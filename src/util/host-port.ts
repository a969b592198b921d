/** "host:port", "[v6]:port" or ":port" (all interfaces) for an HTTP listener; `flag` names it in the error. */
export function splitHostPort(address: string, flag: string, example: string): [host: string, port: number] {
  const match = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(address);
  if (!match) throw new Error(`invalid ${flag} ${JSON.stringify(address)}: use host:port, e.g. ${example}`);
  return [match[1] ?? (match[2] || '0.0.0.0'), Number(match[3])];
}
