#!/usr/bin/env bash
# The queue benchmark: basis-queue on SQLite and PostgreSQL beside graphile-worker (same
# PostgreSQL) and BullMQ (same Redis), in one run, with 1 and 2 worker processes each.
#
# - throughput: $JOBS no-op jobs enqueued by 8 concurrent producers (one job per
#   transaction) while the workers run; jobs/s = jobs / (first enqueue → nothing left);
# - latency: $LAT_JOBS jobs enqueued one every $PACE_MS ms (200 jobs/s); enqueue-to-start
#   p50/p99 as each worker saw it (payload timestamp → handler start);
# - backlog (BACKLOG=0 skips it): $BACKLOG_JOBS jobs enqueued in one bulk call (graphile's
#   addJobs, BullMQ's addBulk, basis's enqueue_many) with no worker running: the bulk
#   enqueue rate; then 1 or 2 worker processes start and drain them: jobs / (first job
#   finished → none left). graphile-worker runs with its defaults and tuned as its docs
#   advise for throughput (concurrency 24, a local queue of 500, batched completion);
#   BullMQ with concurrency 50; basis with $BACKLOG_CONC.
#
# Usage: bench/queue/run.sh   (JOBS=10000 LAT_JOBS=1000 CONC=16 ROUNDS=1 PACE_MS=5
#        BACKLOG_JOBS=20000 BACKLOG_CONC=32 by default; SYSTEMS / BACKLOG_SYSTEMS pick rows;
#        THROUGHPUT=0 skips the first table)
# Everything targets loopback and stops by itself.
set -euo pipefail
cd "$(dirname "$0")/../.."
# Start PostgreSQL and Redis only if they are down (services.sh also drops leftover test
# databases, which would disturb test runs going on beside the benchmark).
export BASIS_TEST_POSTGRES_URL=${BASIS_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}
export BASIS_TEST_REDIS_URL=${BASIS_TEST_REDIS_URL:-redis://127.0.0.1:6379}
if ! pg_isready -q -h 127.0.0.1 -p 5432 || ! redis-cli -u "$BASIS_TEST_REDIS_URL" ping >/dev/null 2>&1; then
  . scripts/services.sh >/dev/null
fi
command -v npm >/dev/null || { apt-get update -qq && apt-get install -y -qq nodejs npm >/dev/null; }
JOBS=${JOBS:-10000}
LAT_JOBS=${LAT_JOBS:-1000}
CONC=${CONC:-16}
ROUNDS=${ROUNDS:-1}
export PACE_MS=${PACE_MS:-5}
BACKLOG=${BACKLOG:-1}
BACKLOG_JOBS=${BACKLOG_JOBS:-20000}
BACKLOG_CONC=${BACKLOG_CONC:-32}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
cargo build --release -q -p basis-queue --bin queue-worker --example bench_produce
BIN=$CARGO_TARGET_DIR/release
[ -d bench/queue/node_modules/graphile-worker ] ||
  npm ci --prefix bench/queue --no-audit --no-fund --loglevel=error >/dev/null

TMP=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill -9 "$p" 2>/dev/null || true; done; rm -rf "$TMP"; }
trap cleanup EXIT

PG_ADMIN=$BASIS_TEST_POSTGRES_URL
PG_BENCH=${PG_ADMIN%/*}/basis_bench_queue
REDIS=$BASIS_TEST_REDIS_URL

fresh_pg() {
  psql "$PG_ADMIN" -qc "DROP DATABASE IF EXISTS basis_bench_queue WITH (FORCE)" >/dev/null
  psql "$PG_ADMIN" -qc "CREATE DATABASE basis_bench_queue" >/dev/null
}

url_of() { case $1 in
  basis-sqlite) echo "sqlite://$TMP/bench.db" ;;
  basis-postgres | graphile-worker | graphile-tuned) echo "$PG_BENCH" ;;
  bullmq) echo "$REDIS" ;;
  basis-amqp) echo "${BASIS_TEST_AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}" ;;
esac; }

reset() { # a clean store for each run; basis installs its tables before its workers start
  case $1 in
    basis-sqlite) rm -f "$TMP"/bench.db*; "$BIN/examples/bench_produce" "$(url_of "$1")" 0 burst >/dev/null ;;
    basis-postgres) fresh_pg; "$BIN/examples/bench_produce" "$PG_BENCH" 0 burst >/dev/null ;;
    graphile-worker | graphile-tuned) fresh_pg ;;
    basis-amqp) for q in basis.q.bench basis.hi.bench basis.dlq.bench; do rabbitmqctl -q delete_queue "$q" >/dev/null 2>&1 || true; done ;;
    bullmq) redis-cli -u "$REDIS" --no-raw eval "for _,k in ipairs(redis.call('keys','bull:bench:*')) do redis.call('del',k) end" 0 >/dev/null ;;
  esac
}

start_workers() { # start_workers <system> <processes> [concurrency per process]
  # All processes start at once, then each must say "ready".
  PIDS=()
  : >"$TMP/lat"
  local conc=${3:-$CONC} i out
  for i in $(seq 1 "$2"); do
    out=$TMP/worker$i.out
    : >"$out"
    case $1 in
      basis-*) LATENCY_FILE=$TMP/lat "$BIN/queue-worker" "$(url_of "$1")" bench noop "$conc" >"$out" 2>&1 & ;;
      graphile-worker) LATENCY_FILE=$TMP/lat node bench/queue/anchors.mjs worker graphile "$PG_BENCH" "$conc" >"$out" 2>&1 & ;;
      graphile-tuned) LATENCY_FILE=$TMP/lat node bench/queue/anchors.mjs worker graphile-tuned "$PG_BENCH" "$conc" >"$out" 2>&1 & ;;
      bullmq) LATENCY_FILE=$TMP/lat node bench/queue/anchors.mjs worker bullmq "$REDIS" "$conc" >"$out" 2>&1 & ;;
    esac
    PIDS+=($!)
  done
  for i in $(seq 1 "$2"); do
    out=$TMP/worker$i.out
    for _ in $(seq 1 600); do grep -qs ready "$out" && break; sleep 0.05; done
    grep -qs ready "$out" || { echo "worker for $1 did not start:" >&2; cat "$out" >&2; exit 1; }
  done
}

stop_workers() {
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  PIDS=()
}

produce_raw() { # produce_raw <system> <jobs> <mode>: the producer's own output
  case $1 in
    basis-*) "$BIN/examples/bench_produce" "$(url_of "$1")" "$2" "$3" 8 ;;
    graphile-*) node bench/queue/anchors.mjs produce graphile "$PG_BENCH" "$2" "$3" 8 ;;
    bullmq) node bench/queue/anchors.mjs produce bullmq "$REDIS" "$2" "$3" 8 ;;
  esac
}

produce() { # produce <system> <jobs> <mode> [figure]: prints elapsed_ms (or the figure named)
  produce_raw "$1" "$2" "$3" | awk -v f="${4:-elapsed_ms}" '$1 == f { print $2 }'
}

drain() { # drain <system> <processes> <concurrency>: ms from the first finished job to none left
  # The waiter is connected and has seen the whole backlog before any worker starts.
  produce_raw "$1" "$BACKLOG_JOBS" drain >"$TMP/drain.out" 2>&1 &
  local waiter=$!
  for _ in $(seq 1 600); do grep -qs waiting "$TMP/drain.out" && break; sleep 0.05; done
  start_workers "$1" "$2" "$3"
  wait "$waiter" || { cat "$TMP/drain.out" >&2; exit 1; }
  stop_workers
  awk '$1 == "elapsed_ms" { print $2 }' "$TMP/drain.out"
}

backlog_conc() { case $1 in graphile-tuned) echo 24 ;; bullmq) echo 50 ;; graphile-worker) echo "$CONC" ;; *) echo "$BACKLOG_CONC" ;; esac; }

pct() { sort -n "$TMP/lat" | awk -v p="$1" '{ a[NR] = $1 } END { i = int((NR - 1) * p + 0.5) + 1; printf "%.1f", a[i] / 1000 }'; }

echo "queue benchmark: $(date -u +%F), commit $(git rev-parse --short HEAD), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "jobs=$JOBS latency_jobs=$LAT_JOBS (one every $PACE_MS ms) concurrency/process=$CONC"
echo
echo "| system | worker processes | jobs/s | enqueue-to-start p50 (ms) | p99 (ms) |"
echo "|---|---|---|---|---|"
for round in $(seq 1 "$([ "${THROUGHPUT:-1}" = 0 ] && echo 0 || echo "$ROUNDS")"); do
  for procs in 1 2; do
    for system in ${SYSTEMS:-basis-sqlite basis-postgres basis-amqp graphile-worker bullmq}; do
      reset "$system"
      start_workers "$system" "$procs"
      elapsed=$(produce "$system" "$JOBS" burst)
      stop_workers
      reset "$system"
      start_workers "$system" "$procs"
      produce "$system" "$LAT_JOBS" paced >/dev/null
      stop_workers
      rate=$(awk -v n="$JOBS" -v ms="$elapsed" 'BEGIN { printf "%d", n * 1000 / ms }')
      echo "| $system | $procs | $rate | $(pct 0.5) | $(pct 0.99) |"
    done
  done
done

[ "$BACKLOG" = 0 ] && exit 0
echo
echo "backlog: $BACKLOG_JOBS no-op jobs enqueued in one bulk call, then drained; load $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| system | concurrency/process | bulk enqueue (jobs/s) | drain, 1 process (jobs/s) | drain, 2 processes (jobs/s) |"
echo "|---|---|---|---|---|"
rate() { awk -v n="$1" -v ms="$2" 'BEGIN { if (ms > 0) printf "%d", n * 1000 / ms; else print "n/a" }'; }
for round in $(seq 1 "$ROUNDS"); do
  for system in ${BACKLOG_SYSTEMS:-basis-sqlite basis-postgres graphile-worker graphile-tuned bullmq}; do
    conc=$(backlog_conc "$system")
    row="| $system | $conc |"
    for procs in 1 2; do
      reset "$system"
      bulk_ms=$(produce "$system" "$BACKLOG_JOBS" bulk enqueued_ms)
      [ "$procs" = 1 ] && row="$row $(rate "$BACKLOG_JOBS" "$bulk_ms") |"
      drain_ms=$(drain "$system" "$procs" "$conc")
      row="$row $(rate "$BACKLOG_JOBS" "$drain_ms") |"
    done
    echo "$row"
  done
done
