#!/usr/bin/env bash
# Builds local stand-ins for the upstream base images the compose file names
# (python:3.11-slim, redis:7-alpine, postgres:16-alpine) from Debian packages, for machines
# that reach Debian's and PyPI's mirrors but no image registry. Needs a running Docker engine
# (DOCKER_HOST) and debootstrap; prints the variables that point the compose file at them.
#   scripts/standin-images.sh > standins.env
set -euo pipefail
cd "$(dirname "$0")/.."
DEBIAN_MIRROR="${DEBIAN_MIRROR:-$(awk '/^URIs:/ {print $2; exit} /^deb / {print $2; exit}' \
  /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null || true)}"
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
BASE=astra-standin/debian:bookworm
export DOCKER_BUILDKIT=0  # the engine's classic builder: no buildx needed

log() { echo "[standin-images] $*" >&2; }

if ! docker image inspect "$BASE" >/dev/null 2>&1; then
  rootfs=$(mktemp -d /var/tmp/astra-rootfs.XXXXXX)
  trap 'rm -rf "$rootfs"' EXIT
  log "debootstrap bookworm from $DEBIAN_MIRROR"
  debootstrap --variant=minbase --include=ca-certificates bookworm "$rootfs" "$DEBIAN_MIRROR" \
    >"$rootfs.log" 2>&1 || { tail -20 "$rootfs.log" >&2; exit 1; }
  rm -f "$rootfs.log"
  # The same package sources as the host (security updates included) ...
  cp /etc/apt/sources.list.d/*.sources "$rootfs/etc/apt/sources.list.d/" 2>/dev/null || true
  [ -f /etc/apt/sources.list ] && cp /etc/apt/sources.list "$rootfs/etc/apt/"
  # ... and the host's local certificate authorities: where egress passes an intercepting
  # proxy, apt and pip inside builds trust it only then.
  if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    cp /usr/local/share/ca-certificates/*.crt "$rootfs/usr/local/share/ca-certificates/"
    chroot "$rootfs" update-ca-certificates >/dev/null
  fi
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  tar --numeric-owner -C "$rootfs" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
    --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
    --change 'ENV DEBIAN_FRONTEND=noninteractive' \
    --change 'CMD ["bash"]' - "$BASE" >/dev/null
  rm -rf "$rootfs"
  trap - EXIT
fi

for name in python redis postgres; do
  tag="astra-standin/$name:bookworm"
  if ! docker image inspect "$tag" >/dev/null 2>&1; then
    log "building $tag"
    docker build -q --build-arg "BASE_IMAGE=$BASE" -t "$tag" "docker/standins/$name" >/dev/null
  fi
done
echo "ASTRA_PYTHON_IMAGE=astra-standin/python:bookworm"
echo "ASTRA_REDIS_IMAGE=astra-standin/redis:bookworm"
echo "ASTRA_POSTGRES_IMAGE=astra-standin/postgres:bookworm"
