// Builds a tiny OCI image layout tarball from the host's static busybox, with
// no registry and no tools but Node: one layer (busybox plus a symlink per
// applet and a minimal /etc) shared by two images,
//   localhost/te-test/busybox:latest  Cmd ["sh"]                 (workloads)
//   localhost/te-test/pause:latest    Entrypoint sleep infinity  (CRI sandbox_image)
// Import with `ctr -n k8s.io images import <tar>`. Deterministic: the same
// busybox binary gives byte-identical tarballs and digests on every build.
//
//   node --import tsx test/support/oci-image.ts /tmp/image.tar
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { gzipSync } from 'node:zlib';

export const BUSYBOX_IMAGE = 'localhost/te-test/busybox:latest';
export const PAUSE_IMAGE = 'localhost/te-test/pause:latest';
const PATH = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

interface TarEntry {
  name: string;
  type: 'file' | 'dir' | 'symlink';
  mode: number;
  data?: Buffer;
  linkname?: string;
}

/** A ustar archive: entries sorted by name, owner root, mtime 0. */
export function tar(entries: TarEntry[]): Buffer {
  const blocks: Buffer[] = [];
  for (const entry of [...entries].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
    const data = entry.type === 'file' ? (entry.data ?? Buffer.alloc(0)) : Buffer.alloc(0);
    const header = Buffer.alloc(512);
    const name = entry.type === 'dir' ? `${entry.name}/` : entry.name;
    if (Buffer.byteLength(name) > 100) throw new Error(`tar: name too long: ${name}`);
    const put = (value: string, offset: number, length: number) => header.write(value, offset, length, 'utf8');
    const octal = (value: number, length: number) => value.toString(8).padStart(length - 1, '0') + '\0';
    put(name, 0, 100);
    put(octal(entry.mode, 8), 100, 8);
    put(octal(0, 8), 108, 8); // uid
    put(octal(0, 8), 116, 8); // gid
    put(octal(data.length, 12), 124, 12);
    put(octal(0, 12), 136, 12); // mtime
    put('        ', 148, 8); // checksum placeholder
    put(entry.type === 'file' ? '0' : entry.type === 'dir' ? '5' : '2', 156, 1);
    if (entry.linkname) put(entry.linkname, 157, 100);
    put('ustar\0', 257, 6);
    put('00', 263, 2);
    put('root', 265, 32);
    put('root', 297, 32);
    let sum = 0;
    for (const byte of header) sum += byte;
    put(sum.toString(8).padStart(6, '0') + '\0 ', 148, 8);
    blocks.push(header, data);
    if (data.length % 512 !== 0) blocks.push(Buffer.alloc(512 - (data.length % 512)));
  }
  blocks.push(Buffer.alloc(1024));
  return Buffer.concat(blocks);
}

const sha256 = (data: Buffer | string) => createHash('sha256').update(data).digest('hex');

function ociArch(): string {
  const arch: Record<string, string> = { x64: 'amd64', arm64: 'arm64', arm: 'arm', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64' };
  return arch[process.arch] ?? process.arch;
}

/** Fails unless `busybox` is a statically linked binary (Debian: busybox-static). */
export function assertStaticBusybox(busybox: string): void {
  let ldd = '';
  try {
    ldd = execFileSync('ldd', [busybox], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (error) {
    // ldd exits 1 with "not a dynamic executable" for static binaries.
    ldd = String((error as { stdout?: string; stderr?: string }).stdout ?? '') + String((error as { stderr?: string }).stderr ?? '');
  }
  if (!/not a dynamic executable|statically linked/.test(ldd)) {
    throw new Error(`${busybox} is not statically linked (install Debian's busybox-static); ldd says: ${ldd.trim()}`);
  }
}

/** One image as a registry push needs it: its manifest and the blobs it names (config, then layers). */
export interface ImageParts {
  mediaType: string;
  manifest: Buffer;
  blobs: Buffer[];
}

export interface BuiltImage {
  tarball: Buffer;
  busybox: string;
  pause: string;
  layerDigest: string;
  /** The busybox image's parts, for pushing it to a registry (test/support/registry.ts). */
  busyboxParts: ImageParts;
}

export function buildBusyboxImage(busybox = '/bin/busybox'): BuiltImage {
  assertStaticBusybox(busybox);
  const applets = execFileSync(busybox, ['--list'], { encoding: 'utf8' })
    .split('\n')
    .map((a) => a.trim())
    .filter((a) => a && a !== 'busybox' && /^[a-z0-9_.[-]+$/i.test(a));
  const entries: TarEntry[] = [
    ...['bin', 'dev', 'etc', 'proc', 'root', 'run', 'sys', 'var'].map((name) => ({ name, type: 'dir' as const, mode: 0o755 })),
    { name: 'tmp', type: 'dir', mode: 0o1777 },
    { name: 'bin/busybox', type: 'file', mode: 0o755, data: readFileSync(busybox) },
    ...[...new Set(applets)].map((a) => ({ name: `bin/${a}`, type: 'symlink' as const, mode: 0o777, linkname: 'busybox' })),
    { name: 'etc/passwd', type: 'file', mode: 0o644, data: Buffer.from('root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n') },
    { name: 'etc/group', type: 'file', mode: 0o644, data: Buffer.from('root:x:0:\nnogroup:x:65534:\n') },
    { name: 'etc/hosts', type: 'file', mode: 0o644, data: Buffer.alloc(0) },
    { name: 'etc/resolv.conf', type: 'file', mode: 0o644, data: Buffer.alloc(0) },
  ];
  const layer = tar(entries);
  const diffId = `sha256:${sha256(layer)}`;
  const layerBlob = gzipSync(layer, { level: 6 });
  const blobs = new Map<string, Buffer>();
  const put = (data: Buffer) => {
    const digest = sha256(data);
    blobs.set(digest, data);
    return { digest: `sha256:${digest}`, size: data.length };
  };
  const layerDesc = put(layerBlob);
  const arch = ociArch();
  const parts = new Map<string, ImageParts>();
  const image = (name: string, config: Record<string, unknown>) => {
    const configBlob = Buffer.from(
      JSON.stringify({
        architecture: arch,
        os: 'linux',
        created: '1970-01-01T00:00:00Z',
        config: { Env: [PATH], WorkingDir: '/', ...config },
        rootfs: { type: 'layers', diff_ids: [diffId] },
        history: [{ created: '1970-01-01T00:00:00Z', created_by: 'test/support/oci-image.ts' }],
      }),
    );
    const manifest = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...put(configBlob) },
        layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', ...layerDesc }],
      }),
    );
    parts.set(name, { mediaType: 'application/vnd.oci.image.manifest.v1+json', manifest, blobs: [configBlob, layerBlob] });
    return {
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      ...put(manifest),
      platform: { architecture: arch, os: 'linux' },
      annotations: { 'io.containerd.image.name': name, 'org.opencontainers.image.ref.name': name.slice(name.lastIndexOf(':') + 1) },
    };
  };
  const index = {
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.index.v1+json',
    manifests: [image(BUSYBOX_IMAGE, { Cmd: ['sh'] }), image(PAUSE_IMAGE, { Entrypoint: ['/bin/sleep', 'infinity'] })],
  };
  const layout: TarEntry[] = [
    { name: 'blobs', type: 'dir', mode: 0o755 },
    { name: 'blobs/sha256', type: 'dir', mode: 0o755 },
    ...[...blobs].map(([digest, data]) => ({ name: `blobs/sha256/${digest}`, type: 'file' as const, mode: 0o644, data })),
    { name: 'oci-layout', type: 'file', mode: 0o644, data: Buffer.from('{"imageLayoutVersion":"1.0.0"}') },
    { name: 'index.json', type: 'file', mode: 0o644, data: Buffer.from(JSON.stringify(index)) },
  ];
  return { tarball: tar(layout), busybox: BUSYBOX_IMAGE, pause: PAUSE_IMAGE, layerDigest: layerDesc.digest, busyboxParts: parts.get(BUSYBOX_IMAGE)! };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const out = process.argv[2];
  if (!out) {
    console.error('usage: node --import tsx test/support/oci-image.ts OUTPUT.tar');
    process.exit(2);
  }
  const built = buildBusyboxImage(process.env.BUSYBOX ?? '/bin/busybox');
  writeFileSync(out, built.tarball);
  console.log(`${out}: ${built.tarball.length} bytes, ${built.busybox} and ${built.pause}, layer ${built.layerDigest}`);
}
