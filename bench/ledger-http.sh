#!/usr/bin/env bash
# POST /transfers per second through `basis serve` (HTTP, bearer token, Idempotency-Key on
# every request, projections running through the queue), beside pgbench TPC-B on the same
# PostgreSQL in the same run.
#
#   bench/ledger-http.sh                  # 64 connections, 10,000 accounts, 10 s per run
#   ACCOUNTS=1000 WRK_DURATION=5s bench/ledger-http.sh
#
# Per engine: an admin account is made (`basis admin create-user`), $ACCOUNTS accounts are
# opened and funded for it through the library (ledger_bench setup; outside the measured
# window), `basis ledger rebuild` projects them from cold (events/s), then `basis serve`
# takes wrk's load: spread (two random accounts) and hot (every transfer into one account).
# After each load, how long the read models take to catch up (X-Projection-Lag back to 0).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
RESULTS=${RESULTS:-$BENCH_DIR/tmp/ledger-http.txt}
mkdir -p "$BENCH_DIR/tmp"; : >"$RESULTS"
ACCOUNTS=${ACCOUNTS:-10000}
WRK_DURATION=${WRK_DURATION:-10s}
PGBENCH_SCALES=${PGBENCH_SCALES:-1 64}
PG_ADMIN=${BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}
PASSWORD="ledger bench password, long enough"
ensure_tools
SETUP=$TARGET_DIR/release/examples/ledger_bench
if [ -z "${SKIP_BUILD:-}" ]; then
  build_basis
  (cd "$ROOT" && cargo build --release -q -p basis-ledger --example ledger_bench)
else # a dry run of the script itself, on binaries built elsewhere (numbers not comparable)
  BASIS=${BASIS_BIN:-$BASIS}; SETUP=${LEDGER_BENCH_BIN:-$SETUP}
fi
DATA=$(mktemp -d)
DBS=()
drop_dbs() { for db in "${DBS[@]}"; do psql -q "$PG_ADMIN" -c "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1 || true; done; rm -rf "$DATA"; }
trap 'cleanup; drop_dbs' EXIT
fresh_db() { local name="basis_bench_$1_$$"; psql -q "$PG_ADMIN" -c "CREATE DATABASE $name" >/dev/null; DBS+=("$name"); echo "${PG_ADMIN%/*}/$name"; }
seconds() { date +%s.%N; }

echo "# $(date -u +%FT%TZ) commit $(git -C "$ROOT" rev-parse --short HEAD), load $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$RESULTS"
echo "# wrk -t$WRK_THREADS -c$WRK_CONNECTIONS -d$WRK_DURATION; accounts=$ACCOUNTS" | tee -a "$RESULTS"

declare -A PGB_TPS
for scale in $PGBENCH_SCALES; do
  url=$(fresh_db "pgbench_s$scale")
  pgbench -q -i -s "$scale" "$url" >/dev/null 2>&1
  out=$(pgbench -c "$WRK_CONNECTIONS" -j 2 -T "${WRK_DURATION%s}" "$url" 2>&1)
  PGB_TPS[$scale]=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' <<<"$out" | head -1)
  echo "pgbench tpcb scale=$scale clients=$WRK_CONNECTIONS tps=${PGB_TPS[$scale]}" | tee -a "$RESULTS"
done

# The load script: one transfer of 1 minor unit per request, a fresh key each.
lua() { # lua <spread|hot> <token> <ids…>
  local mode=$1 token=$2; shift 2
  cat <<LUA
local ids = { $(echo "$@" | tr ' ' ',') }
local hot = "$mode" == "hot"
local prefix = "$mode-" .. os.time() .. "-"
local n = 0
local headers = { ["Content-Type"] = "application/json", ["Authorization"] = "Bearer $token" }
request = function()
  n = n + 1
  local to = hot and ids[1] or ids[math.random(#ids)]
  local from = ids[math.random(#ids)]
  while from == to do from = ids[math.random(#ids)] end
  headers["Idempotency-Key"] = prefix .. n
  return wrk.format("POST", "/transfers", headers,
    '{"from":' .. from .. ',"to":' .. to .. ',"amount":1,"currency":"USD"}')
end
LUA
}

# caught_up <account> <token>: seconds until the account's read is no longer behind.
caught_up() {
  local t0 lag
  t0=$(seconds)
  for _ in $(seq 1 6000); do
    lag=$(curl -fsS -D - -o /dev/null -H "authorization: Bearer $2" \
      "http://127.0.0.1:$BASIS_PORT/accounts/$1" | tr -d '\r' | awk -F': ' 'tolower($1)=="x-projection-lag" {print $2}')
    [ "${lag:-1}" = "0" ] && break
    sleep 0.05
  done
  awk -v a="$t0" -v b="$(seconds)" 'BEGIN { printf "%.2f", b - a }'
}

run_engine() { # run_engine <sqlite|postgres>
  local engine=$1 dir=$DATA/$1 url flags=() uid ids token events t0 t1
  mkdir -p "$dir"
  if [ "$engine" = postgres ]; then url=$(fresh_db ledger_http); flags=(--database-url "$url"); else url="sqlite://$dir/basis.db"; fi
  uid=$(echo "$PASSWORD" | RUST_LOG=warn "$BASIS" admin create-user --email bench@example.com --role admin --data-dir "$dir" "${flags[@]}")
  t0=$(seconds)
  ids=$("$SETUP" "$url" setup "$uid" 64 "$ACCOUNTS")
  t1=$(seconds)
  RUST_LOG=warn "$BASIS" ledger rebuild --data-dir "$dir" "${flags[@]}" >/dev/null 2>&1
  local t2; t2=$(seconds)
  if [ "$engine" = postgres ]; then events=$(psql -Atc 'SELECT count(*) FROM ledger_events' "$url"); else events=$(sqlite3 "$dir/basis.db" 'SELECT count(*) FROM ledger_events'); fi
  echo "$engine setup: $ACCOUNTS accounts in $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}') s; cold projection (ledger rebuild) $events events at $(awk -v e="$events" -v a="$t1" -v b="$t2" 'BEGIN{printf "%.0f", e/(b-a)}') events/s" | tee -a "$RESULTS"
  start_basis "$dir" "${flags[@]}"
  token=$(curl -fsS "http://127.0.0.1:$BASIS_PORT/auth/login" -H 'content-type: application/json' \
    -d "{\"email\":\"bench@example.com\",\"password\":\"$PASSWORD\"}" | jq -r .accessToken)
  local first=${ids%% *}
  for mode in spread hot; do
    local script=$BENCH_DIR/tmp/ledger-$mode.lua before after
    lua "$mode" "$token" $ids >"$script"
    before=$(count_events "$engine" "$url" "$dir")
    run_wrk "POST /transfers $mode, $engine" "http://127.0.0.1:$BASIS_PORT" "$script"
    local catchup; catchup=$(caught_up "$first" "$token")
    after=$(count_events "$engine" "$url" "$dir")
    local ratios=""
    if [ "$engine" = postgres ]; then
      for scale in $PGBENCH_SCALES; do
        ratios+=" ratio_to_pgbench_s$scale=$(awk -v a="$WRK_RPS" -v b="${PGB_TPS[$scale]}" 'BEGIN { printf "%.2f", a / b }')"
      done
    fi
    echo "engine=$engine mode=$mode tps=$WRK_RPS p99_ms=$WRK_P99 events=$((after - before)) projection_caught_up_after_load_s=$catchup$ratios" | tee -a "$RESULTS"
  done
  stop_basis
}

count_events() { # count_events <engine> <url> <dir>
  if [ "$1" = postgres ]; then psql -Atc 'SELECT count(*) FROM ledger_events' "$2"; else sqlite3 "$3/basis.db" 'SELECT count(*) FROM ledger_events'; fi
}

run_engine postgres
run_engine sqlite
