#!/bin/sh
# Waits for the executor's containerd and imports the sandbox (pause) image
# from a tarball into the CRI namespace unless it is there: no registry is
# needed to start a task sandbox. Idempotent; run after every start.
#   ADDRESS    containerd socket   (default /run/task-executor/containerd/containerd.sock)
#   PAUSE_TAR  the image tarball   (default /var/lib/task-executor/images/pause.tar), e.g. made with
#              `ctr images pull registry.k8s.io/pause:3.9 && ctr images export pause.tar registry.k8s.io/pause:3.9`
#   IMAGE      its name, as sandbox_image in config.toml (default registry.k8s.io/pause:3.9)
set -eu
ADDRESS=${ADDRESS:-/run/task-executor/containerd/containerd.sock}
PAUSE_TAR=${PAUSE_TAR:-/var/lib/task-executor/images/pause.tar}
IMAGE=${IMAGE:-registry.k8s.io/pause:3.9}
ctr="ctr --address $ADDRESS --namespace k8s.io"

tries=0
until $ctr version >/dev/null 2>&1; do
  tries=$((tries + 1))
  if [ "$tries" -ge 100 ]; then
    echo "containerd at $ADDRESS did not answer within 20 s" >&2
    exit 1
  fi
  sleep 0.2
done

if $ctr images ls -q | grep -qxF "$IMAGE"; then
  exit 0
fi
if [ ! -f "$PAUSE_TAR" ]; then
  echo "sandbox image $IMAGE is missing and $PAUSE_TAR does not exist: no task sandbox can start" >&2
  exit 1
fi
$ctr images import "$PAUSE_TAR"
$ctr images ls -q | grep -qxF "$IMAGE" || { echo "$PAUSE_TAR does not hold $IMAGE" >&2; exit 1; }
