#!/usr/bin/env bash
# Redirect throughput with the visit log on (`--visit-log-days 30`) beside the same server
# with it off, in the same run: each pair starts both on fresh data directories, the order
# flipping every pair. The anchor is "off"; the target is at least 0.9× of it.
#   bench/visit-log.sh
#     PAIRS=5          on/off runs
#     WRK_DURATION, WRK_CONNECTIONS, WRK_THREADS   the load (default 10s, 64, 1)
# wrk sends a browser user agent and a referrer, so each visit carries a browser, a device
# and a referrer host to log.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
RESULTS=${RESULTS:-$BENCH_DIR/tmp/visit-log.txt}
mkdir -p "$BENCH_DIR/tmp"; : >"$RESULTS"
ensure_tools
build_basis
PAIRS=${PAIRS:-5}
DATA=$(mktemp -d)
trap 'cleanup; rm -rf "$DATA"' EXIT

script=$DATA/browser.lua
cat >"$script" <<'LUA'
wrk.headers["User-Agent"] = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120.0 Safari/537.36"
wrk.headers["Referer"] = "https://news.example/story"
LUA

echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); wrk -t$WRK_THREADS -c$WRK_CONNECTIONS -d$WRK_DURATION;" \
  "commit $(git -C "$ROOT" rev-parse --short HEAD)" | tee -a "$RESULTS"

# run_one <label> <data dir> [serve flags…]: one server, one hot link, warmed up, measured.
run_one() {
  local label=$1 dir=$2; shift 2
  start_basis "$dir" "$@"
  local code
  code=$(shorten '{"longUrl": "https://example.com/very/long/path/for/the/visit/log"}')
  wrk -t"$WRK_THREADS" -c"$WRK_CONNECTIONS" -d"${WARMUP:-3s}" -s "$script" "http://127.0.0.1:$BASIS_PORT/$code" >/dev/null
  CPU_PIDS=$BASIS_PID run_wrk "$label" "http://127.0.0.1:$BASIS_PORT/$code" "$script"
  stop_basis
}

ratios=()
for pair in $(seq 1 "$PAIRS"); do
  echo "pair $pair (load $(cut -d' ' -f1 /proc/loadavg))" | tee -a "$RESULTS"
  off() { run_one "  visit log off (anchor)" "$DATA/off-$pair"; off_rps=$WRK_RPS; }
  on() { run_one "  visit log on, 30 days" "$DATA/on-$pair" --visit-log-days 30; on_rps=$WRK_RPS; }
  if [ $((pair % 2)) = 1 ]; then off; on; else on; off; fi
  ratio=$(awk -v a="$on_rps" -v b="$off_rps" 'BEGIN {printf "%.3f", a / b}')
  ratios+=("$ratio")
  echo "  ratio on/off: $ratio" | tee -a "$RESULTS"
done
echo "median of $PAIRS pairs: visit log on = $(median "${ratios[@]}")× off (pairs: ${ratios[*]})" | tee -a "$RESULTS"
