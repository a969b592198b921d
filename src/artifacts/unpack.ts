// Unpacks an archive artifact into its destination with well-kept libraries
// (node-tar for tar and tar.gz, yauzl for zip), every entry judged first by
// EntryChecker (entries.ts). The first refused entry fails the artifact; the
// caller discards the staging directory, so nothing of a hostile archive is
// ever used. Permission bits are kept; setuid, setgid and sticky bits and
// owners are not.
import { createReadStream, createWriteStream } from 'node:fs';
import { chmod, mkdir, open, realpath, rm, symlink } from 'node:fs/promises';
import { dirname, join, posix, relative, sep } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { type ReadEntry, Unpack } from 'tar';
import { createGunzip } from 'node:zlib';
import yauzl from 'yauzl';
import { type ArchiveLimits, EntryChecker, type EntryKind } from './entries.js';
import { ArtifactError } from './errors.js';

export type ArchiveFormat = 'tar' | 'gzip' | 'zip';

/** The archive's format from its first bytes (its name may say nothing, e.g. ".../download?id=3"). */
export async function detectFormat(file: string): Promise<ArchiveFormat | undefined> {
  const handle = await open(file, 'r');
  try {
    const head = Buffer.alloc(512);
    const { bytesRead } = await handle.read(head, 0, 512, 0);
    if (bytesRead >= 2 && head[0] === 0x1f && head[1] === 0x8b) return 'gzip';
    if (bytesRead >= 4 && head.readUInt32LE(0) === 0x04034b50) return 'zip';
    if (bytesRead >= 4 && head.readUInt32LE(0) === 0x06054b50) return 'zip'; // an empty zip: just the end record
    if (bytesRead >= 262 && head.toString('latin1', 257, 262) === 'ustar') return 'tar';
    return undefined;
  } finally {
    await handle.close();
  }
}

export async function unpackArchive(file: string, what: string, destination: string, limits: ArchiveLimits, signal: AbortSignal): Promise<void> {
  const format = await detectFormat(file);
  if (!format) throw new ArtifactError(`${what} is not a tar, tar.gz or zip archive (by its first bytes); set mode ARTIFACT_MODE_FILE to keep it as a file`);
  await mkdir(destination, { recursive: true });
  if (format === 'zip') await unpackZip(file, what, destination, limits, signal);
  else await unpackTar(file, format === 'gzip', what, destination, limits, signal);
}

const TAR_KINDS: Partial<Record<ReadEntry['type'], EntryKind>> = {
  File: 'file',
  OldFile: 'file',
  ContiguousFile: 'file',
  Directory: 'directory',
  SymbolicLink: 'symlink',
  Link: 'hardlink',
};

/** Tar stream bytes beyond the entries' contents: a header and padding per entry, the end blocks, and room for long-name records. */
const tarOverhead = (limits: ArchiveLimits): number => (limits.maxEntries + 2) * 1024 + (1 << 20);

/**
 * node-tar reads the archive, but the bytes are fed here, not by tar.x({file}): tar.x could not be
 * stopped (a timeout or Delete waited for the whole archive), and it inflated and buffered
 * whatever follows the end blocks (a 50 KiB gzip of zeros took 50 MiB and 90 s of CPU).
 * Feeding ends at the end blocks, on abort, or past what the limits allow the tar stream to be.
 */
async function unpackTar(file: string, gzipped: boolean, what: string, destination: string, limits: ArchiveLimits, signal: AbortSignal): Promise<void> {
  signal.throwIfAborted();
  const checker = new EntryChecker(limits);
  let refused: string | undefined;
  const unpack = new Unpack({
    cwd: destination,
    strict: true,
    preserveOwner: false,
    // Modes as the archive states them (less the special bits, below), not as this process's umask would cut them.
    chmod: true,
    processUmask: 0,
    filter: (_path, entry) => {
      if (refused !== undefined || signal.aborted || !('type' in entry)) return false;
      const kind = TAR_KINDS[entry.type] ?? 'other';
      const problem = checker.check({ path: entry.path, kind, typeName: entry.type, size: kind === 'file' ? entry.size : 0, linkpath: entry.linkpath });
      if (problem) {
        refused = problem;
        return false;
      }
      if (entry.mode !== undefined) entry.mode &= 0o777;
      return true;
    },
  });
  const source = createReadStream(file);
  const input = gzipped ? source.pipe(createGunzip()) : source;
  const limit = limits.maxBytes + tarOverhead(limits);
  let fed = 0;
  let stopped = false;
  const stopFeeding = () => {
    stopped = true;
    source.destroy();
    if (input !== source) input.destroy();
  };
  const onAbort = () => {
    stopFeeding();
    unpack.abort(new Error('aborted'));
  };
  signal.addEventListener('abort', onAbort, { once: true });
  try {
    await new Promise<void>((resolve, reject) => {
      unpack.on('close', resolve);
      unpack.on('error', reject);
      unpack.on('eof', () => {
        if (stopped) return;
        stopFeeding();
        unpack.end();
      });
      const fail = (error: Error) => {
        stopFeeding();
        unpack.abort(error);
        reject(error);
      };
      source.on('error', fail);
      if (input !== source) input.on('error', fail);
      input.on('data', (chunk: Buffer) => {
        if (stopped) return;
        fed += chunk.length;
        if (fed > limit) {
          refused = `it unpacks to more than ${limits.maxBytes} bytes (--artifact-max-bytes)`;
          fail(new Error(refused));
        } else if (!unpack.write(chunk)) {
          input.pause();
          unpack.once('drain', () => input.resume());
        }
      });
      input.on('end', () => {
        if (!stopped) unpack.end();
      });
    });
  } catch (error) {
    signal.throwIfAborted();
    if (refused === undefined) throw new ArtifactError(`${what} could not be unpacked: ${(error as Error).message}`, { cause: error });
  } finally {
    signal.removeEventListener('abort', onAbort);
    stopFeeding();
  }
  signal.throwIfAborted();
  if (refused !== undefined) throw new ArtifactError(`${what} was refused: ${refused}`);
}

const S_IFMT = 0o170000;
const S_IFLNK = 0o120000;
/** A symlink entry's content is its target: a path, never long. */
const MAX_LINK_TARGET = 4096;

async function unpackZip(file: string, what: string, destination: string, limits: ArchiveLimits, signal: AbortSignal): Promise<void> {
  const checker = new EntryChecker(limits);
  const root = await realpath(destination);
  let zip: yauzl.ZipFile;
  try {
    zip = await new Promise<yauzl.ZipFile>((resolve, reject) =>
      yauzl.open(file, { lazyEntries: true, validateEntrySizes: true, strictFileNames: false }, (error, opened) => (error ? reject(error) : resolve(opened))),
    );
  } catch (error) {
    throw new ArtifactError(`${what} is not a readable zip archive: ${(error as Error).message}`);
  }
  try {
    await new Promise<void>((resolve, reject) => {
      const fail = (error: unknown) => reject(error);
      zip.on('error', (error: Error) => fail(new ArtifactError(`${what} could not be unpacked: ${error.message}`)));
      zip.on('end', () => resolve());
      zip.on('entry', (entry: yauzl.Entry) => {
        writeZipEntry(zip, entry, checker, root, what, signal).then(() => zip.readEntry(), fail);
      });
      zip.readEntry();
    });
  } finally {
    zip.close();
  }
}

async function writeZipEntry(zip: yauzl.ZipFile, entry: yauzl.Entry, checker: EntryChecker, root: string, what: string, signal: AbortSignal): Promise<void> {
  signal.throwIfAborted();
  const unixMode = (entry.externalFileAttributes >>> 16) & 0xffff;
  const isDirectory = entry.fileName.endsWith('/');
  const kind: EntryKind = isDirectory ? 'directory' : (unixMode & S_IFMT) === S_IFLNK ? 'symlink' : 'file';
  const linkpath = kind === 'symlink' ? await readLinkTarget(zip, entry) : undefined;
  const problem = checker.check({ path: entry.fileName, kind, size: kind === 'file' ? entry.uncompressedSize : 0, linkpath });
  if (problem) throw new ArtifactError(`${what} was refused: ${problem}`);
  const target = join(root, entry.fileName);
  const permissions = unixMode & 0o777;
  if (kind === 'directory') {
    await mkdir(target, { recursive: true });
    if (permissions) await chmod(target, permissions | 0o700);
    return;
  }
  await mkdir(dirname(target), { recursive: true });
  // A symlink left by an earlier artifact in the same destination must not redirect this entry.
  const parent = await realpath(dirname(target));
  if (parent !== root && !parent.startsWith(root + sep)) throw new ArtifactError(`${what} was refused: entry ${JSON.stringify(entry.fileName)} would be written outside the destination`);
  await rm(target, { force: true, recursive: false }).catch(() => undefined);
  if (kind === 'symlink') {
    // The checker judged the target from where the archive says the entry is; an earlier artifact's symlink
    // (`a` -> `.`) can put it higher on disk (`a/a/a/l` is `l`), where the same `../../..` leaves the destination.
    const landing = posix.normalize(posix.join(relative(root, parent), linkpath!));
    if (landing === '..' || landing.startsWith('../')) {
      throw new ArtifactError(`${what} was refused: entry ${JSON.stringify(entry.fileName)} is a symlink to ${JSON.stringify(linkpath)}, outside the destination from where a symlink on disk puts it`);
    }
    await symlink(linkpath!, target);
    return;
  }
  const stream = await openEntry(zip, entry);
  // 'wx': never follow (or write through) something already at this name.
  await pipeline(stream, createWriteStream(target, { flags: 'wx', mode: 0o600 }), { signal });
  await chmod(target, permissions || 0o644);
}

function openEntry(zip: yauzl.ZipFile, entry: yauzl.Entry): Promise<NodeJS.ReadableStream> {
  return new Promise((resolve, reject) => zip.openReadStream(entry, (error, stream) => (error ? reject(error) : resolve(stream))));
}

async function readLinkTarget(zip: yauzl.ZipFile, entry: yauzl.Entry): Promise<string> {
  if (entry.uncompressedSize > MAX_LINK_TARGET) return '/'; // refused by the checker as pointing outside
  const chunks: Buffer[] = [];
  for await (const chunk of await openEntry(zip, entry)) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}
