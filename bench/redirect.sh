#!/usr/bin/env bash
# Redirect throughput and latency: Basis beside nginx answering `return 301` from a map, with
# the same wrk settings in the same run; then the cache configurations side by side.
#   bench/redirect.sh
#     PAIRS=5          nginx/basis runs, alternated (the order flips every pair)
#     WRK_DURATION, WRK_CONNECTIONS, WRK_THREADS   the load (default 10s, 64, 1)
#     NGINX_WORKERS    nginx worker processes (default: the config's, `auto` = one per core)
#     TOKIO_WORKER_THREADS   basis's runtime threads (default: one per core)
#     TIERS=0          skip the cache-tier rows
#     WARMUP=5s        an unmeasured run against each server before the pairs
#     NGINX_CONF       the anchor's config (default: shared/bench/nginx-redirect.conf, looked
#                      for beside the repository and beside its parent directory)
#     REDIS_URL        default redis://127.0.0.1:6379, for the L2 rows
set -euo pipefail
. "$(dirname "$0")/lib.sh"
RESULTS=${RESULTS:-$BENCH_DIR/tmp/redirect.txt}
mkdir -p "$BENCH_DIR/tmp"; : >"$RESULTS"
ensure_tools
build_basis
REDIS=${REDIS_URL:-redis://127.0.0.1:6379}
PAIRS=${PAIRS:-5}

if [ -z "${NGINX_CONF:-}" ]; then
  # A worktree may sit one level deeper than a plain clone (…/wt/<name> vs …/<name>).
  for dir in "$ROOT/.." "$ROOT/../.."; do
    if [ -f "$dir/shared/bench/nginx-redirect.conf" ]; then
      NGINX_CONF=$(cd "$dir/shared/bench" && pwd)/nginx-redirect.conf
      break
    fi
  done
fi
[ -f "${NGINX_CONF:-}" ] || { echo "error: nginx-redirect.conf not found; set NGINX_CONF" >&2; exit 1; }
NGINX_PREFIX=$BENCH_DIR/tmp/nginx
mkdir -p "$NGINX_PREFIX/tmp"
conf=$NGINX_CONF
if [ -n "${NGINX_WORKERS:-}" ]; then
  conf=$NGINX_PREFIX/nginx-redirect.conf
  sed "s/^worker_processes .*/worker_processes $NGINX_WORKERS;/" "$NGINX_CONF" >"$conf"
fi
nginx -p "$NGINX_PREFIX" -c "$conf"
trap 'nginx -p "$NGINX_PREFIX" -c "$conf" -s quit 2>/dev/null || true; cleanup' EXIT
for _ in $(seq 1 100); do
  [ "$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:18080/abc123)" = 301 ] && break
  sleep 0.1
done
for _ in $(seq 1 50); do [ -s "$NGINX_PREFIX/nginx.pid" ] && break; sleep 0.1; done
NGINX_PIDS="$(cat "$NGINX_PREFIX/nginx.pid") $(pgrep -P "$(cat "$NGINX_PREFIX/nginx.pid")" | tr '\n' ' ')"

echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); wrk -t$WRK_THREADS -c$WRK_CONNECTIONS -d$WRK_DURATION;" \
  "nginx workers: $(($(wc -w <<<"$NGINX_PIDS") - 1)); basis runtime threads: ${TOKIO_WORKER_THREADS:-$(nproc)}; commit $(git -C "$ROOT" rev-parse --short HEAD)" | tee -a "$RESULTS"
DATA=$(mktemp -d)

# make_links <n>: n links, their paths written as a wrk script picking one at random
make_links() {
  local script=$DATA/paths-$BASIS_PID.lua
  {
    echo "local paths = {"
    for i in $(seq 1 "$1"); do
      printf '"/%s",\n' "$(shorten "{\"longUrl\": \"https://example.com/spread/$i\"}")"
    done
    echo "}"
    echo 'request = function() return wrk.format(nil, paths[math.random(#paths)]) end'
  } >"$script"
  echo "$script"
}

# The anchor and the hot path, alternated. Each line also gives the server's own CPU time
# per request (from /proc), which moves less with the machine's load than requests/s.
# Basis runs with its default rate-limit rules on, as in production: no rule limits
# redirects, but every request is matched against them.
BASIS_RATE_LIMITS=on start_basis "$DATA/hot"
code=$(shorten '{"longUrl": "https://example.com/very/long/path/for/the/anchor"}')
# Warm both servers up, unmeasured, so that no pair pays for a cold start (the allocator
# growing its pools, caches and metric handles filling, the first connections' setup).
wrk -t"$WRK_THREADS" -c"$WRK_CONNECTIONS" -d"${WARMUP:-5s}" http://127.0.0.1:18080/abc123 >/dev/null
wrk -t"$WRK_THREADS" -c"$WRK_CONNECTIONS" -d"${WARMUP:-5s}" "http://127.0.0.1:$BASIS_PORT/$code" >/dev/null
ratios=() p99s=() cpu_ratios=()
for pair in $(seq 1 "$PAIRS"); do
  echo "pair $pair (load $(cut -d' ' -f1 /proc/loadavg))" | tee -a "$RESULTS"
  run_nginx() { CPU_PIDS=$NGINX_PIDS run_wrk "  nginx return 301 (anchor)" http://127.0.0.1:18080/abc123; n_rps=$WRK_RPS; n_cpu=$WRK_CPU_US; }
  run_basis() { CPU_PIDS=$BASIS_PID run_wrk "  basis, one hot link (L1)" "http://127.0.0.1:$BASIS_PORT/$code"; b_rps=$WRK_RPS; b_cpu=$WRK_CPU_US; b_p99=$WRK_P99; }
  if [ $((pair % 2)) = 1 ]; then run_nginx; run_basis; else run_basis; run_nginx; fi
  ratio=$(awk -v b="$b_rps" -v n="$n_rps" 'BEGIN {printf "%.3f", b / n}')
  cpu_ratio=$(awk -v b="$b_cpu" -v n="$n_cpu" 'BEGIN {printf "%.3f", n / b}')
  ratios+=("$ratio"); p99s+=("$b_p99"); cpu_ratios+=("$cpu_ratio")
  echo "  ratio basis/nginx: $ratio req/s; nginx CPU per request / basis CPU per request: $cpu_ratio" | tee -a "$RESULTS"
done
echo "median of $PAIRS pairs: $(median "${ratios[@]}")× nginx req/s (pairs: ${ratios[*]});" \
  "basis p99 median $(median "${p99s[@]}") ms, worst $(printf '%s\n' "${p99s[@]}" | sort -g | tail -1) ms;" \
  "CPU-per-request ratio median $(median "${cpu_ratios[@]}")" | tee -a "$RESULTS"
stop_basis
[ "${TIERS:-1}" = 0 ] && { rm -rf "$DATA"; exit 0; }

# The spread rows create 2,000 links first, more than the link-creation rule allows a
# client, so these instances run with the rules off.
start_basis "$DATA/l1"
spread=$(make_links 2000)
run_wrk "basis, 2,000 links at random (L1)" "http://127.0.0.1:$BASIS_PORT/" "$spread"
stop_basis

# Cache configurations, same 2,000-link spread: L1 off forces every lookup to the next tier.
start_basis "$DATA/l2" --link-cache-mb 0 --redis-url "$REDIS"
spread=$(make_links 2000)
run_wrk "basis, 2,000 links, Redis L2 only" "http://127.0.0.1:$BASIS_PORT/" "$spread"
stop_basis
start_basis "$DATA/l1l2" --redis-url "$REDIS"
spread=$(make_links 2000)
run_wrk "basis, 2,000 links, L1 + Redis L2" "http://127.0.0.1:$BASIS_PORT/" "$spread"
stop_basis
start_basis "$DATA/none" --link-cache-mb 0
spread=$(make_links 2000)
run_wrk "basis, 2,000 links, no cache (SQLite)" "http://127.0.0.1:$BASIS_PORT/" "$spread"
stop_basis
rm -rf "$DATA"
