#!/usr/bin/env bash
# Regenerates gen/ from proto/: TypeScript (ts-proto) and the binary
# descriptor sets that server reflection serves (exact compiler output, so
# grpcurl and buf curl resolve every type and import).
# Usage: scripts/generate.sh [BASE]   writes BASE/gen (default: the repo's gen/)
set -euo pipefail
cd "$(dirname "$0")/.."
base="${1:-.}"
buf=node_modules/.bin/buf
rm -rf "$base/gen"
"$buf" generate proto -o "$base"
# The vendored Kubernetes CRI, for the container backend's client: int64 as
# bigint, since its times are nanoseconds since the epoch (beyond 2^53).
"$buf" generate third_party/cri-api --template buf.gen.cri.yaml -o "$base"
"$buf" build proto -o "$base/gen/taskexecutor.binpb"
"$buf" build node_modules/grpc-health-check/proto -o "$base/gen/grpc-health.binpb"
