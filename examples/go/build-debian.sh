#!/usr/bin/env bash
# Builds this example offline against Debian 12's Go packages, in GOPATH mode (how Debian itself
# builds Go: the libraries are sources under /usr/share/gocode, with no module proxy or go.sum):
#   apt-get install golang-go golang-google-grpc-dev golang-github-golang-protobuf-1-5-dev
# golang-github-golang-protobuf-1-5-dev must be named: golang-google-grpc-dev depends on
# "golang-github-golang-protobuf-1-3-dev | ...-1-5-dev", apt picks 1.3.5 by default, and 1.3.5
# predates the protobuf APIv2 that protoc-gen-go 1.28's code is: grpc marshals through it, and it
# panics on the first oneof field. With a module proxy, `go mod tidy && go build` in this
# directory instead (go.mod).
# Usage: examples/go/build-debian.sh OUT [DIR]   builds the Go main package in DIR (a directory of
#        this repository, default examples/go: the controller) into the binary OUT
set -euo pipefail
gocode=/usr/share/gocode/src
for dir in google.golang.org/grpc google.golang.org/protobuf; do
  [ -d "$gocode/$dir" ] || { echo "$gocode/$dir not found: apt-get install golang-google-grpc-dev golang-github-golang-protobuf-1-5-dev" >&2; exit 1; }
done
# golang/protobuf 1.4 and later are built on APIv2 and say so in their go.mod; 1.3 does not.
if ! grep -q google.golang.org/protobuf "$gocode/github.com/golang/protobuf/go.mod" 2>/dev/null; then
  echo "github.com/golang/protobuf in $gocode is older than 1.4 (golang-github-golang-protobuf-1-3-dev), whose marshaller panics on the generated oneofs: apt-get install golang-github-golang-protobuf-1-5-dev" >&2
  exit 1
fi
out=$(realpath -m "$1")
repo=$(cd "$(dirname "$0")/../.." && pwd)
gopath=$(mktemp -d)
trap 'rm -rf "$gopath"' EXIT
mkdir -p "$gopath/src/github.com/task-executor"
ln -s "$repo" "$gopath/src/github.com/task-executor/task-executor"
GO111MODULE=off GOPATH="$gopath:/usr/share/gocode" GOFLAGS= GOPROXY=off \
  go build -o "$out" "github.com/task-executor/task-executor/${2:-examples/go}"
