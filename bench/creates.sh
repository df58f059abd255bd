#!/usr/bin/env bash
# Link creation throughput with 64 concurrent clients, on SQLite and on PostgreSQL.
#   bench/creates.sh     (BENCH_POSTGRES_URL: a server where a scratch database may be made;
#                         default postgres://postgres@127.0.0.1:5432/postgres)
set -euo pipefail
. "$(dirname "$0")/lib.sh"
RESULTS=${RESULTS:-$BENCH_DIR/tmp/creates.txt}
mkdir -p "$BENCH_DIR/tmp"; : >"$RESULTS"
ensure_tools
build_basis
PG_ADMIN=${BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}

script=$BENCH_DIR/tmp/create.lua
cat >"$script" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local n = 0
request = function()
  n = n + 1
  return wrk.format(nil, "/shorten", nil, '{"longUrl":"https://example.com/articles/2026/11/' .. n .. '/a-title"}')
end
LUA

echo "machine: $(nproc) cores; wrk -t$WRK_THREADS -c$WRK_CONNECTIONS -d$WRK_DURATION, POST /shorten" | tee -a "$RESULTS"
DATA=$(mktemp -d)
start_basis "$DATA/sqlite"
run_wrk "creates, sqlite" "http://127.0.0.1:$BASIS_PORT" "$script"
echo "links stored: $(sqlite3 "$DATA/sqlite/basis.db" 'select count(*) from links' 2>/dev/null || echo '?')" | tee -a "$RESULTS"
stop_basis

db=basis_bench_$$
psql "$PG_ADMIN" -qc "CREATE DATABASE $db"
pg_url=${PG_ADMIN%/*}/$db
start_basis "$DATA/pg" --database-url "$pg_url"
run_wrk "creates, postgres" "http://127.0.0.1:$BASIS_PORT" "$script"
echo "links stored: $(psql "$pg_url" -Atc 'select count(*) from links')" | tee -a "$RESULTS"
stop_basis
psql "$PG_ADMIN" -qc "DROP DATABASE $db"
rm -rf "$DATA"
