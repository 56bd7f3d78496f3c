#!/usr/bin/env bash
# Throwaway PostgreSQL cluster for the test suite (fsync off: never keep data in it); with the variables below,
# any private PostgreSQL on 127.0.0.1 (scripts/cluster.sh runs its own).
# Usage: scripts/test-postgres.sh start|stop|status|url|destroy
#   start    init the cluster if needed, start it (idempotent), wait until it accepts
#            connections, print `export NODEOPS_TEST_PG_URL=...` and write the URL to
#            var/test-pg/url
#   stop     stop the server (no-op when it is not running)
#   status   exit 0 when it is accepting connections
#   url      print the SQLAlchemy URL
#   destroy  stop and delete the cluster directory
# Environment (scripts/cluster.sh sets them to run its own PostgreSQL):
#   TEST_PG_DIR       data, socket and log, owned by postgres when run as root (default /tmp/nodeops-test-pg)
#   TEST_PG_PORT      port on 127.0.0.1 (default 54329)
#   TEST_PG_URL_FILE  where `start` writes the URL (default var/test-pg/url)
#   TEST_PG_DURABLE   1 keeps fsync and full page writes on (default 0: a crash of the machine may lose data)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BASE=${TEST_PG_DIR:-/tmp/nodeops-test-pg}
PGDATA_DIR=$BASE/data
LOG=$BASE/postgres.log
PORT=${TEST_PG_PORT:-54329}
HOST=127.0.0.1
URL="postgresql+psycopg://postgres@$HOST:$PORT/postgres"
URL_FILE=${TEST_PG_URL_FILE:-$ROOT/var/test-pg/url}
START_TIMEOUT=30
SPEED_OPTS="-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
[[ ${TEST_PG_DURABLE:-0} == 1 ]] && SPEED_OPTS=""

export LC_ALL=C.UTF-8 LANG=C.UTF-8

die() { echo "test-postgres: $*" >&2; exit 1; }
log() { echo "test-postgres: $*" >&2; }

# PostgreSQL refuses to run as root: run its tools as the postgres user then.
as_pg() {
    if [[ $(id -u) -eq 0 ]]; then
        (cd / && runuser -u postgres -- "$@")
    else
        "$@"
    fi
}

find_bin() {
    local dir
    dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1 || true)
    [[ -n $dir && -x $dir/pg_ctl ]] || die "no PostgreSQL server binaries under /usr/lib/postgresql/*/bin"
    BIN=$dir
    PG_MAJOR=$(basename "$(dirname "$dir")")
}

is_ready() {
    "$BIN/pg_isready" -q -h "$HOST" -p "$PORT" -U postgres -d postgres -t 2 >/dev/null 2>&1
}

is_running() {
    [[ -f $PGDATA_DIR/postmaster.pid ]] && as_pg "$BIN/pg_ctl" status -D "$PGDATA_DIR" >/dev/null 2>&1
}

print_url() {
    mkdir -p "$(dirname "$URL_FILE")"
    printf '%s\n' "$URL" >"$URL_FILE"
    printf 'export NODEOPS_TEST_PG_URL=%s\n' "$URL"
}

# Serialise concurrent start/stop (e.g. two checkouts running make test at once).
take_lock() {
    exec 9>"$BASE/.lock"
    flock -w 60 9 || die "could not lock $BASE/.lock"
}

init_cluster() {
    if [[ -f $PGDATA_DIR/PG_VERSION ]]; then
        [[ $(<"$PGDATA_DIR/PG_VERSION") == "$PG_MAJOR" ]] && return 0
        log "cluster is from PostgreSQL $(<"$PGDATA_DIR/PG_VERSION"), binaries are $PG_MAJOR: re-creating"
    fi
    rm -rf "$PGDATA_DIR"
    log "initdb in $PGDATA_DIR"
    as_pg "$BIN/initdb" -D "$PGDATA_DIR" --auth=trust -U postgres \
        --encoding=UTF8 --locale=C.UTF-8 >"$BASE/initdb.log" 2>&1 \
        || { cat "$BASE/initdb.log" >&2; die "initdb failed"; }
}

cmd_start() {
    bash "$ROOT/scripts/ensure-apt.sh" postgresql
    find_bin
    mkdir -p "$BASE"
    if [[ $(id -u) -eq 0 ]]; then
        chown postgres:postgres "$BASE"
        as_pg test -w "$BASE" -a -x "$BASE" \
            || die "the postgres user cannot reach $BASE (a parent directory is closed to it): set TEST_PG_DIR elsewhere"
    fi
    take_lock

    if is_running && is_ready; then
        print_url
        return 0
    fi
    if is_ready; then
        die "something else is accepting connections on $HOST:$PORT (not the cluster in $PGDATA_DIR)"
    fi
    if is_running; then
        log "server process exists but does not accept connections; restarting it"
        as_pg "$BIN/pg_ctl" stop -D "$PGDATA_DIR" -m immediate -w -t 10 >/dev/null 2>&1 9>&- || true
    fi

    init_cluster
    log "starting PostgreSQL $PG_MAJOR on $HOST:$PORT (log: $LOG)"
    : >"$LOG"
    [[ $(id -u) -eq 0 ]] && chown postgres:postgres "$LOG"
    # 9>&-: the server must not inherit (and hold) the lock.
    as_pg "$BIN/pg_ctl" start -W -D "$PGDATA_DIR" -l "$LOG" \
        -o "-p $PORT -c listen_addresses=$HOST -k $BASE $SPEED_OPTS -c max_connections=200" \
        >/dev/null 9>&- || { tail -n 30 "$LOG" >&2; die "pg_ctl start failed"; }

    local deadline=$((SECONDS + START_TIMEOUT))
    until is_ready; do
        if ((SECONDS >= deadline)); then
            tail -n 30 "$LOG" >&2
            die "PostgreSQL did not accept connections on $HOST:$PORT within ${START_TIMEOUT}s (log above, full log: $LOG)"
        fi
        if ! is_running && ((SECONDS > deadline - START_TIMEOUT + 2)); then
            tail -n 30 "$LOG" >&2
            die "PostgreSQL exited during startup (log above, full log: $LOG)"
        fi
        sleep 0.2
    done
    print_url
}

cmd_stop() {
    find_bin
    [[ -d $BASE ]] && take_lock
    if is_running; then
        as_pg "$BIN/pg_ctl" stop -D "$PGDATA_DIR" -m fast -w -t 30 >/dev/null
        log "stopped"
    else
        log "not running"
    fi
}

case ${1:-} in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) find_bin; is_running && is_ready ;;
    url) printf '%s\n' "$URL" ;;
    destroy)
        if [[ -d $PGDATA_DIR ]]; then (cmd_stop) || true; fi
        rm -rf "$BASE"
        ;;
    *) echo "usage: $0 start|stop|status|url|destroy" >&2; exit 2 ;;
esac
