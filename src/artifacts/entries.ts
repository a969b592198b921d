// The safety rules every archive entry must pass before it is written, the
// same for tar and zip: nothing may land outside the destination (absolute
// paths, "..", symlinks or hard links pointing out, paths through a symlink),
// only files, directories and links (no devices, FIFOs or sockets), and the
// archive as a whole stays within its entry and size limits (archive bombs).
// Pure: it judges paths as the archive states them, before the disk is touched.
import { posix } from 'node:path';

export interface ArchiveLimits {
  /** Bytes unpacked, all entries together. */
  maxBytes: number;
  maxEntries: number;
}

export type EntryKind = 'file' | 'directory' | 'symlink' | 'hardlink' | 'other';

export interface EntryInfo {
  path: string;
  kind: EntryKind;
  /** The archive's name for an 'other' entry, e.g. "CharacterDevice". */
  typeName?: string;
  size: number;
  linkpath?: string;
}

/** Tracks one archive's entries; check() says why an entry must not be written, or undefined. */
export class EntryChecker {
  private entries = 0;
  private bytes = 0;
  private readonly symlinks = new Set<string>();

  constructor(private readonly limits: ArchiveLimits) {}

  check(entry: EntryInfo): string | undefined {
    const shown = JSON.stringify(entry.path);
    if (++this.entries > this.limits.maxEntries) return `it has more than ${this.limits.maxEntries} entries (--artifact-max-entries)`;
    this.bytes += Math.max(entry.size, 0);
    if (this.bytes > this.limits.maxBytes) return `it unpacks to more than ${this.limits.maxBytes} bytes (--artifact-max-bytes)`;
    const path = pathProblem(entry.path);
    if (path) return `entry ${shown} ${path}`;
    const normal = normalise(entry.path);
    const through = this.throughSymlink(normal);
    if (through) return `entry ${shown} goes through the symlink ${JSON.stringify(through)}`;
    switch (entry.kind) {
      case 'file':
      case 'directory':
        return undefined;
      case 'symlink': {
        const target = entry.linkpath ?? '';
        if (target === '' || target.startsWith('/')) return `entry ${shown} is a symlink to ${JSON.stringify(target)}, outside the destination`;
        // Judged lexically, "l/.." is "." whatever l is; on disk it is the parent of where the symlink l leads,
        // so "x/y/l" -> "../.." beside "x/y/m" -> "l/../.." led two levels above the destination.
        // Only leading ".." are judged lexically: they climb the entry's own directories, never a symlink.
        if (/(^|\/)[^/]+\/\.\.(\/|$)/.test(target.replace(/^(\.\.\/)+/, ''))) {
          return `entry ${shown} is a symlink to ${JSON.stringify(target)}: ".." may only come first in a link's target (after a name it could climb out through another symlink)`;
        }
        const resolved = posix.normalize(posix.join(posix.dirname(normal), target));
        if (resolved === '..' || resolved.startsWith('../')) return `entry ${shown} is a symlink to ${JSON.stringify(target)}, outside the destination`;
        this.symlinks.add(normal);
        return undefined;
      }
      case 'hardlink': {
        const target = entry.linkpath ?? '';
        const problem = pathProblem(target);
        if (problem) return `entry ${shown} is a hard link to ${JSON.stringify(target)}, outside the destination`;
        const normalTarget = normalise(target);
        if (this.symlinks.has(normalTarget) || this.throughSymlink(normalTarget)) return `entry ${shown} is a hard link through a symlink`;
        return undefined;
      }
      case 'other':
        return `entry ${shown} is a ${entry.typeName ?? 'special file'}; only files, directories and links are unpacked`;
    }
  }

  /** The first symlink entry seen so far that `path` goes through, if any. */
  private throughSymlink(path: string): string | undefined {
    const parts = path.split('/');
    for (let i = 1; i < parts.length; i++) {
      const prefix = parts.slice(0, i).join('/');
      if (this.symlinks.has(prefix)) return prefix;
    }
    return undefined;
  }
}

/** Why a path stated in an archive is not a path inside the destination, or undefined. */
function pathProblem(path: string): string | undefined {
  if (path === '' || path.includes('\0')) return 'has an empty or invalid name';
  if (path.startsWith('/') || /^[A-Za-z]:[\\/]/.test(path)) return 'has an absolute path';
  if (path.split(/[\\/]/).includes('..')) return 'has ".." in its path';
  return undefined;
}

const normalise = (path: string): string => posix.normalize(path).replace(/\/+$/, '');
