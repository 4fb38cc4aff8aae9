#!/usr/bin/env bash
# Make a container engine and the squid image available (CI, or a fresh machine). Idempotent.
#
#  1. If `docker info` fails, start dockerd in the background the way CI needs it (no bridge, no
#     iptables: containers use the host network), logging to /tmp/proxycheck-dockerd.log, and wait
#     for it up to DOCKERD_DEADLINE_S seconds (default 60).
#  2. Build the squid image: `node bin/proxycheck.js images build` (does nothing if it is current).
#     It uses debian:bookworm-slim when present or pullable (the normal path with a registry), and
#     falls back to the offline debootstrap base (containers/base/build-offline-base.sh) otherwise.
#
# testcontainers then needs TESTCONTAINERS_RYUK_DISABLED=true and TESTCONTAINERS_HOST_OVERRIDE=127.0.0.1;
# proxycheck sets both as defaults when they are unset.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
deadline="${DOCKERD_DEADLINE_S:-60}"
log_file="${DOCKERD_LOG:-/tmp/proxycheck-dockerd.log}"

say() { printf '[setup-engine] %s\n' "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }

command -v docker >/dev/null || die "docker CLI not found (apt-get install docker.io)"

if docker info >/dev/null 2>&1; then
  say "container engine answers"
else
  command -v dockerd >/dev/null || die "no engine answers and dockerd is not installed (apt-get install docker.io)"
  say "starting dockerd --bridge=none --iptables=false --ip6tables=false (log: $log_file)"
  nohup dockerd --bridge=none --iptables=false --ip6tables=false >>"$log_file" 2>&1 &
  start=$SECONDS
  until docker info >/dev/null 2>&1; do
    if (( SECONDS - start >= deadline )); then
      die "dockerd did not answer within ${deadline} s (see $log_file)"
    fi
    sleep 0.5
  done
  say "dockerd up after $(( SECONDS - start )) s"
fi

cd "$root"
node bin/proxycheck.js images build
