#!/usr/bin/env bash
# The ledger's transfers per second beside pgbench TPC-B on the same PostgreSQL, in one run.
#
#   bench/ledger.sh                      # 64 clients, 10,000 accounts, 20 s per run
#   CLIENTS=32 DURATION=10 bench/ledger.sh
#
# Runs, in order: pgbench -i -s S then -c $CLIENTS -T $DURATION (TPC-B) for each scale S of
# $PGBENCH_SCALES (default "1 64"; these are the anchors),
# then the ledger on PostgreSQL (spread over $ACCOUNTS accounts, then one hot account), then
# the ledger on SQLite (same two). Each ledger run ends with a cold projection of every event
# it wrote. Scratch databases are created and dropped; everything stays on 127.0.0.1.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
PG_URL=${BASIS_BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}
CLIENTS=${CLIENTS:-64}
ACCOUNTS=${ACCOUNTS:-10000}
DURATION=${DURATION:-20}
PGBENCH_SCALES=${PGBENCH_SCALES:-1 64}

if ! command -v pgbench >/dev/null || ! command -v psql >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-client >/dev/null
fi
(cd "$ROOT" && cargo build --release -q -p basis-ledger --example ledger_bench)
BENCH=$TARGET_DIR/release/examples/ledger_bench

SCRATCH=$(mktemp -d)
# Every scratch database ends in this script's pid (fresh_db runs in a subshell, so the names
# are found again by that suffix rather than kept in a variable).
cleanup() {
  for db in $(psql -At "$PG_URL" -c "SELECT datname FROM pg_database WHERE datname LIKE 'basis\_bench\_%\_$$'"); do
    psql -q "$PG_URL" -c "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1 || true
  done
  rm -rf "$SCRATCH"
}
trap cleanup EXIT

fresh_db() { # fresh_db <name>: creates it, prints its URL
  local name="$1_$$"
  psql -q "$PG_URL" -c "CREATE DATABASE $name" >/dev/null
  echo "${PG_URL%/*}/$name"
}

echo "# $(date -u +%FT%TZ) commit $(git -C "$ROOT" rev-parse --short HEAD), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# clients=$CLIENTS accounts=$ACCOUNTS duration=${DURATION}s"

# Scale 1 (the issue's anchor) has one branch row that every TPC-B transaction updates: a
# hot row. Scale 64 gives each client its own branch, the fair anchor for spread transfers.
declare -A PGB_TPS
for scale in $PGBENCH_SCALES; do
  url=$(fresh_db "basis_bench_pgbench_s$scale")
  pgbench -q -i -s "$scale" "$url" >/dev/null 2>&1
  out=$(pgbench -c "$CLIENTS" -j 2 -T "$DURATION" "$url" 2>&1)
  PGB_TPS[$scale]=$(echo "$out" | sed -n 's/^tps = \([0-9.]*\).*/\1/p' | head -1)
  lat=$(echo "$out" | sed -n 's/^latency average = \([0-9.]*\) ms/\1/p')
  echo "pgbench tpcb scale=$scale clients=$CLIENTS tps=${PGB_TPS[$scale]} latency_avg_ms=$lat"
done

for mode in spread hot; do
  line=$("$BENCH" "$(fresh_db basis_bench_ledger_$mode)" "$mode" "$CLIENTS" "$ACCOUNTS" "$DURATION")
  tps=$(echo "$line" | sed -n 's/.* tps=\([0-9]*\).*/\1/p')
  ratios=""
  for scale in $PGBENCH_SCALES; do
    ratios+=" ratio_to_pgbench_s$scale=$(awk -v a="$tps" -v b="${PGB_TPS[$scale]}" 'BEGIN { printf "%.2f", a / b }')"
  done
  echo "$line$ratios"
done
for mode in spread hot; do
  "$BENCH" "sqlite://$SCRATCH/ledger_$mode.db" "$mode" "$CLIENTS" "$ACCOUNTS" "$DURATION"
done
