// Server reflection from the compiler's own descriptors (gen/*.binpb, written
// by `buf build`). proto-loader's re-packaged descriptors drop imports, which
// strict clients such as grpcurl and `buf curl` cannot resolve.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { BinaryReader, WireType } from '@bufbuild/protobuf/wire';
import type { Server } from '@grpc/grpc-js';
import type { PackageDefinition } from '@grpc/proto-loader';
import { ReflectionService } from '@grpc/reflection';

const DESCRIPTOR_SETS = ['taskexecutor.binpb', 'grpc-health.binpb'];

/** The encoded FileDescriptorProtos of a FileDescriptorSet (field 1, repeated). */
export function fileDescriptorProtos(set: Uint8Array): Uint8Array[] {
  const reader = new BinaryReader(set);
  const files: Uint8Array[] = [];
  while (reader.pos < reader.len) {
    const [field, wireType] = reader.tag();
    if (field === 1 && wireType === WireType.LengthDelimited) files.push(reader.bytes());
    else reader.skip(wireType);
  }
  return files;
}

export function addReflection(server: Server, genDir: string): void {
  const files = DESCRIPTOR_SETS.flatMap((name) => fileDescriptorProtos(readFileSync(join(genDir, name))));
  // ReflectionService reads only `fileDescriptorProtos` from the package definition.
  const definition = { descriptors: { fileDescriptorProtos: files } } as unknown as PackageDefinition;
  new ReflectionService(definition).addToServer(server);
}
