#!/usr/bin/env bash
# A nodeops cluster on this machine, on 127.0.0.1 only: a private PostgreSQL and Redis, `nodeops serve` and
# `nodeops worker`s with NODEOPS_EXECUTOR=celery. Everything lives in var/cluster; the database, the secret key
# and the data dir are kept from one run to the next.
# Usage: scripts/cluster.sh [run|stop]    (make cluster)
#   run   start everything, print how to reach it, and stay in the foreground: Ctrl-C (INT) or TERM stops the
#         workers and the API (each finishes what it runs, up to CLUSTER_STOP_TIMEOUT_S, default 60), then Redis
#         and PostgreSQL; a second Ctrl-C kills what is left at once. If one of the processes exits, so does
#         the cluster, showing the end of its log.
#   stop  stop what a run killed without its cleanup left behind (its processes, Redis, PostgreSQL)
# Environment: CLUSTER_WORKERS (default 2) worker processes, named worker-1, worker-2, ...
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BASE=$ROOT/var/cluster
LOGS=$BASE/logs
RUN=$BASE/run
NODEOPS=$ROOT/.venv/bin/nodeops
HOST=127.0.0.1
API_PORT=8000
PG_PORT=54339
REDIS_PORT=63809
WORKERS=${CLUSTER_WORKERS:-2}
START_TIMEOUT_S=60
STOP_TIMEOUT_S=${CLUSTER_STOP_TIMEOUT_S:-60}

# scripts/test-postgres.sh and scripts/test-redis.sh run the cluster's own servers with these
export TEST_PG_DIR=$BASE/pg TEST_PG_PORT=$PG_PORT TEST_PG_URL_FILE=$BASE/pg/url TEST_PG_DURABLE=1
export TEST_REDIS_DIR=$BASE/redis TEST_REDIS_PORT=$REDIS_PORT

die() { echo "cluster: $*" >&2; exit 1; }
log() { echo "cluster: $*" >&2; }

listens() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

# A pid file's process, if it still runs and is a nodeops command (a pid may have been reused since).
live_pid() {
    local pid
    pid=$(cat "$1" 2>/dev/null) || return 1
    [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q nodeops \
        && printf '%s\n' "$pid"
}

# TERM every process of the run, wait until they end (a second INT kills them), then stop Redis and PostgreSQL.
stop_all() {
    trap '' TERM
    trap 'FORCE=1' INT
    FORCE=0
    local file pid pids=()
    for file in "$RUN"/*.pid; do
        [[ -e $file ]] || continue
        if pid=$(live_pid "$file"); then
            pids+=("$pid")
            kill -TERM "$pid" 2>/dev/null || true
        fi
    done
    if ((${#pids[@]})); then
        log "stopping the API and the workers (they finish what they run; Ctrl-C again to kill them)"
    fi
    local deadline=$((SECONDS + STOP_TIMEOUT_S))
    for pid in "${pids[@]}"; do
        while kill -0 "$pid" 2>/dev/null; do
            if ((FORCE || SECONDS >= deadline)); then
                log "killing what is left"
                local group
                for group in "${pids[@]}"; do kill -KILL -- "-$group" 2>/dev/null || true; done
                break 2
            fi
            sleep 0.2
        done
    done
    rm -f "$RUN"/*.pid
    bash "$ROOT/scripts/test-redis.sh" stop
    if [[ -d $TEST_PG_DIR/data ]]; then bash "$ROOT/scripts/test-postgres.sh" stop; fi
}

# Start a command in a session of its own (the terminal's Ctrl-C reaches only this script, which stops things in
# order), its output in logs/<name>.log and its pid in run/<name>.pid.
launch() {
    local name=$1
    shift
    setsid "$@" >"$LOGS/$name.log" 2>&1 8>&- &
    echo $! >"$RUN/$name.pid"
    NAMES[$!]=$name
}

show_log_end() {
    log "last lines of $LOGS/$1.log:"
    tail -n 20 "$LOGS/$1.log" >&2 || true
}

secret_key() {
    local file=$BASE/secret_key
    if [[ ! -s $file ]]; then
        (umask 077 && "$ROOT/.venv/bin/python" -c 'import secrets; print(secrets.token_urlsafe(48))' >"$file")
    fi
    cat "$file"
}

cmd_run() {
    [[ -x $NODEOPS ]] || die "$NODEOPS is missing: run \`make venv\` (or \`make cluster\`, which does)"
    [[ $WORKERS =~ ^[0-9]+$ ]] || die "CLUSTER_WORKERS must be a number, not '$WORKERS'"
    mkdir -p "$BASE" "$LOGS" "$RUN"
    exec 8>"$BASE/.lock"
    flock -n 8 || die "a cluster already runs from $BASE (stop it with Ctrl-C in its terminal)"
    listens "$API_PORT" && die "something already listens on $HOST:$API_PORT, where the cluster's API would"

    trap 'stop_all; exit 130' INT
    trap 'stop_all; exit 143' TERM
    bash "$ROOT/scripts/ensure-apt.sh" postgresql redis-server
    setsid -w bash "$ROOT/scripts/test-postgres.sh" start >/dev/null 8>&-
    setsid -w bash "$ROOT/scripts/test-redis.sh" start >/dev/null 8>&-

    export NODEOPS_EXECUTOR=celery
    NODEOPS_DATABASE_URL=$(<"$TEST_PG_DIR/url")
    NODEOPS_BROKER_URL=$(<"$TEST_REDIS_DIR/url")
    NODEOPS_SECRET_KEY=$(secret_key)
    export NODEOPS_DATABASE_URL NODEOPS_BROKER_URL NODEOPS_SECRET_KEY
    export NODEOPS_PUBLIC_URL=http://$HOST:$API_PORT
    export NODEOPS_DATA_DIR=$BASE/data
    export NODEOPS_HOST=$HOST NODEOPS_PORT=$API_PORT
    # the same settings, for `set -a; . var/cluster/env; set +a` in another shell (it holds the secret key)
    (
        umask 077
        for name in NODEOPS_EXECUTOR NODEOPS_DATABASE_URL NODEOPS_BROKER_URL NODEOPS_SECRET_KEY NODEOPS_PUBLIC_URL \
            NODEOPS_DATA_DIR; do
            printf '%s=%s\n' "$name" "${!name}"
        done >"$BASE/env"
    )

    "$NODEOPS" db upgrade 8>&- || die "nodeops db upgrade failed (output above)"

    declare -gA NAMES=()
    launch serve "$NODEOPS" serve
    local i
    for ((i = 1; i <= WORKERS; i++)); do
        launch "worker-$i" "$NODEOPS" worker --name "worker-$i"
    done

    local deadline=$((SECONDS + START_TIMEOUT_S))
    until listens "$API_PORT"; do
        if ! kill -0 "$(<"$RUN/serve.pid")" 2>/dev/null; then
            show_log_end serve
            log "nodeops serve exited while starting"
            stop_all
            exit 1
        fi
        if ((SECONDS >= deadline)); then
            show_log_end serve
            log "nodeops serve did not listen on $HOST:$API_PORT within ${START_TIMEOUT_S}s"
            stop_all
            exit 1
        fi
        sleep 0.2
    done

    local api=http://$HOST:$API_PORT rel=${BASE#"$ROOT"/}
    cat <<EOF

nodeops cluster on this machine (127.0.0.1 only); Ctrl-C stops it all
  API         $api   (docs: $api/docs)
  workers     $WORKERS$(for ((i = 1; i <= WORKERS; i++)); do printf '%s worker-%s' "$([[ $i == 1 ]] && echo : || echo ,)" "$i"; done)
  PostgreSQL  $NODEOPS_DATABASE_URL   (data: $rel/pg)
  Redis       $NODEOPS_BROKER_URL
  logs        $rel/logs/serve.log$(for ((i = 1; i <= WORKERS; i++)); do printf ', worker-%s.log' "$i"; done)
  settings    $rel/env (mode 0600, it holds the secret key)

In another shell, from $ROOT:
  set -a; . $rel/env; set +a
  .venv/bin/nodeops app add my-system --allow-username   # prints the app's secret once
  .venv/bin/nodeops user add alice --superuser
  .venv/bin/nodeops token issue alice                    # a bk_token, for the viewer and the API
  export NODEOPS_URL=$api NODEOPS_APP_CODE=my-system NODEOPS_APP_SECRET=<the secret> NODEOPS_USERNAME=alice
  .venv/bin/nodeops job list
  .venv/bin/nodeops job install --host HOST --biz 2 --account root --key-file KEY_FILE --follow
(over SSH: in celery mode a --local host is refused, it would run on whichever worker took it)

EOF

    # Stay until Ctrl-C, or until one of the processes exits.
    local exited status
    while true; do
        status=0
        unset exited
        wait -n -p exited "${!NAMES[@]}" || status=$?
        [[ -n ${exited:-} ]] || continue
        log "${NAMES[$exited]} exited (status $status)"
        show_log_end "${NAMES[$exited]}"
        stop_all
        exit 1
    done
}

case ${1:-run} in
    run) cmd_run ;;
    stop) stop_all ;;
    *) echo "usage: $0 [run|stop]" >&2; exit 2 ;;
esac
