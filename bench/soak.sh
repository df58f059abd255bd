#!/usr/bin/env bash
# The soak: a steady mixed load (redirects, creates, link reads) against one `basis serve`
# for a long time, sampling the server's resident memory and its event backlog. Memory must
# stay flat after the warm-up (the last sample within 10 % of the one at the end of the
# warm-up, and no sample above that by more than 10 % either), and the consumers must keep
# up: the backlog (events in the outbox plus jobs waiting in the `events.*` queues, from
# `/metrics`) may not end more than 10,000 above where the warm-up left it.
#   bench/soak.sh
#     SOAK_SECONDS=1800     how long the load runs
#     WARMUP_SECONDS=300    the part of it that warms caches and pools (not judged)
#     SAMPLE_SECONDS=10     how often RSS is read
#     WRK_CONNECTIONS=64    the load's connections (one wrk thread; bench/lib.sh's default)
#     DATABASE_URL          PostgreSQL instead of the embedded SQLite
# Writes bench/tmp/soak.csv (seconds, rss_kib, backlog) and a summary line to
# bench/tmp/soak.txt; exits non-zero when memory or the backlog grew.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
RESULTS=${RESULTS:-$BENCH_DIR/tmp/soak.txt}
mkdir -p "$BENCH_DIR/tmp"; : >"$RESULTS"
ensure_tools
build_basis
SOAK_SECONDS=${SOAK_SECONDS:-1800}
WARMUP_SECONDS=${WARMUP_SECONDS:-300}
SAMPLE_SECONDS=${SAMPLE_SECONDS:-10}
CSV=$BENCH_DIR/tmp/soak.csv
DATA=$(mktemp -d)
trap 'cleanup; rm -rf "$DATA"' EXIT

start_basis "$DATA/basis"
# 1,000 links to redirect to and read back.
script=$DATA/soak.lua
{
  echo "local codes = {"
  for i in $(seq 1 1000); do
    printf '"%s",\n' "$(shorten "{\"longUrl\": \"https://example.com/soak/$i\"}")"
  done
  cat <<'LUA'
}
local n = 0
local created = 0
request = function()
  n = n + 1
  local roll = math.random(100)
  if roll <= 10 then
    created = created + 1
    local body = string.format('{"longUrl": "https://example.com/soak/new/%d/%d"}', n, created)
    return wrk.format("POST", "/shorten", {["Content-Type"] = "application/json"}, body)
  end
  local code = codes[math.random(#codes)]
  if roll <= 15 then
    return wrk.format("GET", "/links/" .. code)
  end
  return wrk.format("GET", "/" .. code)
end
LUA
} >"$script"

echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); ${SOAK_SECONDS}s of wrk -t1 -c$WRK_CONNECTIONS" \
  "(85 % redirects, 10 % creates, 5 % link reads) on ${DATABASE_URL:+PostgreSQL}${DATABASE_URL:-SQLite}; commit $(git -C "$ROOT" rev-parse --short HEAD)" | tee -a "$RESULTS"
wrk -t1 -c"$WRK_CONNECTIONS" -d"${SOAK_SECONDS}s" --latency -s "$script" "http://127.0.0.1:$BASIS_PORT" >"$DATA/wrk.txt" &
WRK_PID=$!
echo "seconds,rss_kib,backlog" >"$CSV"
start=$(date +%s)
while kill -0 "$WRK_PID" 2>/dev/null; do
  rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$BASIS_PID/status")
  backlog=$(curl -fs --max-time 5 "http://127.0.0.1:$BASIS_PORT/metrics" |
    awk '/^outbox_depth / || /^queue_depth\{queue="events\./ {n += $NF} END {print n + 0}' || echo "")
  echo "$(($(date +%s) - start)),$rss,$backlog" >>"$CSV"
  sleep "$SAMPLE_SECONDS"
done
wait "$WRK_PID"
rps=$(awk '/^Requests\/sec/ {print $2}' "$DATA/wrk.txt")
p99=$(awk '$1=="99%" {print $2}' "$DATA/wrk.txt")
errors=$(awk '/Non-2xx or 3xx/ {print $5}' "$DATA/wrk.txt")
# The judgement: RSS at the end of the warm-up against the highest and the last after it.
awk -F, -v warm="$WARMUP_SECONDS" -v rps="$rps" -v p99="$p99" -v errors="${errors:-0}" '
  NR == 1 { next }
  $1 <= warm { base = $2; if ($3 != "") base_backlog = $3; next }
  { if ($2 > peak) peak = $2; last = $2; if ($3 != "") last_backlog = $3 }
  END {
    if (!base || !last) { print "error: the soak ended before the warm-up did"; exit 2 }
    growth = (last - base) / base * 100; peak_growth = (peak - base) / base * 100
    flat = growth <= 10 && peak_growth <= 10
    keeps_up = last_backlog - base_backlog <= 10000
    printf "soak: %.0f req/s, p99 %s, non-2xx/3xx %s; RSS %.1f MiB after the warm-up, peak %.1f MiB (%+.1f %%), last %.1f MiB (%+.1f %%): %s; event backlog %d after the warm-up, %d at the end: %s\n",
      rps, p99, errors, base / 1024, peak / 1024, peak_growth, last / 1024, growth,
      flat ? "flat" : "GREW", base_backlog, last_backlog, keeps_up ? "kept up" : "FELL BEHIND"
    exit (flat && keeps_up) ? 0 : 1
  }' "$CSV" | tee -a "$RESULTS"
