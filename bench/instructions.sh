#!/usr/bin/env bash
# User-space instructions per operation, counted by valgrind's callgrind: a measure the
# machine's load cannot move, for seeing each gain. Each row runs its command at two
# operation counts and divides the difference, so start-up and warm-up cancel out.
#   bench/instructions.sh [row…]        (default: every row)
#     N1, N2        the two operation counts (default 20000 and 120000)
#     KEEP=dir      keep the callgrind files there (callgrind_annotate them for a profile)
# Prints one line per row: ours, the anchor's, and the ratio (ours / anchor).
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
ROWS=(ratelimit_keyed ratelimit_one_key queue_job)

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

echo "instructions per operation (callgrind; rate-limit rows: $N2 - $N1 checks, queue row: ${QUEUE_N2:-12000} - ${QUEUE_N1:-2000} jobs); commit $(git -C "$ROOT" rev-parse --short HEAD)"
for row in "${@:-${ROWS[@]}}"; do "row_$row"; done
