#!/usr/bin/env bash
# The queue end to end on RabbitMQ beside SQLite and PostgreSQL, in one run on this machine:
# jobs/s (enqueue + no-op handler run by the real Worker in 1 and 2 consumer processes) and
# enqueue-to-start latency p50/p99 with paced enqueues. Loopback only; every run ends by
# itself (the driver gives up after 300 s).
# Usage: bench/queue/amqp.sh [jobs=20000] [paced_rate=200]
set -euo pipefail
cd "$(dirname "$0")/../.."
# The engines must be up (`. scripts/services.sh` starts them); not sourced here because it
# also drops other runs' test databases.
BASIS_TEST_POSTGRES_URL=${BASIS_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}
BASIS_TEST_AMQP_URL=${BASIS_TEST_AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
cargo build --release -q -p basis-queue --example queue_bench
BIN=$CARGO_TARGET_DIR/release/examples/queue_bench
JOBS=${1:-20000}
RATE=${2:-200}

tmp=$(mktemp -d)
pgdb=basis_bench_$(od -An -N4 -tx4 /dev/urandom | tr -d ' ')
psql "$BASIS_TEST_POSTGRES_URL" -qc "CREATE DATABASE $pgdb" >/dev/null
trap 'rm -rf "$tmp"; psql "$BASIS_TEST_POSTGRES_URL" -qc "DROP DATABASE IF EXISTS $pgdb" >/dev/null 2>&1 || true' EXIT
pg_url="${BASIS_TEST_POSTGRES_URL%/*}/$pgdb"

echo "# $(date -u +%FT%TZ) jobs=$JOBS paced=$RATE/s $(nproc) cores"
for url in "sqlite://$tmp/bench.db" "$pg_url" "$BASIS_TEST_AMQP_URL"; do
  for consumers in 1 2; do "$BIN" drive "$url" "$JOBS" "$consumers"; done
  "$BIN" drive "$url" $((RATE * 10)) 1 "$RATE"
done
