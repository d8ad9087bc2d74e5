#!/usr/bin/env bash
# toystore launcher: build, start, stop, crash and restart the services.
#
#   ./run.sh                  build (release) and start everything, wait until healthy
#   ./run.sh stop             stop everything (SIGTERM, then SIGKILL after 10 s)
#   ./run.sh status           show what runs, with each order replica's role and digest
#   ./run.sh kill <service>   SIGKILL one service (simulate a crash)
#   ./run.sh start <service>  start one service again (and wait until healthy)
#   ./run.sh restart <service>
#   ./run.sh logs <service>   follow a service's log
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

die() { echo "run.sh: $*" >&2; exit 1; }

build() {
    [[ "${TOYSTORE_BUILD:-1}" == "1" ]] || return 0
    command -v cargo >/dev/null || die "cargo not found: install the Rust toolchain (https://rustup.rs)"
    echo "building ($PROFILE)..."
    (cd "$ROOT" && cargo build --quiet "--profile=$PROFILE" -p catalog -p order -p frontend -p launcher --bins)
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
    *) built || build ;;
esac
built || die "the binaries are not in $BIN (TOYSTORE_BUILD=0 skips building them)"
export TOYSTORE_ROOT="$ROOT"
exec "$BIN/launcher" "$@"
