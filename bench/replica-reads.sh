#!/usr/bin/env bash
# Read throughput with 0, 1 and 2 streaming replicas, on lookups that reach PostgreSQL every
# time: a private primary and two replicas (pg_basebackup), one `basis serve` (release build)
# on the primary, restarted with 0, then 1, then 2 `--database-replica-url`, and wrk on
# `GET /links/{code}` of anonymous links chosen at random.
#
# Why that endpoint: a redirect (`GET /{code}`) is answered from the link cache after the
# first lookup, so its load never reaches the database. `GET /links/{code}` (the link's
# metadata and click count) is not cached: each request runs three reads (the link with its
# stored clicks, its tags, its title) through the store's read routing. An anonymous caller
# has no read-your-writes floor, so its reads may all go to replicas.
#
# Reported per configuration: requests/s and p99 (median of ROUNDS runs), the load average,
# where reads went (basis_db_reads_total from /metrics, and each server's own count of
# committed transactions from pg_stat_database), and the CPU each PostgreSQL instance spent.
#
# Usage: bench/replica-reads.sh            (ROUNDS=3 runs of WRK_DURATION=10s per configuration)
#   BENCH_PG_PORT (default 7501): the primary's port; the replicas take the next two.
#   LINKS (default 500) anonymous links to read; WRK_CONNECTIONS (default 64), WRK_THREADS (1).
#   BASIS_BIN: a binary built elsewhere (else `cargo build --release -p basis` here).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

ROUNDS=${ROUNDS:-3}
LINKS=${LINKS:-500}
PG_PORT=${BENCH_PG_PORT:-7501}
PG_BIN=${PG_BIN:-$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -n1)}
[ -x "$PG_BIN/initdb" ] || { echo "error: no PostgreSQL server binaries (PG_BIN=$PG_BIN)" >&2; exit 1; }
for port in "$PG_PORT" $((PG_PORT + 1)) $((PG_PORT + 2)) "$BASIS_PORT"; do
  if ss -Htln | awk '{print $4}' | grep -q ":$port\$"; then
    echo "error: port $port is in use; set BENCH_PG_PORT / BASIS_PORT" >&2
    exit 1
  fi
done
command -v wrk >/dev/null || {
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
}
command -v jq >/dev/null || {
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq jq >/dev/null
}
build_basis
RESULTS=${RESULTS:-$BENCH_DIR/tmp/replica-reads.txt} # every wrk run (lib.sh's run_wrk)
mkdir -p "$(dirname "$RESULTS")"
: >"$RESULTS"

WORK=$(mktemp -d /tmp/basis-replica-bench-XXXXXX)
AS_POSTGRES=()
if [ "$(id -u)" -eq 0 ]; then
  AS_POSTGRES=(setpriv --reuid=postgres --regid=postgres --init-groups --)
  chown postgres: "$WORK"
fi
NAMES=(primary replica1 replica2)
pg() { # pg <program> [args…]: a PostgreSQL server program, as postgres when run as root
  local program=$1
  shift
  "${AS_POSTGRES[@]}" "$PG_BIN/$program" "$@"
}

finish() {
  cleanup # lib.sh: the basis server
  local name
  for name in "${NAMES[@]}"; do
    [ -f "$WORK/$name/postmaster.pid" ] && pg pg_ctl -D "$WORK/$name" -m immediate -w stop >/dev/null 2>&1
  done
  rm -rf "$WORK"
}
trap finish EXIT

start_pg() { # start_pg <name> <port>: pg_ctl -w polls until it accepts connections (≤ 60 s)
  pg pg_ctl -D "$WORK/$1" -l "$WORK/$1.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $2 -k $WORK -c fsync=off -c max_connections=100" \
    start >/dev/null || { tail -n 20 "$WORK/$1.log" >&2; return 1; }
}

echo "PostgreSQL: a primary on $PG_PORT, replicas on $((PG_PORT + 1)) and $((PG_PORT + 2)) (pg_basebackup)"
pg initdb -D "$WORK/primary" -U postgres --auth=trust -E UTF8 >/dev/null
start_pg primary "$PG_PORT"
psql -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -c "CREATE DATABASE basis" >/dev/null
for n in 1 2; do
  pg pg_basebackup -h 127.0.0.1 -p "$PG_PORT" -U postgres -D "$WORK/replica$n" -R -X stream \
    -C -S "replica$n"
  start_pg "replica$n" $((PG_PORT + n))
done
DB=postgres://postgres@127.0.0.1:$PG_PORT/basis
REPLICA_URLS=("postgres://postgres@127.0.0.1:$((PG_PORT + 1))/basis" "postgres://postgres@127.0.0.1:$((PG_PORT + 2))/basis")

# The links, made once through the API (the first start migrates the database).
start_basis "$WORK/basis" --database-url "$DB"
: >"$WORK/codes.txt"
for i in $(seq 1 "$LINKS"); do
  printf '{"longUrl":"https://example.com/read/%d"}\n' "$i"
done | xargs -d '\n' -P 8 -I{} curl -fsS "http://127.0.0.1:$BASIS_PORT/shorten" \
  -H 'content-type: application/json' -d {} | jq -r .shortCode >>"$WORK/codes.txt"
[ "$(wc -l <"$WORK/codes.txt")" -eq "$LINKS" ] || { echo "error: not every link was created" >&2; exit 1; }
code=$(head -n1 "$WORK/codes.txt")
curl -fs -o /dev/null "http://127.0.0.1:$BASIS_PORT/links/$code" ||
  { echo "error: GET /links/$code does not answer 200 to an anonymous caller" >&2; exit 1; }
stop_basis

cat >"$WORK/read.lua" <<EOF
local codes = {}
for line in io.lines("$WORK/codes.txt") do codes[#codes + 1] = line end
math.randomseed(os.time())
request = function()
  return wrk.format("GET", "/links/" .. codes[math.random(#codes)])
end
EOF

# pg_ticks <name>: CPU clock ticks used so far by that PostgreSQL instance: its postmaster,
# the children it has reaped (cutime, cstime) and the living ones (backends, WAL sender or
# receiver, startup), so a process ending during the run still counts.
pg_ticks() {
  local postmaster children=0 pid
  postmaster=$(head -n1 "$WORK/$1/postmaster.pid")
  for pid in $(ps -o pid= --ppid "$postmaster"); do
    # A child may end between ps and this read; it is then in the postmaster's cutime.
    children=$((children + $(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | awk '{t = $12 + $13} END {print t + 0}')))
  done
  # Fields 14-17 of /proc/<pid>/stat (utime, stime, cutime, cstime), counted after the ")".
  echo $((children + $(sed 's/.*) //' "/proc/$postmaster/stat" | awk '{print $12 + $13 + $14 + $15}')))
}
# commits <port>: transactions committed in the database so far, as that server counts them.
commits() {
  psql -Atq -h 127.0.0.1 -p "$1" -U postgres -d basis \
    -c "SELECT pg_stat_force_next_flush(); SELECT xact_commit FROM pg_stat_database WHERE datname = 'basis'" | tail -n1
}
reads() { # reads <target>: basis_db_reads_total{target} from /metrics (0 when absent)
  curl -fs "http://127.0.0.1:$BASIS_PORT/metrics" |
    awk -v t="target=\"$1\"" 'index($0, "basis_db_reads_total{") == 1 && index($0, t) {s += $NF} END {print s + 0}'
}

HZ=$(getconf CLK_TCK)
SUMMARY=$WORK/summary.txt
for replicas in 0 1 2; do
  flags=(--database-url "$DB")
  for n in $(seq 1 "$replicas"); do flags+=(--database-replica-url "${REPLICA_URLS[$((n - 1))]}"); done
  start_basis "$WORK/basis" "${flags[@]}"
  # Every replica given is in rotation before the load starts.
  for _ in $(seq 1 100); do
    ready=$(curl -fs "http://127.0.0.1:$BASIS_PORT/readyz" || echo '{}')
    [ "$(jq '[.replicas[]? | select(.inRotation)] | length' <<<"$ready")" -eq "$replicas" ] && break
    sleep 0.1
  done
  [ "$(jq '[.replicas[]? | select(.inRotation)] | length' <<<"$ready")" -eq "$replicas" ] ||
    { echo "error: the replicas did not join the rotation: $ready" >&2; exit 1; }
  WRK_DURATION=2s run_wrk "warm-up, $replicas replica(s)" "http://127.0.0.1:$BASIS_PORT/" "$WORK/read.lua" >/dev/null
  before_primary=$(reads primary) before_replica=$(reads replica)
  before_commits=() before_ticks=()
  for n in 0 1 2; do
    before_commits+=("$(commits $((PG_PORT + n)))")
    before_ticks+=("$(pg_ticks "${NAMES[$n]}")")
  done
  rps=() p99=()
  for round in $(seq 1 "$ROUNDS"); do
    run_wrk "$replicas replica(s), round $round" "http://127.0.0.1:$BASIS_PORT/" "$WORK/read.lua"
    rps+=("$WRK_RPS")
    p99+=("$WRK_P99")
  done
  load=$(cut -d' ' -f1-3 /proc/loadavg)
  reads_seen="primary $(($(reads primary) - before_primary)) replica $(($(reads replica) - before_replica))"
  # Without replicas the store does not route reads, so it counts none: all go to the primary.
  [ "$replicas" -gt 0 ] || reads_seen="not counted (no routing: all on the primary)"
  after_ticks=()
  for n in 0 1 2; do after_ticks+=("$(pg_ticks "${NAMES[$n]}")"); done
  stop_basis # its connections close, and their backends write their statistics as they exit
  where=""
  for n in 0 1 2; do
    txs=$(($(commits $((PG_PORT + n))) - before_commits[n]))
    cpu=$(awk -v t=$((after_ticks[n] - before_ticks[n])) -v hz="$HZ" 'BEGIN {printf "%.1f", t / hz}')
    where+=" ${NAMES[$n]} ${txs} tx / ${cpu} s CPU;"
  done
  printf '%s replica(s): %s req/s (median of %s), p99 %s ms; load %s; basis_db_reads_total %s;%s\n' \
    "$replicas" "$(median "${rps[@]}")" "$ROUNDS" "$(median "${p99[@]}")" "$load" \
    "$reads_seen" "$where" | tee -a "$SUMMARY"
done
echo
echo "summary ($(nproc) cores; wrk -t$WRK_THREADS -c$WRK_CONNECTIONS -d$WRK_DURATION, $LINKS links):"
cat "$SUMMARY"
