// What an artifact of a spec means: its source, checksum, destination and
// mode, parsed from the strings of TaskSpec.artifacts. Pure: admission uses it
// to refuse bad input (INVALID_ARGUMENT naming the field), the fetcher to act
// on input that passed.
import { posix } from 'node:path';
import { invalidArgument } from '../errors.js';
import type { Artifact } from '../model/task.js';
import { quote as quoteShort } from '../util/quote.js';

export const ARTIFACT_LIMITS = {
  artifacts: 64,
  sourceBytes: 8192,
  destinationBytes: 4096,
  headers: 64,
  headerBytes: 8192,
};

export const DEFAULT_DESTINATION = 'artifacts';

/**
 * Names at the top of a task directory that belong to the executor (the
 * record, the shim's status files and logs); a destination must not start
 * with one, nor with a hidden name (the executor's staging and markers).
 */
const RESERVED_TOP_LEVEL = new Set(['logs', 'task.json', 'start.json', 'exit.json', 'stdout.log', 'stderr.log']);

export type ArtifactSource =
  | { kind: 'http'; url: URL }
  | { kind: 'file'; path: string }
  | { kind: 'git'; url: string; ref?: string };

export type Algorithm = 'sha256' | 'sha512';
export interface Checksum {
  algorithm: Algorithm;
  /** Lowercase hex. */
  hex: string;
}

const HEX_LENGTH: Record<Algorithm, number> = { sha256: 64, sha512: 128 };
const ARCHIVE_SUFFIXES = ['.tar', '.tar.gz', '.tgz', '.zip'];
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
// A git ref as a shallow fetch takes it: branch, tag or commit; never an option.
const GIT_REF = /^[A-Za-z0-9_][A-Za-z0-9._/-]*$/;

/** An artifact whose every field was checked and given its default. */
export interface ResolvedArtifact {
  source: ArtifactSource;
  /** Normalised, relative to the task directory, e.g. "artifacts" or "tools/bin". */
  destination: string;
  checksum?: Checksum;
  mode: 'file' | 'archive';
  headers: Record<string, string>;
  /** File mode: the name the file gets in destination. */
  fileName?: string;
}

/** Checks every artifact of a spec; INVALID_ARGUMENT naming the field (e.g. "spec.artifacts[1].source"). */
export function validateArtifacts(artifacts: readonly Artifact[] | undefined, field: string): void {
  if (!artifacts) return;
  if (artifacts.length > ARTIFACT_LIMITS.artifacts) {
    throw invalidArgument(`${field} has ${artifacts.length} entries; at most ${ARTIFACT_LIMITS.artifacts} are allowed`);
  }
  artifacts.forEach((artifact, i) => resolveArtifact(artifact, `${field}[${i}]`));
}

/** An artifact with its defaults applied; throws INVALID_ARGUMENT naming the field for anything wrong. */
export function resolveArtifact(artifact: Artifact, field: string): ResolvedArtifact {
  const source = parseSource(artifact.source, `${field}.source`);
  const destination = parseDestination(artifact.destination, `${field}.destination`);
  const checksum = artifact.checksum ? parseChecksum(artifact.checksum, `${field}.checksum`) : undefined;
  if (artifact.mode !== undefined && artifact.mode !== 'file' && artifact.mode !== 'archive') {
    throw invalidArgument(`${field}.mode has an unknown value; use ARTIFACT_MODE_FILE or ARTIFACT_MODE_ARCHIVE`);
  }
  const headers = artifact.headers ?? {};
  validateHeaders(headers, `${field}.headers`);
  if (source.kind === 'git') {
    if (checksum) throw invalidArgument(`${field}.checksum is not allowed for a git source: pin a commit with ?ref=<commit> instead`);
    if (artifact.mode) throw invalidArgument(`${field}.mode does not apply to a git source (its work tree is placed as it is); leave it unset`);
  }
  if (source.kind !== 'http' && Object.keys(headers).length > 0) {
    throw invalidArgument(`${field}.headers are only sent to http(s) sources`);
  }
  const name = source.kind === 'git' ? undefined : lastSegment(source);
  const mode = artifact.mode ?? (name && ARCHIVE_SUFFIXES.some((suffix) => name.toLowerCase().endsWith(suffix)) ? 'archive' : 'file');
  if (source.kind !== 'git' && mode === 'file' && !name) {
    throw invalidArgument(`${field}.source ${quoteShort(artifact.source)} has no file name at the end of its path, which file mode needs`);
  }
  return { source, destination, mode, headers, ...(checksum ? { checksum } : {}), ...(mode === 'file' && name ? { fileName: name } : {}) };
}

export function parseSource(source: string, field: string): ArtifactSource {
  if (source === '') throw invalidArgument(`${field} is required, e.g. "https://example.com/script.sh"`);
  if (Buffer.byteLength(source) > ARTIFACT_LIMITS.sourceBytes) {
    throw invalidArgument(`${field} is longer than ${ARTIFACT_LIMITS.sourceBytes} bytes`);
  }
  if (/[\0\r\n]/.test(source)) throw invalidArgument(`${field} contains a NUL, CR or LF`);
  if (source.startsWith('git::')) return parseGit(source.slice('git::'.length), field);
  const url = parseUrl(source, field);
  if (url.protocol === 'http:' || url.protocol === 'https:') {
    if (url.username || url.password) {
      throw invalidArgument(`${field} must not carry credentials in the URL; send them in headers (e.g. "Authorization")`);
    }
    return { kind: 'http', url };
  }
  if (url.protocol === 'file:') {
    if (url.host !== '' && url.host !== 'localhost') throw invalidArgument(`${field} ${quoteShort(source)} names a host; file:// sources are paths on this node`);
    const path = decodeURIComponent(url.pathname);
    if (path.includes('\0')) throw invalidArgument(`${field} contains a NUL byte`);
    return { kind: 'file', path };
  }
  throw invalidArgument(
    `${field} ${quoteShort(source)} is not a supported source: use https://, http://, file:///absolute/path or git::<url>[?ref=<ref>]`,
  );
}

function parseGit(rest: string, field: string): ArtifactSource {
  const url = parseUrl(rest, field);
  if (!['https:', 'http:', 'file:', 'ssh:'].includes(url.protocol)) {
    throw invalidArgument(`${field}: a git:: source needs an https://, http://, ssh:// or file:// URL; got ${quoteShort(rest)}`);
  }
  const ref = url.searchParams.get('ref') ?? undefined;
  url.searchParams.delete('ref');
  if (ref !== undefined && (!GIT_REF.test(ref) || ref.includes('..'))) {
    throw invalidArgument(`${field} has ref ${quoteShort(ref)}, which is not a branch, tag or commit name`);
  }
  return { kind: 'git', url: url.toString(), ...(ref ? { ref } : {}) };
}

function parseUrl(value: string, field: string): URL {
  try {
    return new URL(value);
  } catch {
    throw invalidArgument(
      `${field} ${quoteShort(value)} is not a URL: use https://, http://, file:///absolute/path or git::<url>[?ref=<ref>]`,
    );
  }
}

export function parseChecksum(checksum: string, field: string): Checksum {
  const match = /^(sha256|sha512):([0-9a-fA-F]*)$/.exec(checksum);
  if (!match) throw invalidArgument(`${field} ${quoteShort(checksum)} must be "sha256:<64 hex digits>" or "sha512:<128 hex digits>"`);
  const algorithm = match[1] as Algorithm;
  const hex = match[2]!.toLowerCase();
  if (hex.length !== HEX_LENGTH[algorithm]) {
    throw invalidArgument(`${field}: a ${algorithm} checksum has ${HEX_LENGTH[algorithm]} hex digits; got ${hex.length}`);
  }
  return { algorithm, hex };
}

/** The normalised destination ("artifacts" when unset); never absolute, never leaving the task directory. */
export function parseDestination(destination: string | undefined, field: string): string {
  if (destination === undefined || destination === '') return DEFAULT_DESTINATION;
  if (destination.includes('\0')) throw invalidArgument(`${field} contains a NUL byte`);
  if (Buffer.byteLength(destination) > ARTIFACT_LIMITS.destinationBytes) {
    throw invalidArgument(`${field} is longer than ${ARTIFACT_LIMITS.destinationBytes} bytes`);
  }
  if (destination.startsWith('/')) throw invalidArgument(`${field} ${quoteShort(destination)} must be relative to the task directory, e.g. "artifacts"`);
  if (destination.split('/').includes('..')) throw invalidArgument(`${field} ${quoteShort(destination)} must not contain "..": it stays inside the task directory`);
  const normalised = posix.normalize(destination).replace(/\/+$/, '');
  if (normalised === '.' || normalised === '') throw invalidArgument(`${field} must name a directory inside the task directory, not the task directory itself`);
  const top = normalised.split('/')[0]!;
  if (RESERVED_TOP_LEVEL.has(top) || top.startsWith('.')) {
    throw invalidArgument(`${field} ${quoteShort(destination)} starts with ${quoteShort(top)}, which the executor keeps in the task directory; choose another name`);
  }
  return normalised;
}

function validateHeaders(headers: Record<string, string>, field: string): void {
  const entries = Object.entries(headers);
  if (entries.length > ARTIFACT_LIMITS.headers) throw invalidArgument(`${field} has ${entries.length} entries; at most ${ARTIFACT_LIMITS.headers} are allowed`);
  for (const [name, value] of entries) {
    if (!HEADER_NAME.test(name)) throw invalidArgument(`${field} has the name ${quoteShort(name)}, which is not an HTTP header name`);
    if (/[\0\r\n]/.test(value)) throw invalidArgument(`${field}[${JSON.stringify(name)}] contains a NUL, CR or LF`);
    if (Buffer.byteLength(value) > ARTIFACT_LIMITS.headerBytes) throw invalidArgument(`${field}[${JSON.stringify(name)}] is longer than ${ARTIFACT_LIMITS.headerBytes} bytes`);
  }
}

/** The last segment of a URL's or file's path, decoded; undefined when there is none a file could be named. */
function lastSegment(source: Extract<ArtifactSource, { kind: 'http' | 'file' }>): string | undefined {
  let segment: string;
  if (source.kind === 'file') segment = posix.basename(source.path);
  else {
    try {
      segment = decodeURIComponent(source.url.pathname.split('/').pop() ?? '');
    } catch {
      return undefined;
    }
  }
  if (segment === '' || segment === '.' || segment === '..' || segment.includes('/') || segment.includes('\0')) return undefined;
  return segment;
}

/** The top-level names of the task directory the artifacts write, e.g. ["artifacts"]. */
export function topLevelNames(artifacts: readonly ResolvedArtifact[]): string[] {
  return [...new Set(artifacts.map((a) => a.destination.split('/')[0]!))];
}
