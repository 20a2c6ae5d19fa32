#!/usr/bin/env bash
# A private, throwaway PostgreSQL 15 cluster for tests and local experiments. Installs
# nothing (scripts/deps.sh lists postgresql-15); needs a directory the caller made.
#
# Usage: scripts/pg.sh start DIR   initdb into DIR/data (owned by the postgres user when run
#                                  as root: initdb refuses root), start the server on a free
#                                  port of 127.0.0.1 with its unix socket in DIR/sock, wait
#                                  until it accepts connections, and print
#                                  `port=PORT pid=PID url=CONNINFO` (also in DIR/port, DIR/pid,
#                                  DIR/url). The server's log is DIR/log. Started again
#                                  on the same DIR, it keeps its data and its port.
#        scripts/pg.sh stop DIR    stop the server started in DIR by its pid (fast shutdown,
#                                  then immediate after 20 s) and wait until it is gone.
#        scripts/pg.sh standby DIR PRIMARY_DIR
#                                  a streaming-replication standby of the server started in
#                                  PRIMARY_DIR: pg_basebackup (-R: it follows the primary) into
#                                  DIR/data (a fast checkpoint), then started as `start` does (read-only until
#                                  promoted). For failover tests.
#        scripts/pg.sh promote DIR the standby in DIR becomes a primary (pg_ctl promote, waits).
# fsync is off: the cluster is for tests and is deleted with DIR.
set -euo pipefail

usage() { echo "usage: scripts/pg.sh start|stop|promote DIR, or standby DIR PRIMARY_DIR" >&2; exit 2; }
[ $# -ge 2 ] || usage
cmd=$1
dir=$(cd "$2" && pwd) || { echo "pg.sh: $2: no such directory" >&2; exit 2; }
primary=""
if [ "$cmd" = standby ]; then
    [ $# -eq 3 ] || usage
    primary=$(cd "$3" && pwd) || { echo "pg.sh: $3: no such directory" >&2; exit 2; }
else
    [ $# -eq 2 ] || usage
fi

bin=""
for d in /usr/lib/postgresql/15/bin /usr/lib/postgresql/*/bin; do
    if [ -x "$d/initdb" ]; then bin=$d; break; fi
done

# Commands run as the cluster's owner: postgres when we are root, else ourselves.
as_owner() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start() {
    [ -n "$bin" ] || { echo "pg.sh: no PostgreSQL server binaries (apt-get install postgresql-15)" >&2; exit 1; }
    if [ -f "$dir/pid" ] && kill -0 "$(cat "$dir/pid")" 2>/dev/null; then
        echo "pg.sh: a server from $dir is already running (pid $(cat "$dir/pid"))" >&2
        exit 1
    fi
    mkdir -p "$dir/sock"
    if [ "$(id -u)" = 0 ]; then
        chown postgres: "$dir" "$dir/sock"
        chmod 0755 "$dir" # the server reads DIR/data and writes DIR/log as postgres
    fi
    if [ ! -f "$dir/data/PG_VERSION" ]; then
        as_owner "$bin/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 \
            --no-sync >"$dir/initdb.log" 2>&1 ||
            { cat "$dir/initdb.log" >&2; echo "pg.sh: initdb failed" >&2; exit 1; }
    fi
    # A restart keeps the cluster's port (clients reconnect to the same URL); a port found
    # free can be taken before the server binds it: try a few.
    local port="" ok=0 try
    for try in 1 2 3 4 5; do
        if [ $try = 1 ] && [ -f "$dir/port" ]; then port=$(cat "$dir/port"); else port=$(free_port); fi
        if as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w -t 60 -s start \
            -o "-p $port -k $dir/sock -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off" \
            >/dev/null 2>&1; then
            ok=1
            break
        fi
    done
    [ $ok = 1 ] || { tail -n 20 "$dir/log" >&2; echo "pg.sh: the server did not start" >&2; exit 1; }
    local pid
    pid=$(head -n 1 "$dir/data/postmaster.pid")
    echo "$port" >"$dir/port"
    echo "$pid" >"$dir/pid"
    local url="host=127.0.0.1 port=$port user=postgres dbname=postgres"
    echo "$url" >"$dir/url"
    echo "port=$port pid=$pid url=$url"
}

stop() {
    [ -f "$dir/pid" ] || { echo "pg.sh: no server was started in $dir" >&2; exit 1; }
    local pid
    pid=$(cat "$dir/pid")
    # Only the postmaster that this directory's cluster wrote: never a recycled pid.
    if ! kill -0 "$pid" 2>/dev/null || [ "$(head -n 1 "$dir/data/postmaster.pid" 2>/dev/null)" != "$pid" ]; then
        rm -f "$dir/pid"
        echo "pg.sh: server $pid already stopped"
        return 0
    fi
    kill -INT "$pid" # fast shutdown: roll back open transactions, disconnect, stop
    for _ in $(seq 1 200); do
        kill -0 "$pid" 2>/dev/null || { rm -f "$dir/pid"; echo "pg.sh: stopped $pid"; return 0; }
        sleep 0.1
    done
    kill -QUIT "$pid" 2>/dev/null || true # immediate shutdown
    for _ in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || { rm -f "$dir/pid"; echo "pg.sh: stopped $pid (immediate)"; return 0; }
        sleep 0.1
    done
    echo "pg.sh: server $pid did not stop" >&2
    exit 1
}

standby() {
    [ -n "$bin" ] || { echo "pg.sh: no PostgreSQL server binaries (apt-get install postgresql-15)" >&2; exit 1; }
    [ -f "$primary/port" ] || { echo "pg.sh: no server was started in $primary" >&2; exit 1; }
    [ ! -e "$dir/data" ] || { echo "pg.sh: $dir/data exists already" >&2; exit 1; }
    if [ "$(id -u)" = 0 ]; then
        chown postgres: "$dir"
        chmod 0755 "$dir"
    fi
    as_owner "$bin/pg_basebackup" -h 127.0.0.1 -p "$(cat "$primary/port")" -U postgres \
        -D "$dir/data" -R -X stream -c fast --no-sync >"$dir/basebackup.log" 2>&1 ||
        { cat "$dir/basebackup.log" >&2; echo "pg.sh: pg_basebackup failed" >&2; exit 1; }
    rm -f "$dir/data/postmaster.pid" "$dir/port"
    start
}

promote() {
    [ -f "$dir/pid" ] || { echo "pg.sh: no server was started in $dir" >&2; exit 1; }
    as_owner "$bin/pg_ctl" -D "$dir/data" -w -t 60 promote >/dev/null ||
        { tail -n 20 "$dir/log" >&2; echo "pg.sh: promote failed" >&2; exit 1; }
    echo "pg.sh: promoted $(cat "$dir/pid")"
}

case "$cmd" in
start) start ;;
stop) stop ;;
standby) standby ;;
promote) promote ;;
*) usage ;;
esac
