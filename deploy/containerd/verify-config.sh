#!/bin/sh
# Checks that a containerd config (default: ./config.toml) parses and that its
# CRI plugin loads, by starting containerd on it with root, state and socket in
# a temp dir (nothing of a running containerd is touched), then stopping it.
# The CNI conf dir, which the CRI plugin creates at startup, is moved there
# too; nothing else in the config is written to before a container runs.
#   sudo ./verify-config.sh [config.toml]
set -eu
CONFIG=${1:-$(dirname "$0")/config.toml}
DIR=$(mktemp -d /tmp/te-ctrd-verify-XXXXXX)
SOCK=$DIR/containerd.sock
sed "s#^\([[:space:]]*conf_dir = \).*#\1\"$DIR/cni/net.d\"#" "$CONFIG" >"$DIR/config.toml"
containerd --config "$DIR/config.toml" --root "$DIR/root" --state "$DIR/state" --address "$SOCK" >"$DIR/log" 2>&1 &
PID=$!
cleanup() {
  kill "$PID" 2>/dev/null || true
  wait "$PID" 2>/dev/null || true
  rm -rf "$DIR"
}
trap cleanup EXIT

tries=0
until ctr --address "$SOCK" version >/dev/null 2>&1; do
  tries=$((tries + 1))
  if ! kill -0 "$PID" 2>/dev/null || [ "$tries" -ge 100 ]; then
    echo "containerd did not start on $CONFIG:" >&2
    tail -n 20 "$DIR/log" >&2
    exit 1
  fi
  sleep 0.2
done
if ! ctr --address "$SOCK" plugins ls | grep -E '^io\.containerd\.grpc\.v1[[:space:]]+cri[[:space:]].*[[:space:]]ok[[:space:]]*$' >/dev/null; then
  echo "containerd started on $CONFIG but its CRI plugin did not load:" >&2
  ctr --address "$SOCK" plugins ls | grep -Ev ' ok[[:space:]]*$' >&2 || true
  grep -i 'error\|level=warn' "$DIR/log" | tail -n 10 >&2 || true
  exit 1
fi
echo "$CONFIG: containerd $(ctr --address "$SOCK" version | awk '/Server:/{s=1} s && /Version:/{print $2; exit}') started with it, CRI plugin ok"
