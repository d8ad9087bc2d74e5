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
#
# Services: catalog order1 order2 order3 frontend. Settings (environment variables)
# are listed in the README; every service flag also has its own variable.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
HOST="${TOYSTORE_HOST:-127.0.0.1}"
DATA="${TOYSTORE_DATA_DIR:-$ROOT/data}"
FRONTEND_PORT="${FRONTEND_PORT:-8080}"
CATALOG_PORT="${CATALOG_PORT:-8081}"
ORDER1_PORT="${ORDER1_PORT:-8091}"
ORDER2_PORT="${ORDER2_PORT:-8092}"
ORDER3_PORT="${ORDER3_PORT:-8093}"
PROFILE="${TOYSTORE_PROFILE:-release}"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
if [[ "$PROFILE" == "dev" ]]; then BIN="$TARGET/debug"; else BIN="$TARGET/$PROFILE"; fi
SERVICES=(catalog order1 order2 order3 frontend)

# Where services reach each other; set these to run them elsewhere (docs/DESIGN.md).
export TOYSTORE_CATALOG_URL="${TOYSTORE_CATALOG_URL:-http://$HOST:$CATALOG_PORT}"
export TOYSTORE_REPLICAS="${TOYSTORE_REPLICAS:-1=http://$HOST:$ORDER1_PORT,2=http://$HOST:$ORDER2_PORT,3=http://$HOST:$ORDER3_PORT}"
export CATALOG_FRONTEND_URL="${CATALOG_FRONTEND_URL:-http://$HOST:$FRONTEND_PORT}"
export CATALOG_SEED_FILE="${CATALOG_SEED_FILE:-$ROOT/data/toys.json}"
# primary-backup (the lab's mode, default) or raft; the order data directories differ.
export TOYSTORE_REPLICATION="${TOYSTORE_REPLICATION:-primary-backup}"
case "$TOYSTORE_REPLICATION" in
    primary-backup) ORDER_SUFFIX="" ;;
    raft) ORDER_SUFFIX="-raft" ;;
    *) echo "run.sh: TOYSTORE_REPLICATION must be primary-backup or raft" >&2; exit 1 ;;
esac
export RUST_LOG="${RUST_LOG:-info}"
export NO_COLOR=1

die() { echo "run.sh: $*" >&2; exit 1; }

port_of() {
    case "$1" in
        catalog) echo "$CATALOG_PORT" ;;
        order1) echo "$ORDER1_PORT" ;;
        order2) echo "$ORDER2_PORT" ;;
        order3) echo "$ORDER3_PORT" ;;
        frontend) echo "$FRONTEND_PORT" ;;
        *) die "unknown service '$1' (services: ${SERVICES[*]})" ;;
    esac
}

pid_file() { echo "$DATA/run/$1.pid"; }
log_file() { echo "$DATA/logs/$1.log"; }

# The PID of a running service, or nothing. A PID from a stale file that now belongs
# to another program (PIDs are reused) does not count.
running_pid() {
    local file pid exe
    file="$(pid_file "$1")"
    [[ -f "$file" ]] || return 0
    pid="$(cat "$file")"
    [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 0
    exe="$(readlink "/proc/$pid/exe" 2>/dev/null || true)"
    exe="${exe% (deleted)}" # the binary was rebuilt while it ran
    if [[ "${exe##*/}" == "${1%[0-9]}" ]]; then echo "$pid"; fi
}

# True when something accepts connections on the port.
port_busy() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

# Body of GET http://HOST:PORT/PATH (plain bash, no curl needed).
http_get() {
    local port="$1" path="$2"
    exec 3<>"/dev/tcp/$HOST/$port" || return 1
    printf 'GET %s HTTP/1.0\r\nHost: %s\r\nConnection: close\r\n\r\n' "$path" "$HOST" >&3
    timeout 2 cat <&3 | sed '1,/^\r$/d'
    exec 3>&- 3<&-
}

# True when the service answers its health check as healthy.
healthy() {
    local body
    body="$(http_get "$(port_of "$1")" /health 2>/dev/null)" || return 1
    case "$1" in
        order*) [[ "$body" == *'"ready":true'* ]] ;;
        frontend) [[ "$body" == *'"leader":'[0-9]* ]] ;;
        *) [[ "$body" == *'"ready":true'* ]] ;;
    esac
}

token() {
    local file="$DATA/cluster.token"
    if [[ ! -s "$file" ]]; then
        mkdir -p "$DATA"
        (umask 077 && od -An -tx1 -N24 /dev/urandom | tr -d ' \n' > "$file")
    fi
    cat "$file"
}

build() {
    [[ "${TOYSTORE_BUILD:-1}" == "1" ]] || return 0
    command -v cargo >/dev/null || die "cargo not found: install the Rust toolchain (https://rustup.rs)"
    echo "building ($PROFILE)..."
    local flag="--profile=$PROFILE"
    (cd "$ROOT" && cargo build --quiet "$flag" -p catalog -p order -p frontend --bins)
}

start_one() {
    local svc="$1" port pid log
    port="$(port_of "$svc")"
    pid="$(running_pid "$svc")"
    if [[ -n "$pid" ]]; then
        echo "$svc already running (pid $pid)"
        return 0
    fi
    if port_busy "$port"; then
        die "cannot start $svc: port $port on $HOST is already in use by another program (set ${svc^^}_PORT to use another port)"
    fi
    mkdir -p "$DATA/run" "$DATA/logs"
    log="$(log_file "$svc")"
    export TOYSTORE_CLUSTER_TOKEN
    TOYSTORE_CLUSTER_TOKEN="$(token)"
    case "$svc" in
        catalog)
            nohup "$BIN/catalog" --listen "$HOST:$port" --data-dir "$DATA/catalog" \
                >>"$log" 2>&1 </dev/null &
            ;;
        order*)
            local id="${svc#order}"
            nohup "$BIN/order" --id "$id" --listen "$HOST:$port" --data-dir "$DATA/$svc$ORDER_SUFFIX" \
                >>"$log" 2>&1 </dev/null &
            ;;
        frontend)
            nohup "$BIN/frontend" --listen "$HOST:$port" >>"$log" 2>&1 </dev/null &
            ;;
    esac
    echo $! >"$(pid_file "$svc")"
    echo "started $svc (pid $!, port $port, log ${log#"$ROOT/"})"
}

# True while process $1 exists and has not exited (a zombie, not yet reaped, has).
alive() {
    [[ "$1" =~ ^[0-9]+$ ]] && kill -0 "$1" 2>/dev/null &&
        [[ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]]
}

wait_healthy() {
    local svc="$1" deadline=$((SECONDS + ${TOYSTORE_START_TIMEOUT:-30})) pid
    # The pid start_one recorded (or found running). Not `running_pid`: a process
    # just started may still be `nohup` (or the forking shell) for a moment before
    # it execs the service, and would be taken for one that exited.
    pid="$(cat "$(pid_file "$svc")" 2>/dev/null || true)"
    until healthy "$svc"; do
        if ! alive "$pid"; then
            echo "--- last lines of $(log_file "$svc"):" >&2
            tail -n 20 "$(log_file "$svc")" >&2 || true
            die "$svc exited during start-up"
        fi
        ((SECONDS < deadline)) || die "$svc did not become healthy in time; see $(log_file "$svc")"
        sleep 0.1
    done
}

stop_one() {
    local svc="$1" pid
    pid="$(running_pid "$svc")"
    if [[ -z "$pid" ]]; then
        rm -f "$(pid_file "$svc")"
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        echo "$svc did not stop in 10 s; killing it"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$(pid_file "$svc")"
    echo "stopped $svc"
}

kill_one() {
    local svc="$1" pid
    pid="$(running_pid "$svc")"
    [[ -n "$pid" ]] || die "$svc is not running"
    kill -KILL "$pid"
    local deadline=$((SECONDS + 10))
    while kill -0 "$pid" 2>/dev/null; do
        ((SECONDS < deadline)) || die "$svc (pid $pid) still exists 10 s after SIGKILL"
        sleep 0.05
    done
    rm -f "$(pid_file "$svc")"
    echo "killed $svc (SIGKILL, pid $pid)"
}

status() {
    local svc pid
    for svc in "${SERVICES[@]}"; do
        pid="$(running_pid "$svc")"
        if [[ -z "$pid" ]]; then
            printf '%-9s stopped\n' "$svc"
            continue
        fi
        printf '%-9s running  pid %-7s http://%s:%s  %s\n' "$svc" "$pid" "$HOST" "$(port_of "$svc")" \
            "$(http_get "$(port_of "$svc")" /health 2>/dev/null || echo '(no answer)')"
    done
}

urls() {
    cat <<EOF
toystore is up ($TOYSTORE_REPLICATION replication):
  front-end   http://$HOST:$FRONTEND_PORT   (try: curl http://$HOST:$FRONTEND_PORT/products/Tux)
  dashboard   http://$HOST:$FRONTEND_PORT/dashboard   (the live view, in a browser)
  catalog     http://$HOST:$CATALOG_PORT
  order1..3   http://$HOST:$ORDER1_PORT  http://$HOST:$ORDER2_PORT  http://$HOST:$ORDER3_PORT
data and logs in ${DATA#"$ROOT/"}/; stop with ./run.sh stop
EOF
}

cmd="${1:-up}"
case "$cmd" in
    up)
        build
        for svc in catalog order1 order2 order3; do start_one "$svc"; done
        for svc in catalog order1 order2 order3; do wait_healthy "$svc"; done
        start_one frontend
        wait_healthy frontend
        urls
        ;;
    start)
        [[ $# -eq 2 ]] || die "usage: ./run.sh start <service>"
        port_of "$2" >/dev/null
        [[ -x "$BIN/${2%[0-9]}" ]] || build
        start_one "$2"
        wait_healthy "$2"
        ;;
    stop)
        if [[ $# -eq 2 ]]; then
            port_of "$2" >/dev/null
            stop_one "$2"
        else
            for svc in frontend order1 order2 order3 catalog; do stop_one "$svc"; done
        fi
        ;;
    restart)
        [[ $# -eq 2 ]] || die "usage: ./run.sh restart <service>"
        stop_one "$2"
        start_one "$2"
        wait_healthy "$2"
        ;;
    kill)
        [[ $# -eq 2 ]] || die "usage: ./run.sh kill <service>"
        port_of "$2" >/dev/null
        kill_one "$2"
        ;;
    status) status ;;
    logs)
        [[ $# -eq 2 ]] || die "usage: ./run.sh logs <service>"
        port_of "$2" >/dev/null
        tail -n 50 -f "$(log_file "$2")"
        ;;
    -h | --help | help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0" ;;
    *) die "unknown command '$cmd' (try ./run.sh help)" ;;
esac
