#!/usr/bin/env bash
# A local Citus cluster for the tests: a coordinator and two workers (PostgreSQL 15 + the vendored
# Citus 13.2.2), each its own initdb in $CITUS_DIR, run as user postgres on 127.0.0.1.
#
#   .ci/citus-cluster.sh start    # install Citus if needed, start the nodes, create database "test"
#   .ci/citus-cluster.sh stop     # stop the nodes (the data stays until "destroy")
#   .ci/citus-cluster.sh destroy  # stop and delete the data directories
#   .ci/citus-cluster.sh add-worker PORT   # start one more worker (not yet in the cluster)
#
# Then: CARNET_TEST_CITUS_URL=postgresql://postgres@127.0.0.1:5450/test
# Ports: CITUS_PORT (coordinator, default 5450), the workers on the next two ports. CITUS_SHARDS:
# shards per distributed table (default 4, for a fast test suite; Citus itself defaults to 32).
# The vendored build lives in ../shared/vendor/citus (CITUS_VENDOR to point elsewhere).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
DIR=${CITUS_DIR:-/tmp/carnet-citus}
PORT=${CITUS_PORT:-5450}
VENDOR=${CITUS_VENDOR:-$here/../../shared/vendor/citus}
WORKERS=("$((PORT + 1))" "$((PORT + 2))")
as_pg() { if [ "$(id -un)" = postgres ]; then bash -c "$1"; else su postgres -s /bin/bash -c "$1"; fi; }
sql() { PGOPTIONS='-c client_min_messages=warning' psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$1" -U postgres -d "$2" -At -c "$3"; }

init_node() {  # init_node PORT: an initdb'd, started node with the citus extension in "test"
  local p=$1 d=$DIR/n$1
  if [ ! -f "$d/PG_VERSION" ]; then
    as_pg "$BIN/initdb -D '$d' -A trust -U postgres >/dev/null"
    cat >>"$d/postgresql.conf" <<CONF
shared_preload_libraries = 'citus'
listen_addresses = '127.0.0.1'
port = $p
unix_socket_directories = '$DIR'
max_connections = 300
wal_level = logical
max_prepared_transactions = 200
# Few shards per table keeps the schema-per-test suite fast; production keeps Citus's 32 (docs/scale.md).
citus.shard_count = ${CITUS_SHARDS:-4}
# A throw-away test cluster: without fsync a killed process loses nothing (the kernel keeps what
# was written), only a machine crash would. synchronous_commit off answers a commit before its WAL
# leaves shared memory, which a kill -9 of the node loses: the kill -9 tests turn it on
# (CITUS_SYNCHRONOUS_COMMIT=on, tests/integration/test_citus_operations.py).
fsync = off
synchronous_commit = ${CITUS_SYNCHRONOUS_COMMIT:-off}
full_page_writes = off
CONF
  fi
  if ! as_pg "$BIN/pg_ctl -D '$d' status" >/dev/null 2>&1; then
    as_pg "$BIN/pg_ctl -D '$d' -l '$DIR/n$p.log' -w -t 60 start" >/dev/null
  fi
  if [ "$(sql "$p" postgres "SELECT 1 FROM pg_database WHERE datname = 'test'")" != 1 ]; then
    sql "$p" postgres "CREATE DATABASE test"
  fi
  sql "$p" test "CREATE EXTENSION IF NOT EXISTS citus"
}

case "${1:-start}" in
  start)
    [ -f "$("$BIN/pg_config" --pkglibdir 2>/dev/null || echo /usr/lib/postgresql/15/lib)/citus.so" ] \
      || bash "$VENDOR/install.sh"
    mkdir -p "$DIR" && chown postgres "$DIR"
    for p in "$PORT" "${WORKERS[@]}"; do init_node "$p"; done
    sql "$PORT" test "SELECT citus_set_coordinator_host('127.0.0.1', $PORT)" >/dev/null
    for p in "${WORKERS[@]}"; do
      sql "$PORT" test "SELECT citus_add_node('127.0.0.1', $p)" >/dev/null
    done
    echo "citus: coordinator 127.0.0.1:$PORT, workers ${WORKERS[*]} (database test, data in $DIR)"
    ;;
  add-worker)
    init_node "$2"
    ;;
  stop)
    for d in "$DIR"/n*; do
      [ -f "$d/PG_VERSION" ] && as_pg "$BIN/pg_ctl -D '$d' -m fast stop" >/dev/null 2>&1 || true
    done
    ;;
  destroy)
    "$0" stop
    rm -rf "$DIR"
    ;;
  *) echo "usage: $0 start|stop|destroy|add-worker PORT" >&2; exit 2 ;;
esac
