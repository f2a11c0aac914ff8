#!/usr/bin/env bash
# Start `scripts/build-kube.sh` in the background for `make test` (issue 21).
#
# A fresh machine needs about 40 minutes of one core to build the Kubernetes toolchain; the
# rest of the suite takes about as long, so the two run side by side and the Kubernetes tests
# run last, waiting for the build (tests/infra/kubernetes/conftest.py reads the files below).
# With everything cached the build ends at once. Files: .state/kube-tools.{pid,rc,log}.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
state="$root/.state"
mkdir -p "$state"
if [ -f "$state/kube-tools.pid" ] && kill -0 "$(cat "$state/kube-tools.pid")" 2>/dev/null \
   && [ ! -f "$state/kube-tools.rc" ]; then
  exit 0  # one is running already (an earlier `make test` still building)
fi
rm -f "$state/kube-tools.rc"
(
  rc=0
  bash "$root/scripts/build-kube.sh" >"$state/kube-tools.log" 2>&1 || rc=$?
  echo "$rc" >"$state/kube-tools.rc"
) </dev/null &
echo $! >"$state/kube-tools.pid"
