# Shared helpers of the load benchmarks. Source it from a bench script.
# Everything targets 127.0.0.1 and every run is bounded in time. Rate limits are off
# (BASIS_RATE_LIMITS=off) unless the caller sets it: one wrk client would hit every rule.

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
# BASIS_BIN=path runs a binary built elsewhere (an older commit, say) instead of building.
BASIS=${BASIS_BIN:-$TARGET_DIR/release/basis}
WRK_THREADS=${WRK_THREADS:-1}
WRK_CONNECTIONS=${WRK_CONNECTIONS:-64}
WRK_DURATION=${WRK_DURATION:-10s}
BASIS_PORT=${BASIS_PORT:-18090}
PIDS=()

cleanup() {
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT

ensure_tools() { # installs wrk and nginx from Debian's packages when missing
  local missing=()
  command -v wrk >/dev/null || missing+=(wrk)
  command -v nginx >/dev/null || missing+=(nginx-light)
  command -v jq >/dev/null || missing+=(jq)
  command -v sqlite3 >/dev/null || missing+=(sqlite3)
  command -v psql >/dev/null || missing+=(postgresql-client)
  if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

build_basis() {
  [ -n "${BASIS_BIN:-}" ] || (cd "$ROOT" && cargo build --release -p basis >/dev/null)
}

wait_http() { # wait_http <url>: up to 30 s for a 2xx
  for _ in $(seq 1 300); do
    curl -fs -o /dev/null "$1" && return 0
    sleep 0.1
  done
  echo "error: $1 did not answer" >&2
  return 1
}

start_basis() { # start_basis <data-dir> [extra serve flags…]; environment passes through
  local dir=$1; shift
  mkdir -p "$dir"
  BASIS_RATE_LIMITS=${BASIS_RATE_LIMITS:-off} RUST_LOG=${RUST_LOG:-warn} "$BASIS" serve --listen "127.0.0.1:$BASIS_PORT" --data-dir "$dir" "$@" \
    >"$dir/basis.log" 2>&1 &
  PIDS+=($!)
  BASIS_PID=$!
  wait_http "http://127.0.0.1:$BASIS_PORT/healthz"
}

stop_basis() {
  kill -TERM "$BASIS_PID" 2>/dev/null || true
  wait "$BASIS_PID" 2>/dev/null || true
}

shorten() { # shorten <json body> → prints the short code
  curl -fs "http://127.0.0.1:$BASIS_PORT/shorten" -H 'content-type: application/json' -d "$1" | jq -r .shortCode
}

# cpu_ticks <pid>…: user + system clock ticks used so far by these processes (all threads)
cpu_ticks() {
  local total=0 pid
  for pid in "$@"; do
    # Fields 14 and 15 of /proc/<pid>/stat, counted after the ")" that ends the command name.
    total=$((total + $(sed 's/.*) //' "/proc/$pid/stat" | awk '{print $12 + $13}')))
  done
  echo "$total"
}

# run_wrk <label> <url> [lua script]: prints "label rps p50_ms p99_ms" and appends it to
# $RESULTS. With CPU_PIDS set, also the CPU time those processes spent per request. Leaves
# the figures in WRK_RPS, WRK_P99 (ms), WRK_CPU_US.
run_wrk() {
  local label=$1 url=$2 script=${3:-}
  local args=(-t"$WRK_THREADS" -c"$WRK_CONNECTIONS" -d"$WRK_DURATION" --latency)
  [ -n "$script" ] && args+=(-s "$script")
  local out before=0 after=0
  # shellcheck disable=SC2086
  [ -n "${CPU_PIDS:-}" ] && before=$(cpu_ticks $CPU_PIDS)
  out=$(wrk "${args[@]}" "$url")
  # shellcheck disable=SC2086
  [ -n "${CPU_PIDS:-}" ] && after=$(cpu_ticks $CPU_PIDS)
  local rps p50 p99 non2xx requests
  rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  non2xx=$(awk '/Non-2xx or 3xx/ {print $5}' <<<"$out")
  requests=$(awk '/requests in/ {print $1}' <<<"$out")
  WRK_RPS=$rps
  WRK_P99=$(to_ms "$p99")
  WRK_CPU_US=
  [ -n "${CPU_PIDS:-}" ] && WRK_CPU_US=$(awk -v t=$((after - before)) -v hz="$(getconf CLK_TCK)" -v n="$requests" \
    'BEGIN {printf "%.2f", t / hz * 1e6 / n}')
  printf '%-40s %12s req/s   p50 %-9s p99 %-9s %s%s\n' "$label" "$rps" "$p50" "$p99" \
    "${WRK_CPU_US:+server CPU ${WRK_CPU_US} µs/req  }" "${non2xx:+non-2xx/3xx: $non2xx}" | tee -a "$RESULTS"
}

to_ms() { # wrk's "812.00us" / "1.20ms" / "2.01s" → milliseconds
  awk -v v="$1" 'BEGIN {
    if (v ~ /us$/) { sub(/us$/, "", v); printf "%.3f", v / 1000 }
    else if (v ~ /ms$/) { sub(/ms$/, "", v); printf "%.3f", v }
    else if (v ~ /s$/) { sub(/s$/, "", v); printf "%.3f", v * 1000 }
    else print v }'
}

median() { # median of the numbers given as arguments
  printf '%s\n' "$@" | sort -g | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'
}

# static_backends <dir> <port> <port>: one nginx worker answering `return 200` on both
# ports, keep-alive without a request cap (what a proxy is measured in front of); its
# files go under <dir>. stop_static_backends <dir> stops it.
static_backends() {
  local dir=$1
  mkdir -p "$dir/logs"
  cat >"$dir/nginx.conf" <<CONF
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/logs/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 10000000;
  server {
    listen 127.0.0.1:$2; listen 127.0.0.1:$3;
    location / { return 200 "ok\n"; }
  }
}
CONF
  nginx -p "$dir" -c "$dir/nginx.conf"
}

stop_static_backends() {
  nginx -p "$1" -c "$1/nginx.conf" -s quit 2>/dev/null || true
}
