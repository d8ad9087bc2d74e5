#!/usr/bin/env bash
# toystore launcher: build, start, stop, crash and restart the services.
#
#   ./run.sh                  build (release) and start everything, wait until healthy
#   ./run.sh stop             stop everything (SIGTERM, then SIGKILL after 10 s)
#   ./run.sh status           show what runs, with each order replica's role and digest
#   ./run.sh kill <service>   SIGKILL one service (simulate a crash)
#   ./run.sh start <service>  start one service again (and wait until healthy)
#   ./run.sh restart <service>
#   ./run.sh rebuild <service> start a replica (orderN, or catalogN) afresh from its
#                             peers, its data directory set aside: for a damaged store
#   ./run.sh logs <service>   follow a service's log
#   ./run.sh image            build the services static and the container image
#   ./run.sh compose ARGS...  podman-compose (or docker compose) on compose.yaml:
#                             `up -d`, `ps`, `kill order1`, `start order1`, `down`
#
# TOYSTORE_REPLICATION=raft ./run.sh ... runs the order replicas as a Raft group.
# TOYSTORE_CATALOG_REPLICAS=3 ./run.sh ... runs catalog1..3 as a Raft group.
#
# Services: catalog (or catalog1..3) order1 order2 order3 frontend. Settings
# (environment variables) are listed in the README; every service flag also has its
# own variable.
#
# This script builds the binaries; the launcher (launcher/, beside them in the target
# directory) does the rest, from the one description of a cluster that the tests and
# the client share (common/src/topology.rs).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PROFILE="${TOYSTORE_PROFILE:-release}"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
if [[ "$PROFILE" == "dev" ]]; then BIN="$TARGET/debug"; else BIN="$TARGET/$PROFILE"; fi

IMAGE="${TOYSTORE_IMAGE:-localhost/toystore:latest}"

die() { echo "run.sh: $*" >&2; exit 1; }

build() {
    [[ "${TOYSTORE_BUILD:-1}" == "1" ]] || return 0
    command -v cargo >/dev/null || die "cargo not found: install the Rust toolchain (https://rustup.rs)"
    echo "building ($PROFILE)..."
    (cd "$ROOT" && cargo build --quiet "--profile=$PROFILE" -p catalog -p order -p frontend -p launcher --bins)
}

# The container image: the services and the launcher linked static (glibc's
# crt-static: the musl target is not needed) for a FROM scratch image, and the seed.
image() {
    local engine host bins stage
    engine="$(container_engine)"
    host="$(rustc -vV | sed -n 's/^host: //p')"
    bins="$TARGET/$host/image"
    stage="$TARGET/image-context"
    echo "building static binaries for the image (profile image, $host)..."
    (cd "$ROOT" && RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" cargo build --quiet \
        --profile=image --target "$host" -p catalog -p order -p frontend -p launcher --bins)
    rm -rf "$stage" && mkdir -p "$stage"
    cp "$bins"/{catalog,order,frontend,launcher} "$ROOT/data/toys.json" "$stage/"
    echo "building the image $IMAGE with $engine..."
    if [[ "$engine" == podman ]]; then
        CONTAINERS_CONF="$ROOT/deploy/containers.conf" podman build --quiet --format docker \
            -t "$IMAGE" -f "$ROOT/deploy/Containerfile" "$stage" >/dev/null
    else
        docker build --quiet -t "$IMAGE" -f "$ROOT/deploy/Containerfile" "$stage" >/dev/null
    fi
    "$engine" image ls "$IMAGE"
}

# The compose tool on compose.yaml (or $COMPOSE_FILE), with the project's podman
# settings and the cluster token that compose.yaml passes as a secret.
compose() {
    local token="$ROOT/data/cluster.token"
    if [[ ! -s "$token" ]]; then
        mkdir -p "$ROOT/data"
        (umask 077 && od -An -tx1 -N24 /dev/urandom | tr -d ' \n' >"$token")
    fi
    cd "$ROOT"
    export CONTAINERS_CONF="$ROOT/deploy/containers.conf" COMPOSE_FILE="${COMPOSE_FILE:-compose.yaml}"
    local project="${COMPOSE_PROJECT_NAME:-toystore}"
    if command -v podman-compose >/dev/null; then
        case "${1:-}" in
            # podman-compose 1.0 has no `kill`: SIGKILL the services' containers.
            kill)
                local service names=()
                for service in "${@:2}"; do names+=("${project}_${service}_1"); done
                exec podman kill "${names[@]}"
                ;;
            # ... and leaves the project's network behind on `down`.
            down)
                podman-compose -p "$project" "$@"
                podman network ls -q --filter "label=io.podman.compose.project=$project" |
                    xargs -r podman network rm >/dev/null
                exit 0
                ;;
        esac
        exec podman-compose -p "$project" "$@"
    elif docker compose version >/dev/null 2>&1; then
        exec docker compose -p "$project" "$@"
    fi
    die "no compose tool: install podman-compose (with podman and runc), or Docker with its compose plugin"
}

# podman where it is installed, else a Docker that answers.
container_engine() {
    if command -v podman >/dev/null; then
        echo podman
    elif docker info >/dev/null 2>&1; then
        echo docker
    else
        die "no container engine: install podman and runc (or Docker)"
    fi
}

built() {
    local bin
    for bin in launcher catalog order frontend; do [[ -x "$BIN/$bin" ]] || return 1; done
}

case "${1:-up}" in
    -h | --help | help)
        awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
        exit 0
        ;;
    up) build ;;
    image) image && exit 0 ;;
    compose) shift && compose "$@" ;;
    *) built || build ;;
esac
built || die "the binaries are not in $BIN (TOYSTORE_BUILD=0 skips building them)"
export TOYSTORE_ROOT="$ROOT"
exec "$BIN/launcher" "$@"
