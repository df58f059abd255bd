#!/usr/bin/env bash
# Redirect throughput and latency: Basis beside nginx answering `return 301` from a map, with
# the same wrk settings in the same run; then the cache configurations side by side.
#   bench/redirect.sh            (WRK_DURATION, WRK_CONNECTIONS, WRK_THREADS change the load;
#                                 REDIS_URL, default redis://127.0.0.1:6379, for the L2 rows)
set -euo pipefail
. "$(dirname "$0")/lib.sh"
RESULTS=${RESULTS:-$BENCH_DIR/tmp/redirect.txt}
mkdir -p "$BENCH_DIR/tmp"; : >"$RESULTS"
ensure_tools
build_basis
REDIS=${REDIS_URL:-redis://127.0.0.1:6379}

NGINX_CONF=${NGINX_CONF:-$ROOT/../shared/bench/nginx-redirect.conf}
NGINX_PREFIX=$BENCH_DIR/tmp/nginx
mkdir -p "$NGINX_PREFIX/tmp"
nginx -p "$NGINX_PREFIX" -c "$NGINX_CONF"
trap 'nginx -p "$NGINX_PREFIX" -c "$NGINX_CONF" -s quit 2>/dev/null || true; cleanup' EXIT
for _ in $(seq 1 100); do
  [ "$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:18080/abc123)" = 301 ] && break
  sleep 0.1
done

echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); wrk -t$WRK_THREADS -c$WRK_CONNECTIONS -d$WRK_DURATION" | tee -a "$RESULTS"
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

# The anchor and the hot path, back to back.
start_basis "$DATA/hot"
code=$(shorten '{"longUrl": "https://example.com/very/long/path/for/the/anchor"}')
run_wrk "nginx return 301 (anchor)" http://127.0.0.1:18080/abc123
run_wrk "basis, one hot link (L1)" "http://127.0.0.1:$BASIS_PORT/$code"
run_wrk "nginx return 301 (anchor, again)" http://127.0.0.1:18080/abc123
run_wrk "basis, one hot link (L1, again)" "http://127.0.0.1:$BASIS_PORT/$code"
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
