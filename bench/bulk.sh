#!/usr/bin/env bash
# Bulk link creation (POST /links/bulk, 1,000 links per request) on SQLite and PostgreSQL,
# beside single creates (POST /shorten) in the same run as the anchor.
#   bench/bulk.sh            (BENCH_POSTGRES_URL: a server where a scratch database may be made;
#                             default postgres://postgres@127.0.0.1:5432/postgres)
#   BULK_CLIENTS=4 WRK_DURATION=10s bench/bulk.sh
# Prints requests/s; links/s is requests/s × 1,000 for the bulk rows.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
RESULTS=${RESULTS:-$BENCH_DIR/tmp/bulk.txt}
mkdir -p "$BENCH_DIR/tmp"; : >"$RESULTS"
ensure_tools
build_basis
PG_ADMIN=${BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}
BULK_CLIENTS=${BULK_CLIENTS:-4}

body=$BENCH_DIR/tmp/bulk-body.json
python3 - "$body" <<'PY'
import json, sys
items = [{"longUrl": f"https://example.com/articles/2026/12/{i}/a-title-of-some-length"} for i in range(1000)]
open(sys.argv[1], "w").write(json.dumps(items))
PY

token() { # token: signs up a bench user and prints an access token
  local base="http://127.0.0.1:$BASIS_PORT"
  curl -fs "$base/users" -H 'content-type: application/json' \
    -d '{"email":"bench@example.com","password":"velvet otter juggles nine lanterns","name":"Bench"}' >/dev/null
  curl -fs "$base/auth/login" -H 'content-type: application/json' \
    -d '{"email":"bench@example.com","password":"velvet otter juggles nine lanterns"}' | jq -r .accessToken
}

lua_for() { # lua_for <token>: a wrk script posting the 1,000-link body
  local script=$BENCH_DIR/tmp/bulk.lua
  cat >"$script" <<LUA
local f = io.open("$body", "r")
local body = f:read("*a")
f:close()
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $1"
wrk.body = body
request = function() return wrk.format(nil, "/links/bulk") end
LUA
  echo "$script"
}

single=$BENCH_DIR/tmp/single.lua
cat >"$single" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local n = 0
request = function()
  n = n + 1
  return wrk.format(nil, "/shorten", nil, '{"longUrl":"https://example.com/articles/2026/12/' .. n .. '/a-title-of-some-length"}')
end
LUA

run_engine() { # run_engine <label> <data dir> [serve flags…]
  local label=$1 dir=$2; shift 2
  start_basis "$dir" "$@"
  local script; script=$(lua_for "$(token)")
  WRK_CONNECTIONS=$BULK_CLIENTS run_wrk "bulk x1000, $label" "http://127.0.0.1:$BASIS_PORT" "$script"
  echo "links/s, bulk, $label: $(awk -v r="$WRK_RPS" 'BEGIN{printf "%.0f", r*1000}')" | tee -a "$RESULTS"
  run_wrk "single creates, $label" "http://127.0.0.1:$BASIS_PORT" "$single"
  stop_basis
}

echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); bulk: wrk -t$WRK_THREADS -c$BULK_CLIENTS -d$WRK_DURATION; single: -c$WRK_CONNECTIONS" | tee -a "$RESULTS"
DATA=$(mktemp -d)
run_engine sqlite "$DATA/sqlite"
db=basis_bench_$$
psql "$PG_ADMIN" -qc "CREATE DATABASE $db"
run_engine postgres "$DATA/pg" --database-url "${PG_ADMIN%/*}/$db"
psql "$PG_ADMIN" -qc "DROP DATABASE $db"
rm -rf "$DATA"
