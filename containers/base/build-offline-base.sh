#!/usr/bin/env bash
# Build a local Debian bookworm base image without any container registry.
#
#   debootstrap --variant=minbase bookworm <dir> <mirror>  ->  tar | docker import
#
# Result: image ${IMAGE} (default proxycheck/debian-base:bookworm), usable as
#   docker build --network host --build-arg BASE=proxycheck/debian-base:bookworm ...
# (apt-get inside the build reaches the same Debian mirror the host uses).
#
# Idempotent: does nothing if the image already exists (use --force to rebuild).
# Needs: root, debootstrap, a running docker daemon, access to the Debian mirror.
#
# Env overrides:
#   IMAGE=proxycheck/debian-base:bookworm   image name to create
#   SUITE=bookworm                          Debian suite
#   DEBIAN_MIRROR=<url>                     default: first debian URI in host apt config
#   DEBIAN_SECURITY_MIRROR=<url>            default: first debian-security URI in host apt config
#   TMPDIR=<dir>                            where the temporary rootfs is built (default /tmp)
set -euo pipefail

IMAGE="${IMAGE:-proxycheck/debian-base:bookworm}"
SUITE="${SUITE:-bookworm}"
FORCE=0
[[ "${1:-}" == "--force" ]] && FORCE=1

log() { printf '[build-offline-base] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

command -v docker >/dev/null || die "docker CLI not found"
docker info >/dev/null 2>&1 || die "docker daemon not reachable (is dockerd running?)"

if [[ $FORCE -eq 0 ]] && docker image inspect "$IMAGE" >/dev/null 2>&1; then
  log "image $IMAGE already present - nothing to do (use --force to rebuild)"
  exit 0
fi

[[ $(id -u) -eq 0 ]] || die "must run as root (debootstrap needs it)"
command -v debootstrap >/dev/null || die "debootstrap not installed (apt-get install debootstrap)"

# --- find the Debian mirror(s) the host apt is configured with -------------------
# Handles both deb822 (*.sources, "URIs: ...") and one-line (*.list, "deb URL suite ...").
apt_uris() {
  local f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [[ -f "$f" ]] || continue
    case "$f" in
      *.sources) awk 'tolower($1)=="uris:" { for (i=2;i<=NF;i++) print $i }' "$f" ;;
      *)         awk '$1=="deb" { for (i=2;i<=NF;i++) if ($i ~ /^[a-z+]+:\/\//) { print $i; break } }' "$f" ;;
    esac
  done
}
if [[ -z "${DEBIAN_MIRROR:-}" ]]; then
  DEBIAN_MIRROR="$(apt_uris | grep -E '/debian/?$' | head -n1 || true)"
  DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
fi
if [[ -z "${DEBIAN_SECURITY_MIRROR:-}" ]]; then
  DEBIAN_SECURITY_MIRROR="$(apt_uris | grep -E '/debian-security/?$' | head -n1 || true)"
  DEBIAN_SECURITY_MIRROR="${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"
fi
DEBIAN_MIRROR="${DEBIAN_MIRROR%/}"
DEBIAN_SECURITY_MIRROR="${DEBIAN_SECURITY_MIRROR%/}"
log "image:           $IMAGE"
log "suite:           $SUITE"
log "mirror:          $DEBIAN_MIRROR"
log "security mirror: $DEBIAN_SECURITY_MIRROR"

WORKDIR="$(mktemp -d "${TMPDIR:-/tmp}/proxycheck-base.XXXXXX")"
ROOTFS="$WORKDIR/rootfs"
cleanup() {
  # debootstrap normally unmounts these itself; be defensive after a failure.
  for m in proc sys dev/pts; do
    mountpoint -q "$ROOTFS/$m" 2>/dev/null && umount -l "$ROOTFS/$m" || true
  done
  rm -rf --one-file-system "$WORKDIR"
}
trap cleanup EXIT

start=$(date +%s)
log "debootstrap --variant=minbase $SUITE $ROOTFS $DEBIAN_MIRROR (takes ~1-2 min)"
debootstrap --variant=minbase "$SUITE" "$ROOTFS" "$DEBIAN_MIRROR" >&2 \
  || { log "debootstrap failed; see $ROOTFS/debootstrap/debootstrap.log"; cat "$ROOTFS/debootstrap/debootstrap.log" >&2 || true; exit 1; }

log "configuring apt sources / trimming rootfs"
# Same suites as the host (incl. security, which carries the current squid build).
rm -f "$ROOTFS/etc/apt/sources.list"
cat > "$ROOTFS/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $DEBIAN_MIRROR
Suites: $SUITE $SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $DEBIAN_SECURITY_MIRROR
Suites: $SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
# Container-friendly apt defaults (like the official debian images).
cat > "$ROOTFS/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
echo 'Acquire::Languages "none";' > "$ROOTFS/etc/apt/apt.conf.d/docker-no-languages"
# docker injects /etc/resolv.conf, /etc/hosts and /etc/hostname at run/build time;
# don't bake the host's copies into the image.
rm -f "$ROOTFS/etc/resolv.conf" "$ROOTFS/etc/hostname"
: > "$ROOTFS/etc/resolv.conf"
rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/archives/*.deb \
       "$ROOTFS"/var/cache/apt/*.bin "$ROOTFS"/var/log/*.log "$ROOTFS"/debootstrap
# docker mounts its own /dev, /proc, /sys.
rm -rf "$ROOTFS"/dev/* "$ROOTFS"/proc/* "$ROOTFS"/sys/* 2>/dev/null || true

log "docker import -> $IMAGE"
tar --numeric-owner -C "$ROOTFS" -c . \
  | docker import \
      --change 'CMD ["bash"]' \
      --change 'ENV LANG=C.UTF-8' \
      --message "debootstrap --variant=minbase $SUITE $DEBIAN_MIRROR" \
      - "$IMAGE" >&2

log "done in $(( $(date +%s) - start ))s: $(docker image inspect -f '{{.Id}} {{.Size}} bytes' "$IMAGE")"
