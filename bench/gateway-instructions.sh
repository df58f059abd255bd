#!/usr/bin/env bash
# Instructions per proxied request of `basis gateway`, counted by valgrind's callgrind: a
# figure the machine's load cannot move (wall-clock CPU per request is `bench/gateway.sh`).
#   bench/gateway-instructions.sh
#     BASIS_BIN=path   the binary to measure (default: build this tree's release binary)
#     WRK_CONNECTIONS=16, WRK_DURATION=10s, WARMUP=3s   the load (wrk, one thread)
#     KEEP=dir         keep the callgrind file there (default: a temporary directory, removed);
#                      `callgrind_annotate --inclusive=yes KEEP/gateway.out` gives the profile
# Two backends (one nginx worker answering `return 200` on two ports, keep-alive without a
# request cap) and the gateway (one tokio worker, round robin, health checks off) run on
# 127.0.0.1 only. Instrumentation is off while the gateway starts and during an unmeasured
# warm-up, on for one wrk run, then off again; the gateway is stopped and the total of the
# instrumented part is divided by the requests wrk completed. Takes about half a minute and
# stops everything it started, also on failure.
# Prints: requests, instructions, instructions per request.
set -euo pipefail
CONNECTIONS=${WRK_CONNECTIONS:-16}  # read before lib.sh sets its own default (64)
. "$(dirname "$0")/lib.sh"
WARMUP=${WARMUP:-3s}
B1=18281 B2=18282 GW=18290
command -v valgrind >/dev/null || {
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind >/dev/null
}
ensure_tools
build_basis
DATA=$(mktemp -d)
OUT_DIR=${KEEP:-$DATA}
mkdir -p "$OUT_DIR"


stop_all() {
  stop_static_backends "$DATA/backends"
  cleanup
  rm -rf "$DATA"
}
trap stop_all EXIT

static_backends "$DATA/backends" "$B1" "$B2"
TOKIO_WORKER_THREADS=1 RUST_LOG=warn valgrind --tool=callgrind --instr-atstart=no \
  --callgrind-out-file="$OUT_DIR/gateway.out" \
  "$BASIS" gateway --listen "127.0.0.1:$GW" --health-check off --algorithm round-robin \
  --backend "http://127.0.0.1:$B1" --backend "http://127.0.0.1:$B2" >"$DATA/gateway.log" 2>&1 &
GW_PID=$!
PIDS+=("$GW_PID")
wait_http "http://127.0.0.1:$B1/"
wait_http "http://127.0.0.1:$GW/"

wrk -t1 -c"$CONNECTIONS" -d"$WARMUP" "http://127.0.0.1:$GW/" >/dev/null
callgrind_control -i on "$GW_PID" >/dev/null
out=$(wrk -t1 -c"$CONNECTIONS" -d"$WRK_DURATION" "http://127.0.0.1:$GW/")
callgrind_control -i off "$GW_PID" >/dev/null
requests=$(awk '/requests in/ {print $1}' <<<"$out")
non2xx=$(awk '/Non-2xx or 3xx/ {print $5}' <<<"$out")
kill -TERM "$GW_PID"
wait "$GW_PID" 2>/dev/null || true
total=$(callgrind_annotate "$OUT_DIR/gateway.out" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
if [ -n "$non2xx" ]; then echo "warning: $non2xx answers were not 2xx/3xx" >&2; fi
echo "binary $BASIS; wrk -t1 -c$CONNECTIONS -d$WRK_DURATION; load $(cut -d' ' -f1-3 /proc/loadavg)"
awk -v r="$requests" -v t="$total" 'BEGIN {
  printf "requests %d  instructions %.1f M  per request %d\n", r, t / 1e6, t / r }'
