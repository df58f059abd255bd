#!/usr/bin/env bash
# User-space instructions per operation, counted by valgrind's callgrind: a measure the
# machine's load cannot move, for seeing each gain. Each row runs its command at two
# operation counts and divides the difference, so start-up and warm-up cancel out.
#   bench/instructions.sh [row…]        (default: every row)
#     N1, N2        the two operation counts (default 20000 and 120000)
#     KEEP=dir      keep the callgrind files there (callgrind_annotate them for a profile)
#     REQ_N1, REQ_N2  the request counts of the server rows (default 2000 and 12000)
#     PROFILE_OUT=file  the redirect row also writes its per-function profile there
#                     (bench/profiles/redirect.txt is one)
# Prints one line per row: ours, the anchor's, and the ratio (ours / anchor).
# Server rows (redirect: basis vs nginx; create: POST /shorten on SQLite) start the server
# under callgrind, so they take minutes.
#
# Adding a row: write `row_<name>` that calls `measure <label> <command…>` for ours and for
# the anchor (the command is run with the operation count appended) and prints them with
# `report`; then add <name> to ROWS. A server row (a redirect: basis vs nginx over one
# keep-alive connection) starts the server under `valgrind --tool=callgrind`, sends the
# requests, stops it, and differences two counts the same way.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
N1=${N1:-20000}
N2=${N2:-120000}
KEEP=${KEEP:-$(mktemp -d)}
mkdir -p "$KEEP"
ROWS=(ratelimit_keyed ratelimit_one_key queue_job redirect create)

command -v valgrind >/dev/null || {
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind >/dev/null
}

# instructions <label> <command…>: total instructions of one run (callgrind's "refs")
instructions() {
  local label=$1; shift
  valgrind --tool=callgrind --callgrind-out-file="$KEEP/$label.%p" ${TOGGLE:+--toggle-collect="$TOGGLE"} \
    "$@" 2>&1 >/dev/null |
    sed -n 's/.*refs: *//p' | tr -d ','
}

# measure <label> <command…>: instructions per operation (sets PER_OP)
measure() {
  local label=$1; shift
  local a b
  a=$(instructions "$label-$N1" "$@" "$N1")
  b=$(instructions "$label-$N2" "$@" "$N2")
  PER_OP=$(((b - a) / (N2 - N1)))
}

# report <row> <ours> <anchor name> <anchor>
report() {
  awk -v row="$1" -v ours="$2" -v name="$3" -v anchor="$4" 'BEGIN {
    printf "%-34s %8d instr/op   %-18s %8d instr/op   ratio %.2fx\n", row, ours, name, anchor, ours / anchor }'
}

CHECK_LOOP=$TARGET_DIR/release/examples/check_loop
build_check_loop() {
  [ -n "${BUILT_CHECK_LOOP:-}" ] && return
  (cd "$ROOT" && cargo build --release -q -p basis-ratelimit --example check_loop)
  BUILT_CHECK_LOOP=1
}

# The rate-limit rows count only inside the example's measured loop: the clocks calibrate
# at start-up for a varying number of instructions.
row_ratelimit_keyed() { # GCRA through the memory store, 1000 keys round robin, vs governor keyed
  build_check_loop
  local TOGGLE='*measured*' gcra bucket
  measure gcra-keyed "$CHECK_LOOP" gcra-keyed; gcra=$PER_OP
  measure token-bucket-keyed "$CHECK_LOOP" token-bucket-keyed; bucket=$PER_OP
  measure governor-keyed "$CHECK_LOOP" governor-keyed
  report "rate-limit check, GCRA keyed" "$gcra" "governor keyed" "$PER_OP"
  report "rate-limit check, token bucket keyed" "$bucket" "governor keyed" "$PER_OP"
}

row_ratelimit_one_key() { # one key: our keyed store vs governor's unkeyed limiter
  build_check_loop
  local TOGGLE='*measured*' ours
  measure gcra-one-key "$CHECK_LOOP" gcra-one-key; ours=$PER_OP
  measure governor-direct "$CHECK_LOOP" governor-direct
  report "rate-limit check, GCRA one key" "$ours" "governor direct" "$PER_OP"
}

JOB_LOOP=$TARGET_DIR/release/examples/job_loop
# A no-op job through the SQLite queue in one process (every thread counted: sqlx runs SQLite
# on a thread of its own). No anchor runs in-process: graphile-worker and BullMQ split each job
# between node and a server, so the row compares Basis's batched path with its one-job path.
row_queue_job() {
  (cd "$ROOT" && cargo build --release -q -p basis-queue --example job_loop)
  local N1=${QUEUE_N1:-2000} N2=${QUEUE_N2:-12000} single
  measure job-single "$JOB_LOOP" single; single=$PER_OP
  measure job-batched "$JOB_LOOP" batched
  report "queue job (SQLite), batches of 100" "$PER_OP" "one at a time" "$single"
}

# --- Server rows: the server runs under callgrind, answers n requests over one keep-alive
# connection (wrk -c1, stopped by its script at n answers), and is stopped; two runs at
# REQ_N1 and REQ_N2 requests are differenced, so start-up, the first connection and the
# shutdown cancel out.
REQ_N1=${REQ_N1:-2000}
REQ_N2=${REQ_N2:-12000}
SERVER_PORT=${SERVER_PORT:-18095}

cat >"$KEEP/count.lua" <<'EOF'
-- Stops after REQUESTS answers (marking DONE_FILE); optional POSTs of distinct links.
local limit = tonumber(os.getenv("REQUESTS"))
local create = os.getenv("CREATE") == "1"
local answered, sent, wrong = 0, 0, 0
request = function()
  if not create then return wrk.request() end
  sent = sent + 1
  return wrk.format("POST", "/shorten", {["Content-Type"] = "application/json"},
    '{"longUrl": "https://example.com/instructions/' .. sent .. '"}')
end
response = function(status)
  answered = answered + 1
  if status ~= tonumber(os.getenv("EXPECT")) then wrong = wrong + 1 end
  if answered == limit then
    local f = io.open(os.getenv("DONE_FILE"), "w"); f:write(wrong); f:close()
    wrk.thread:stop()
  end
end
EOF

# wait_port <port> <pid>: until the port accepts a connection (a bare connect, so that the
# number of polls, which varies, costs the server next to nothing)
wait_port() {
  for _ in $(seq 1 1200); do
    { exec 7<>"/dev/tcp/127.0.0.1/$1"; } 2>/dev/null && { exec 7<&-; return 0; }
    kill -0 "$2" 2>/dev/null || break
    sleep 0.05
  done
  echo "error: nothing listens on port $1; see $KEEP" >&2
  return 1
}

# drive <n> <expected status> <url>: n requests over one connection (CREATE=1: POST /shorten)
drive() {
  local marker=$KEEP/done
  rm -f "$marker"
  DONE_FILE=$marker REQUESTS=$1 EXPECT=$2 wrk -t1 -c1 -d3600s --timeout 60s -s "$KEEP/count.lua" "$3" >"$KEEP/wrk.txt" &
  local wrk_pid=$!
  until [ -s "$marker" ]; do
    kill -0 "$wrk_pid" 2>/dev/null || { cat "$KEEP/wrk.txt" >&2; return 1; }
    sleep 0.05
  done
  kill -INT "$wrk_pid"; wait "$wrk_pid" || true
  [ "$(cat "$marker")" = 0 ] || { echo "error: $(cat "$marker") of $1 answers were not $2" >&2; return 1; }
}

# server_run <label> <n> <kind>: one callgrind run of a server answering n requests; sets
# RUN_REFS to the instructions of the whole run. kind: nginx, basis-redirect or basis-create.
server_run() {
  local label=$1 n=$2 kind=$3 pid url expect=301
  local out=$KEEP/$label-$n
  case $kind in
    nginx)
      valgrind --tool=callgrind --log-file="$out.log" --callgrind-out-file="$out.cg" \
        nginx -p "$NGINX_PREFIX" -c "$NGINX_PREFIX/nginx-one-process.conf" >/dev/null 2>&1 &
      pid=$!; PIDS+=("$pid")
      wait_port 18080 "$pid"
      url=http://127.0.0.1:18080/abc123 ;;
    basis-*)
      rm -rf "$out.data"; mkdir -p "$out.data"
      env BASIS_RATE_LIMITS=$([ "$kind" = basis-create ] && echo off || echo on) RUST_LOG=warn \
        valgrind --tool=callgrind --log-file="$out.log" --callgrind-out-file="$out.cg" \
        "$BASIS" serve --listen "127.0.0.1:$SERVER_PORT" --data-dir "$out.data" >"$out.data/basis.log" 2>&1 &
      pid=$!; PIDS+=("$pid")
      wait_port "$SERVER_PORT" "$pid"
      curl -fs -o /dev/null --max-time 300 "http://127.0.0.1:$SERVER_PORT/readyz"
      if [ "$kind" = basis-redirect ]; then
        local code
        code=$(curl -fs "http://127.0.0.1:$SERVER_PORT/shorten" -H 'content-type: application/json' \
          -d '{"longUrl": "https://example.com/very/long/path/for/the/anchor"}' | jq -r .shortCode)
        url=http://127.0.0.1:$SERVER_PORT/$code
      else
        url=http://127.0.0.1:$SERVER_PORT/shorten expect=201
        export CREATE=1
      fi ;;
  esac
  drive "$n" "$expect" "$url"
  unset CREATE
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
  RUN_REFS=$(sed -n 's/.*refs: *//p' "$out.log" | tr -d ',')
  [ -n "$RUN_REFS" ] || { echo "error: no instruction count in $out.log" >&2; return 1; }
}

# server_measure <label> <kind>: instructions per request (sets PER_OP)
server_measure() {
  local a
  server_run "$1" "$REQ_N1" "$2"; a=$RUN_REFS
  server_run "$1" "$REQ_N2" "$2"
  PER_OP=$(((RUN_REFS - a) / (REQ_N2 - REQ_N1)))
}

# profile <label> <inclusive yes|no>: per-function instructions per request, the REQ_N1 run's
# counts taken from the REQ_N2 run's function by function (start-up cancels here too).
# callgrind splits a function by the source file of its inlined parts: its own costs are
# summed over them, its inclusive cost is the largest of them (they nest).
profile() {
  local label=$1 inclusive=$2
  annotate() {
    callgrind_annotate --auto=no --inclusive="$inclusive" --threshold=100 "$KEEP/$label-$1.cg" 2>/dev/null |
      awk -v inclusive="$inclusive" 'match($0, /^ *[0-9,]+ \( *[0-9.]+%\) +/) && !/PROGRAM TOTALS/ {
        n = $1; gsub(",", "", n); n += 0; f = substr($0, RLENGTH + 1)
        sub(/ \[[^]]*\]$/, "", f); sub(/ \([0-9,]+x\)$/, "", f); sub(/^[^:]*:/, "", f)
        if (inclusive == "no") cost[f] += n; else if (n > cost[f]) cost[f] = n }
        END { for (f in cost) print cost[f] "\t" f }'
  }
  awk -F'\t' -v requests=$((REQ_N2 - REQ_N1)) '
    FNR == NR { base[$2] = $1; next }
    { d = ($1 - base[$2]) / requests; if (d >= 1) printf "%10.0f  %s\n", d, $2 }' \
    <(annotate "$REQ_N1") <(annotate "$REQ_N2") | sort -rn | awk -v top="${PROFILE_TOP:-40}" 'NR <= top'
}

NGINX_PREFIX=$KEEP/nginx
nginx_prepare() { # one process (no master, no daemon) so that callgrind sees all of nginx's work
  command -v nginx >/dev/null || {
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >/dev/null
  }
  local conf=${NGINX_CONF:-}
  if [ -z "$conf" ]; then
    # A worktree may sit one level deeper than a plain clone (…/wt/<name> vs …/<name>).
    for dir in "$ROOT/.." "$ROOT/../.."; do
      [ -f "$dir/shared/bench/nginx-redirect.conf" ] && { conf=$dir/shared/bench/nginx-redirect.conf; break; }
    done
  fi
  [ -f "$conf" ] || { echo "error: nginx-redirect.conf not found; set NGINX_CONF" >&2; return 1; }
  mkdir -p "$NGINX_PREFIX/tmp"
  sed -e 's/^worker_processes .*/worker_processes 1;/' -e 's/^daemon on;/daemon off;\nmaster_process off;/' \
    "$conf" >"$NGINX_PREFIX/nginx-one-process.conf"
}

# A redirect of one cached link with the production middleware and the default rate-limit
# rules on, against nginx's `return 301` from a map; both over one keep-alive connection.
row_redirect() {
  nginx_prepare
  ensure_tools
  build_basis
  local ours
  server_measure basis-redirect basis-redirect; ours=$PER_OP
  server_measure nginx nginx
  report "redirect (one link, keep-alive)" "$ours" "nginx return 301" "$PER_OP"
  if [ -n "${PROFILE_OUT:-}" ]; then
    {
      echo "Instructions per redirect by function: callgrind, basis serve (SQLite, default rules on),"
      echo "the $REQ_N1-request run's counts taken from the $REQ_N2-request run's, divided by $((REQ_N2 - REQ_N1))."
      echo "Made by PROFILE_OUT=<this file> bench/instructions.sh redirect; commit $(git -C "$ROOT" rev-parse --short HEAD)."
      echo "Total: $ours instructions per redirect; nginx: $PER_OP."
      echo
      echo "== inclusive (the function and everything it calls) =="
      profile basis-redirect yes
      echo
      echo "== exclusive (the function's own instructions) =="
      profile basis-redirect no
    } >"$PROFILE_OUT"
  fi
}

# A create (POST /shorten, anonymous, a new URL each time) on SQLite, rate limits off (the
# default rules allow a client 30 creates a minute). No anchor runs the same operation.
row_create() {
  ensure_tools
  build_basis
  server_measure basis-create basis-create
  printf '%-34s %8d instr/op\n' "create (POST /shorten, SQLite)" "$PER_OP"
}

echo "instructions per operation (callgrind; rate-limit rows: $N2 - $N1 checks, queue row: ${QUEUE_N2:-12000} - ${QUEUE_N1:-2000} jobs, server rows: $REQ_N2 - $REQ_N1 requests); commit $(git -C "$ROOT" rev-parse --short HEAD)"
for row in "${@:-${ROWS[@]}}"; do "row_$row"; done
