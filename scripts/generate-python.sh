#!/usr/bin/env bash
# Generates the Python stubs of proto/ (messages and gRPC client) into OUT
# (default: examples/python/gen, which git ignores). Needs protoc and
# grpc_python_plugin: Debian's protobuf-compiler and protobuf-compiler-grpc.
# Usage: scripts/generate-python.sh [OUT]
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-examples/python/gen}"
for tool in protoc grpc_python_plugin; do
  if ! command -v "$tool" >/dev/null; then
    echo "$tool not found: install protobuf-compiler and protobuf-compiler-grpc (Debian/Ubuntu: apt-get install protobuf-compiler protobuf-compiler-grpc python3-grpcio)" >&2
    exit 1
  fi
done
rm -rf "$out"
mkdir -p "$out"
node_modules/.bin/buf generate proto --template buf.gen.python.yaml -o "$out"
