#!/usr/bin/env bash
# Link creation throughput with the links in the main database (0 shard databases, the
# anchor) and spread over 1, 2 and 4 shard databases (`--shard-url`), on one PostgreSQL
# server: one `basis serve` (release build), wrk on `POST /shorten` with a distinct URL per
# request, as bench/creates.sh.
#
# Every configuration gets brand-new databases (a catalog and its shard databases, named
# basis_bench_shards_<pid>_…), so each starts from empty tables; all of them are dropped at
# the end, also on failure. The shard databases sit on the same server as the catalog, on
# the same machine as Basis and wrk: more shard databases add no CPU, so what the figures
# show is the cost of routing (a hash of the id and the map, then a pool per database), not
# a scale-up.
#
# Reported per configuration: creates/s and p99 (median of ROUNDS runs), Basis's CPU per
# create, the load average, the connections the configuration held open on the server, and
# where the links went (a count of `links` in each database after the runs).
#
# Usage: bench/shard-creates.sh        (ROUNDS=3 runs of WRK_DURATION=10s per configuration)
#   BENCH_POSTGRES_URL: a server where scratch databases may be made
#     (default postgres://postgres@127.0.0.1:5432/postgres)
#   SHARD_COUNTS (default "0 1 2 4"); BASIS_DB_POOL_SIZE (default 16) connections per
#   database pool: the catalog's and each shard database's; WRK_CONNECTIONS (64), WRK_THREADS (1).
#   BASIS_BIN: a binary built elsewhere (else `cargo build --release -p basis` here).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

ROUNDS=${ROUNDS:-3}
SHARD_COUNTS=${SHARD_COUNTS:-0 1 2 4}
PG_ADMIN=${BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}
export BASIS_DB_POOL_SIZE=${BASIS_DB_POOL_SIZE:-16}
if ss -Htln | awk '{print $4}' | grep -q ":$BASIS_PORT\$"; then
  echo "error: port $BASIS_PORT is in use; set BASIS_PORT" >&2
  exit 1
fi
ensure_tools
build_basis
RESULTS=${RESULTS:-$BENCH_DIR/tmp/shard-creates.txt} # every wrk run (lib.sh's run_wrk)
mkdir -p "$(dirname "$RESULTS")"
: >"$RESULTS"

WORK=$(mktemp -d /tmp/basis-shard-bench-XXXXXX)
PREFIX=basis_bench_shards_$$
DATABASES=() # every database made, dropped at the end

finish() {
  cleanup # lib.sh: the basis server
  local db
  for db in "${DATABASES[@]}"; do
    psql "$PG_ADMIN" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 ||
      echo "warning: could not drop $db" >&2
  done
  rm -rf "$WORK"
}
trap finish EXIT

db_url() { echo "${PG_ADMIN%/*}/$1"; }
fresh_db() { # fresh_db <name>: creates it and remembers to drop it
  psql "$PG_ADMIN" -qc "CREATE DATABASE $1" >/dev/null
  DATABASES+=("$1")
}
links_in() { psql "$(db_url "$1")" -Atc 'SELECT count(*) FROM links'; }
# connections <prefix>: backends the server has open on databases named <prefix>…
connections() {
  psql "$PG_ADMIN" -Atc "SELECT count(*) FROM pg_stat_activity WHERE datname LIKE '$1%'"
}

cat >"$WORK/create.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local n = 0
request = function()
  n = n + 1
  return wrk.format(nil, "/shorten", nil, '{"longUrl":"https://example.com/articles/2026/12/' .. n .. '/a-title"}')
end
LUA

SUMMARY=$WORK/summary.txt
for shards in $SHARD_COUNTS; do
  catalog=${PREFIX}_${shards}_catalog
  fresh_db "$catalog"
  flags=(--database-url "$(db_url "$catalog")")
  names=()
  for n in $(seq 1 "$shards"); do
    names+=("${PREFIX}_${shards}_shard$n")
    fresh_db "${names[-1]}"
    flags+=(--shard-url "$(db_url "${names[-1]}")")
  done
  rm -rf "$WORK/basis"
  start_basis "$WORK/basis" "${flags[@]}"
  if [ "$shards" -gt 0 ]; then # the even map is in the catalog: the links are sharded
    mapped=$(psql "$(db_url "$catalog")" -Atc 'SELECT count(DISTINCT database) FROM link_shard_map')
    [ "$mapped" -eq "$shards" ] || { echo "error: the map spans $mapped databases, not $shards" >&2; exit 1; }
  fi
  CPU_PIDS=$BASIS_PID
  WRK_DURATION=2s run_wrk "warm-up, $shards shard database(s)" "http://127.0.0.1:$BASIS_PORT" "$WORK/create.lua" >/dev/null
  rps=() p99=() cpu=()
  for round in $(seq 1 "$ROUNDS"); do
    run_wrk "$shards shard database(s), round $round" "http://127.0.0.1:$BASIS_PORT" "$WORK/create.lua"
    rps+=("$WRK_RPS") p99+=("$WRK_P99") cpu+=("$WRK_CPU_US")
  done
  CPU_PIDS=
  load=$(cut -d' ' -f1-3 /proc/loadavg)
  held=$(connections "${PREFIX}_${shards}_")
  stop_basis
  if [ "$shards" -eq 0 ]; then
    where="catalog $(links_in "$catalog")"
  else
    where="catalog $(links_in "$catalog"); shards"
    total=0
    for name in "${names[@]}"; do
      count=$(links_in "$name")
      total=$((total + count))
      where+=" $count"
    done
    where+=" (total $total)"
  fi
  printf '%s shard database(s): %s creates/s (median of %s), p99 %s ms, Basis CPU %s µs/create; load %s; %s connections; links: %s\n' \
    "$shards" "$(median "${rps[@]}")" "$ROUNDS" "$(median "${p99[@]}")" "$(median "${cpu[@]}")" \
    "$load" "$held" "$where" | tee -a "$SUMMARY"
done
echo
echo "summary ($(nproc) cores; wrk -t$WRK_THREADS -c$WRK_CONNECTIONS -d$WRK_DURATION, POST /shorten; pools of $BASIS_DB_POOL_SIZE):"
cat "$SUMMARY"
