#!/usr/bin/env bash
# Transfers to another bank's ledger: two-phase commit against saga, beside a transfer
# within one bank (the anchor), in one run: p50/p99 latency and how long row locks are held.
#
#   bench/cross-ledger.sh                    # clients "1 8", 2,000 transfers per run
#   CLIENTS="1" TRANSFERS=500 bench/cross-ledger.sh
#
# Starts a private PostgreSQL cluster (initdb into a temporary directory, a free port,
# max_prepared_transactions=64; as the postgres user when run as root), so the shared
# server is never reconfigured. Each run gets two fresh databases (home and remote).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
CLIENTS=${CLIENTS:-1 8}
TRANSFERS=${TRANSFERS:-2000}

(cd "$ROOT" && cargo build --release -q -p basis-ledger --example cross_bench)
BENCH=$TARGET_DIR/release/examples/cross_bench

SCRATCH=$(mktemp -d)
as_pg() { if [ "$(id -u)" = 0 ]; then setpriv --reuid=postgres --regid=postgres --init-groups --reset-env -- "$@"; else "$@"; fi; }
[ "$(id -u)" = 0 ] && chown postgres: "$SCRATCH"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
as_pg initdb -D "$SCRATCH/data" -A trust -U postgres --no-sync -E UTF8 >/dev/null
SERVER=(postgres -D "$SCRATCH/data" -p "$PORT" -c listen_addresses=127.0.0.1
  -c unix_socket_directories="$SCRATCH" -c max_prepared_transactions=64 -c max_connections=200)
# Started as a plain command, not through the as_pg function: a function in the background
# runs in a forked shell, so $! would be that shell, and the interrupt below would never
# reach the server (the script then hung in `wait` and left the cluster running).
if [ "$(id -u)" = 0 ]; then
  setpriv --reuid=postgres --regid=postgres --init-groups --reset-env -- "${SERVER[@]}" \
    >"$SCRATCH/postgres.log" 2>&1 &
else
  "${SERVER[@]}" >"$SCRATCH/postgres.log" 2>&1 &
fi
PG_PID=$!
cleanup() { kill -INT "$PG_PID" 2>/dev/null; wait "$PG_PID" 2>/dev/null || true; rm -rf "$SCRATCH"; }
trap cleanup EXIT
for _ in $(seq 1 120); do pg_isready -q -h 127.0.0.1 -p "$PORT" && break; sleep 0.25; done
URL="postgres://postgres@127.0.0.1:$PORT"

echo "# $(date -u +%FT%TZ) commit $(git -C "$ROOT" rev-parse --short HEAD), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# private PostgreSQL $(postgres --version | awk '{print $3}'), fsync on, transfers=$TRANSFERS per run"
n=0
for clients in $CLIENTS; do
  for mode in local 2pc saga; do
    n=$((n + 1))
    createdb -h 127.0.0.1 -p "$PORT" -U postgres "home$n"
    createdb -h 127.0.0.1 -p "$PORT" -U postgres "remote$n"
    "$BENCH" "$URL/home$n" "$URL/remote$n" "$mode" "$clients" "$TRANSFERS"
  done
done
