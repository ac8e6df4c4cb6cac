#!/usr/bin/env bash
# The embedded default services of one quarry checkout: a private PostgreSQL
# cluster and a Redis server, reachable only through unix sockets in a state
# folder ($QUARRY_HOME), so several checkouts never clash over ports.
#
#   QUARRY_HOME=DIR scripts/services.sh up|down|status|env
#                                      |start-pg|stop-pg|start-redis|stop-redis
#
# `up` writes DIR/urls (DATABASE_URL=..., REDIS_URL=...), which quarry reads.
# As root, the servers run as an unprivileged user (initdb refuses root).
# QUARRY_SERVICES_FAST=1 turns off fsync: for throwaway test clusters only.
set -euo pipefail

home=${QUARRY_HOME:?QUARRY_HOME must name the state folder}
# The private cluster is addressed explicitly below; a caller's PG* settings
# (even empty ones) must not leak into initdb, postgres or psql.
unset PGHOST PGPORT PGDATABASE PGUSER PGSERVICE PGOPTIONS PGPASSWORD PGDATA
mkdir -p "$home"
home=$(cd "$home" && pwd)

pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[ -x "$pgbin/initdb" ] || { echo "services: PostgreSQL server binaries not found (install postgresql)" >&2; exit 3; }
command -v redis-server >/dev/null || { echo "services: redis-server not found (install redis-server)" >&2; exit 3; }

svc_user=""
if [ "$(id -u)" = 0 ]; then
    if id postgres >/dev/null 2>&1; then svc_user=postgres; else svc_user=nobody; fi
fi
as_svc() { if [ -n "$svc_user" ]; then runuser -u "$svc_user" -- "$@"; else "$@"; fi; }

# Unix socket paths are limited to 107 bytes: a deep checkout gets its
# sockets in /tmp, named after the state folder; so does a state folder the
# service user cannot reach (root's ~/.local/state behind a private /root).
run="$home/run"
if [ $(( ${#run} + 20 )) -gt 100 ] || ! as_svc test -x "$home"; then
    run="/tmp/quarry-$(printf '%s' "$home" | md5sum | cut -c1-12)"
fi

# The data must live where the service user can write: the state folder when
# it can reach it, otherwise a folder of its own under /var/tmp.
data="$home/data"
prepare_dirs() {
    mkdir -p "$data" "$run"
    if [ -n "$svc_user" ]; then
        chown "$svc_user" "$data" "$run"
        if ! as_svc test -w "$data"; then
            data="/var/tmp/quarry-$(printf '%s' "$home" | md5sum | cut -c1-12)"
            mkdir -p "$data" && chown "$svc_user" "$data"
        fi
    fi
    chmod 700 "$run" "$data" 2>/dev/null || true
    mkdir -p "$data/log"
    [ -z "$svc_user" ] || chown "$svc_user" "$data/log"
}
data_dir() { # where prepare_dirs put it last time
    if [ -f "$home/data-dir" ]; then cat "$home/data-dir"; else echo "$home/data"; fi
}

pg_running() { [ -f "$data/pg/PG_VERSION" ] && as_svc "$pgbin/pg_ctl" -D "$data/pg" status >/dev/null 2>&1; }
redis_sock="$run/redis.sock"
redis_running() { [ -S "$redis_sock" ] && redis-cli -s "$redis_sock" ping 2>/dev/null | grep -q PONG; }

# Roles: the bootstrap superuser is "postgres" and only this script uses it.
# quarry connects as "quarry", which owns its database but is no superuser,
# and runs report plugins as "quarry_reader" (SELECT only, granted by
# `quarry db migrate`). set_config() is kept from PUBLIC in every database
# made from template1, so a plugin cannot switch itself back to another role,
# and so are the advisory-locking functions, so a plugin cannot hold a lock
# quarry's writers wait for (schema.lua, migration 16).
ROLES_SQL="SET client_min_messages = warning;
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'quarry') THEN
    CREATE ROLE quarry LOGIN CREATEDB;
  END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'quarry_reader') THEN
    CREATE ROLE quarry_reader NOLOGIN;
  END IF;
END \$\$;
GRANT quarry_reader TO quarry;"
HARDEN_SQL="
REVOKE EXECUTE ON FUNCTION pg_catalog.set_config(text, text, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pg_catalog.set_config(text, text, boolean) TO quarry;
DO \$\$ DECLARE f regprocedure; BEGIN
  FOR f IN SELECT p.oid::regprocedure FROM pg_proc p WHERE p.pronamespace = 'pg_catalog'::regnamespace
             AND p.proname ~ '^pg_(try_)?advisory_(xact_)?lock' LOOP
    EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC', f);
    EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO quarry', f);
  END LOOP;
END \$\$;"

start_pg() {
    if [ ! -f "$data/pg/PG_VERSION" ]; then
        as_svc "$pgbin/initdb" -D "$data/pg" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 \
            --no-instructions >"$data/log/initdb.log" 2>&1 ||
            { echo "services: initdb failed, see $data/log/initdb.log" >&2; exit 3; }
        {
            echo "listen_addresses = ''"
            echo "port = 5432"
            echo "max_connections = 200"
            echo "shared_buffers = 256MB"
            echo "work_mem = 32MB"
            echo "maintenance_work_mem = 256MB"
            echo "log_min_messages = warning"
            if [ "${QUARRY_SERVICES_FAST:-0}" = 1 ]; then
                echo "fsync = off"; echo "synchronous_commit = off"; echo "full_page_writes = off"
            fi
        } >>"$data/pg/postgresql.conf"
    fi
    pg_running && return 0
    # pg_ctl hands -o to /bin/sh: the socket folder quoted for it, so a
    # QUARRY_HOME with a space or a quote in it starts like any other
    local run_sh
    run_sh="'$(printf '%s' "$run" | sed "s/'/'\\\\''/g")'"
    as_svc "$pgbin/pg_ctl" -D "$data/pg" -w -t 60 -l "$data/log/postgresql.log" \
        -o "-k $run_sh" start >/dev/null ||
        { echo "services: PostgreSQL did not start, see $data/log/postgresql.log" >&2; exit 3; }
    local su=postgres
    if ! "$pgbin/psql" -h "$run" -U postgres -d postgres -tAc "SELECT 1" >/dev/null 2>&1; then
        su=quarry # a cluster made before the roles were split: quarry is its superuser
        echo "services: this cluster ($data/pg) predates quarry's non-superuser role; remove it" \
             "(quarry services down, then delete $data/pg) to get plugins run without superuser rights" >&2
    fi
    if [ "$su" = postgres ]; then # at every start: a cluster made before a hardening gains it
        "$pgbin/psql" -h "$run" -U postgres -d postgres -qtA -v ON_ERROR_STOP=1 -c "$ROLES_SQL" >/dev/null
        "$pgbin/psql" -h "$run" -U postgres -d template1 -qtA -v ON_ERROR_STOP=1 -c "$HARDEN_SQL" >/dev/null
    fi
    if ! "$pgbin/psql" -h "$run" -U "$su" -d postgres -tAc \
        "SELECT 1 FROM pg_database WHERE datname = 'quarry'" | grep -q 1; then
        "$pgbin/createdb" -h "$run" -U "$su" -O quarry quarry
    elif [ "$su" = postgres ]; then
        "$pgbin/psql" -h "$run" -U postgres -d quarry -qtA -v ON_ERROR_STOP=1 -c "$HARDEN_SQL" >/dev/null
    fi
}

stop_pg() {
    pg_running || return 0
    as_svc "$pgbin/pg_ctl" -D "$data/pg" -w -m fast stop >/dev/null
}

start_redis() {
    redis_running && return 0
    rm -f "$redis_sock"
    mkdir -p "$data/redis" && { [ -z "$svc_user" ] || chown "$svc_user" "$data/redis"; }
    as_svc redis-server --port 0 --unixsocket "$redis_sock" --unixsocketperm 770 \
        --dir "$data/redis" --daemonize yes --pidfile "$data/redis/redis.pid" \
        --logfile "$data/log/redis.log" --save "" --appendonly no >/dev/null
    for _ in $(seq 1 100); do redis_running && return 0; sleep 0.05; done
    echo "services: Redis did not start, see $data/log/redis.log" >&2
    exit 3
}

stop_redis() {
    redis_running || return 0
    redis-cli -s "$redis_sock" shutdown nosave >/dev/null 2>&1 || true
    for _ in $(seq 1 100); do [ -S "$redis_sock" ] || return 0; redis_running || return 0; sleep 0.05; done
}

write_urls() {
    printf 'DATABASE_URL=postgresql://quarry@/quarry?host=%s\nREDIS_URL=unix://%s\n' \
        "$run" "$redis_sock" >"$home/urls.tmp"
    mv "$home/urls.tmp" "$home/urls"
}

cmd=${1:-status}
case "$cmd" in
    up)
        prepare_dirs
        echo "$data" >"$home/data-dir"
        start_pg
        start_redis
        write_urls
        ;;
    down)
        data=$(data_dir)
        stop_redis
        stop_pg
        ;;
    status)
        data=$(data_dir)
        rc=0
        if pg_running; then echo "postgresql: running (socket in $run, data in $data/pg)"; else echo "postgresql: stopped"; rc=3; fi
        if redis_running; then echo "redis: running (socket $redis_sock)"; else echo "redis: stopped"; rc=3; fi
        exit $rc
        ;;
    env)
        [ -f "$home/urls" ] && cat "$home/urls"
        ;;
    start-pg) data=$(data_dir); start_pg ;;
    stop-pg) data=$(data_dir); stop_pg ;;
    start-redis) data=$(data_dir); start_redis ;;
    stop-redis) data=$(data_dir); stop_redis ;;
    *)
        echo "usage: services.sh up|down|status|env|start-pg|stop-pg|start-redis|stop-redis" >&2
        exit 2
        ;;
esac
