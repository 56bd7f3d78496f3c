#!/usr/bin/env bash
# Throwaway Redis for the test suite: the broker of NODEOPS_EXECUTOR=celery. Nothing is saved to disk.
# Usage: scripts/test-redis.sh start|stop|status|url
#   start    start redis-server on 127.0.0.1 and on the unix socket <dir>/redis.sock (idempotent), wait
#            until it answers PING, print `export NODEOPS_TEST_BROKER_URL=...` and write the URL to <dir>/url
#   stop     stop the server (no-op when it is not running)
#   status   exit 0 when it answers PING
#   url      print the broker URL
# Environment (scripts/cluster.sh sets them to run its own Redis):
#   TEST_REDIS_DIR   pid file, log, url file and working dir (default var/test-redis)
#   TEST_REDIS_PORT  port on 127.0.0.1 (default 63799)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BASE=${TEST_REDIS_DIR:-$ROOT/var/test-redis}
PORT=${TEST_REDIS_PORT:-63799}
HOST=127.0.0.1
URL="redis://$HOST:$PORT/0"
PID_FILE=$BASE/redis.pid
# The service under test inside a network namespace (tests/support/netns.py) has no route to 127.0.0.1 of this
# one: it reaches Redis through this socket, whose path the tests read from the server (CONFIG GET unixsocket).
SOCKET=$BASE/redis.sock
LOG=$BASE/redis.log
URL_FILE=$BASE/url
START_TIMEOUT=30
STOP_TIMEOUT=30

die() { echo "test-redis: $*" >&2; exit 1; }
log() { echo "test-redis: $*" >&2; }

cli() { redis-cli -h "$HOST" -p "$PORT" "$@" 2>/dev/null; }

answers() { [[ $(cli ping) == PONG ]]; }

# The server on the port is ours when the process id it reports is the one in our pid file.
is_ours() {
    [[ -f $PID_FILE ]] || return 1
    local served
    served=$(cli info server | tr -d '\r' | sed -n 's/^process_id://p')
    [[ -n $served && $served == "$(<"$PID_FILE")" ]]
}

# Another checkout's test Redis on the same port is shared, as the test PostgreSQL is: each test claims its own
# database number (tests/support/services.py), so concurrent runs do not meet.
served_dir() { cli config get dir | tr -d '\r' | sed -n 2p; }

print_url() {
    printf '%s\n' "$URL" >"$URL_FILE"
    printf 'export NODEOPS_TEST_BROKER_URL=%s\n' "$URL"
}

# Serialise concurrent start/stop of the same directory.
take_lock() {
    exec 9>"$BASE/.lock"
    flock -w 60 9 || die "could not lock $BASE/.lock"
}

cmd_start() {
    bash "$ROOT/scripts/ensure-apt.sh" redis-server
    # sun_path holds 108 bytes, its terminating NUL included
    ((${#SOCKET} < 108)) || die "the socket path $SOCKET is too long for a unix socket: set TEST_REDIS_DIR shorter"
    mkdir -p "$BASE"
    take_lock

    if answers; then
        if ! is_ours; then
            local other
            other=$(served_dir)
            [[ $other == */test-redis && $BASE == */test-redis ]] \
                || die "something else answers on $HOST:$PORT (not the Redis of $BASE)"
            log "using the test Redis another checkout started (in $other)"
        fi
        [[ -n $(cli config get unixsocket | tr -d '\r' | sed -n 2p) ]] \
            || log "this Redis has no unix socket (an older script started it): the tests of the service inside" \
                "the test network need one; restart it from the checkout that started it ($0 stop, then start)"
        print_url
        return 0
    fi

    log "starting Redis on $HOST:$PORT (log: $LOG)"
    : >"$LOG"
    # No persistence (save "", appendonly no): the broker only carries work, and a test run starts empty.
    # 9>&-: the server must not inherit (and hold) the lock.
    redis-server --bind "$HOST" --port "$PORT" --protected-mode yes --unixsocket "$SOCKET" --unixsocketperm 700 \
        --daemonize yes --pidfile "$PID_FILE" --logfile "$LOG" --dir "$BASE" \
        --save "" --appendonly no --databases 64 \
        9>&- || { tail -n 30 "$LOG" >&2; die "redis-server failed to start"; }

    local deadline=$((SECONDS + START_TIMEOUT))
    until answers; do
        if ((SECONDS >= deadline)); then
            tail -n 30 "$LOG" >&2
            die "Redis did not answer PING on $HOST:$PORT within ${START_TIMEOUT}s (log above, full log: $LOG)"
        fi
        sleep 0.1
    done
    print_url
}

cmd_stop() {
    [[ -d $BASE ]] || { log "not running"; return 0; }
    take_lock
    if ! answers; then
        log "not running"
        return 0
    fi
    if ! is_ours; then
        log "the Redis on $HOST:$PORT was not started from $BASE: left running"
        return 0
    fi
    local pid
    pid=$(<"$PID_FILE")
    cli shutdown nosave >/dev/null || true
    local deadline=$((SECONDS + STOP_TIMEOUT))
    while kill -0 "$pid" 2>/dev/null; do
        ((SECONDS < deadline)) || die "Redis (pid $pid) did not stop within ${STOP_TIMEOUT}s"
        sleep 0.1
    done
    rm -f "$PID_FILE"
    log "stopped"
}

case ${1:-} in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) answers && is_ours ;;
    url) printf '%s\n' "$URL" ;;
    *) echo "usage: $0 start|stop|status|url" >&2; exit 2 ;;
esac
