#!/usr/bin/env bash
# Regenerates gen/ from proto/: TypeScript (ts-proto) and the binary
# descriptor sets that server reflection serves (exact compiler output, so
# grpcurl and buf curl resolve every type and import); and the Go module gen/go
# (scripts/generate-go.sh) when the Debian plugins it is pinned to are installed,
# else the committed gen/go is kept as it is (with a warning).
# Usage: scripts/generate.sh [BASE]   writes BASE/gen (default: the repo's gen/)
set -euo pipefail
cd "$(dirname "$0")/.."
base="${1:-.}"
buf=node_modules/.bin/buf
kept_go=$(mktemp -d)
trap 'rm -rf "$kept_go"' EXIT
if ! go_problem=$(scripts/generate-go.sh --tools 2>&1) && [ -d gen/go ]; then
  cp -R gen/go "$kept_go/go"
fi
rm -rf "$base/gen"
"$buf" generate proto -o "$base"
# The vendored Kubernetes CRI, for the container backend's client: int64 as
# bigint, since its times are nanoseconds since the epoch (beyond 2^53).
"$buf" generate third_party/cri-api --template buf.gen.cri.yaml -o "$base"
"$buf" build proto -o "$base/gen/taskexecutor.binpb"
"$buf" build node_modules/grpc-health-check/proto -o "$base/gen/grpc-health.binpb"
if [ -z "$go_problem" ]; then
  scripts/generate-go.sh "$base"
elif [ -d "$kept_go/go" ]; then
  cp -R "$kept_go/go" "$base/gen/go"
  echo "gen/go not regenerated (kept as committed): $go_problem" >&2
fi
