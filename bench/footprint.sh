#!/usr/bin/env bash
# Footprint of `basis serve` with its default settings on SQLite: resident memory when idle,
# the time from spawning the process to its first ready answer, and resident memory after a
# million redirects of one link.
#   bench/footprint.sh
#     STARTS=7          starts measured, each in a fresh data directory, then as many
#                       restarts on the last one's data (median of each)
#     IDLE_SECONDS=2    how long the idle reading waits after ready (background tasks tick)
#     REDIRECTS=1000000 redirects of the load (wrk, one thread, WRK_CONNECTIONS=64)
#     LOAD=0            skip the load
# Nothing is set but --listen and --data-dir (no BASIS_* from lib.sh): the figures are those
# of a new user's `basis serve`. Targets (issue 19): idle RSS ≤ 20 MB, start to ready ≤ 100 ms.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
STARTS=${STARTS:-7}
IDLE_SECONDS=${IDLE_SECONDS:-2}
REDIRECTS=${REDIRECTS:-1000000}
ensure_tools
build_basis
WORK=$(mktemp -d)
trap 'cleanup; rm -rf "$WORK"' EXIT
# A FIFO nobody writes to: `read -t` on it is a pause without a fork, so the poll below
# can wait a millisecond between attempts instead of spinning on a core the server needs.
mkfifo "$WORK/never"
exec 9<>"$WORK/never"

now_us() { echo "${EPOCHREALTIME/./}"; }

# spawn <data-dir>: starts the server with its defaults (sets BASIS_PID and SPAWNED_US)
spawn() {
  mkdir -p "$1"
  SPAWNED_US=$(now_us)
  env -u BASIS_RATE_LIMITS "$BASIS" serve --listen "127.0.0.1:$BASIS_PORT" --data-dir "$1" >"$1/basis.log" 2>&1 &
  BASIS_PID=$!
  PIDS+=("$BASIS_PID")
}

# ready_ms: polls GET /readyz over a fresh connection every millisecond until it answers
# 200; prints the milliseconds since the spawn. Bash's /dev/tcp: no process per attempt.
ready_ms() {
  local status deadline=$(($(now_us) + 30000000))
  while :; do
    if { exec 8<>"/dev/tcp/127.0.0.1/$BASIS_PORT"; } 2>/dev/null; then
      printf 'GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' >&8
      status=
      read -r -t 5 status <&8 || true
      exec 8<&-
      if [[ $status == "HTTP/1.1 200"* ]]; then
        awk -v a="$SPAWNED_US" -v b="$(now_us)" 'BEGIN {printf "%.1f", (b - a) / 1000}'
        return 0
      fi
    fi
    kill -0 "$BASIS_PID" 2>/dev/null || { echo "error: basis exited; see its log" >&2; return 1; }
    (($(now_us) < deadline)) || { echo "error: not ready within 30 s" >&2; return 1; }
    read -r -t 0.001 -u 9 || true
  done
}

rss_mb() { awk -v f="${2:-VmRSS}:" '$1 == f {printf "%.1f", $2 / 1024}' "/proc/$1/status"; }

# one_start <data-dir>: appends its start-to-ready time and idle RSS to the arrays named
one_start() {
  spawn "$1"
  local ms
  ms=$(ready_ms)
  read -r -t "$IDLE_SECONDS" -u 9 || true
  READY+=("$ms"); IDLE+=("$(rss_mb "$BASIS_PID")")
  stop_basis
}

echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); binary $(du -h "$BASIS" | cut -f1);" \
  "commit $(git -C "$ROOT" rev-parse --short HEAD)"
READY=() IDLE=()
for i in $(seq 1 "$STARTS"); do one_start "$WORK/fresh-$i"; done
echo "fresh data directory ($STARTS starts): start to ready median $(median "${READY[@]}") ms (${READY[*]});" \
  "idle RSS after ${IDLE_SECONDS} s median $(median "${IDLE[@]}") MB (${IDLE[*]})"
READY=() IDLE=()
for _ in $(seq 1 "$STARTS"); do one_start "$WORK/fresh-$STARTS"; done
echo "existing data directory ($STARTS restarts): start to ready median $(median "${READY[@]}") ms (${READY[*]});" \
  "idle RSS after ${IDLE_SECONDS} s median $(median "${IDLE[@]}") MB (${IDLE[*]})"
[ "${LOAD:-1}" = 0 ] && exit 0

# A million redirects of one link. wrk has no request count: its script marks a file and
# stops its thread once the answers reach REDIRECTS; the mark ends wrk.
spawn "$WORK/load"
ready_ms >/dev/null
code=$(shorten '{"longUrl": "https://example.com/footprint/one/link"}')
cat >"$WORK/count.lua" <<'EOF'
local limit = tonumber(os.getenv("REQUESTS"))
local answered = 0
response = function()
  answered = answered + 1
  if answered == limit then
    io.open(os.getenv("DONE_FILE"), "w"):close()
    wrk.thread:stop()
  end
end
EOF
before=$(rss_mb "$BASIS_PID")
DONE_FILE=$WORK/done REQUESTS=$REDIRECTS wrk -t1 -c"$WRK_CONNECTIONS" -d3600s -s "$WORK/count.lua" \
  "http://127.0.0.1:$BASIS_PORT/$code" >"$WORK/wrk.txt" &
wrk_pid=$!
until [ -e "$WORK/done" ]; do
  kill -0 "$wrk_pid" 2>/dev/null || { cat "$WORK/wrk.txt" >&2; exit 1; }
  read -r -t 0.2 -u 9 || true
done
kill -INT "$wrk_pid"; wait "$wrk_pid" || true
out=$(cat "$WORK/wrk.txt")
errors=$(awk '/Non-2xx or 3xx/ {print $5}' <<<"$out")
echo "after $(awk '/requests in/ {print $1}' <<<"$out") redirects (wrk -t1 -c$WRK_CONNECTIONS," \
  "$(awk '/Requests\/sec/ {print $2}' <<<"$out") req/s${errors:+, $errors answers ≥ 400}):" \
  "RSS $(rss_mb "$BASIS_PID") MB (before the load $before MB), peak $(rss_mb "$BASIS_PID" VmHWM) MB;" \
  "load $(cut -d' ' -f1-3 /proc/loadavg)"
stop_basis
