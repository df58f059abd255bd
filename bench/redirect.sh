#!/usr/bin/env bash
# Redirect throughput and latency: Basis beside nginx answering `return 301` from a map, with
# the same wrk settings in the same run.
#   bench/redirect.sh            (WRK_DURATION, WRK_CONNECTIONS, WRK_THREADS to change the load)
set -euo pipefail
. "$(dirname "$0")/lib.sh"
RESULTS=${RESULTS:-$BENCH_DIR/tmp/redirect.txt}
mkdir -p "$BENCH_DIR/tmp"; : >"$RESULTS"
ensure_tools
build_basis

NGINX_CONF=${NGINX_CONF:-$ROOT/../shared/bench/nginx-redirect.conf}
NGINX_PREFIX=$BENCH_DIR/tmp/nginx
mkdir -p "$NGINX_PREFIX/tmp"
nginx -p "$NGINX_PREFIX" -c "$NGINX_CONF"
trap 'nginx -p "$NGINX_PREFIX" -c "$NGINX_CONF" -s quit 2>/dev/null || true; cleanup' EXIT
wait_http_code() { for _ in $(seq 1 100); do [ "$(curl -s -o /dev/null -w '%{http_code}' "$1")" = "$2" ] && return 0; sleep 0.1; done; return 1; }
wait_http_code http://127.0.0.1:18080/abc123 301

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo); wrk -t$WRK_THREADS -c$WRK_CONNECTIONS -d$WRK_DURATION" | tee -a "$RESULTS"
run_wrk "nginx return 301 (anchor)" http://127.0.0.1:18080/abc123

DATA=$(mktemp -d)
start_basis "$DATA/sqlite"
code=$(shorten '{"longUrl": "https://example.com/very/long/path/for/the/anchor"}')
curl -fs -o /dev/null -w '' "http://127.0.0.1:$BASIS_PORT/$code" || true
run_wrk "basis one hot cached link (sqlite)" "http://127.0.0.1:$BASIS_PORT/$code"

# The same load spread over 10,000 links, every one cached after its first hit.
paths=$DATA/paths.lua
{
  echo "local paths = {"
  for i in $(seq 1 10000); do
    printf '"/%s",\n' "$(shorten "{\"longUrl\": \"https://example.com/spread/$i\"}")"
  done
  echo "}"
  echo 'request = function() return wrk.format(nil, paths[math.random(#paths)]) end'
} >"$paths"
run_wrk "basis 10k links, random (sqlite)" "http://127.0.0.1:$BASIS_PORT/" "$paths"
clicks=$(curl -fs "http://127.0.0.1:$BASIS_PORT/links/$code" | jq .clickCount)
echo "bot-classified clicks are not in clickCount; stats devices for the hot link:" \
  "$(curl -fs "http://127.0.0.1:$BASIS_PORT/links/$code/stats" | jq -c .devices) clickCount=$clicks" | tee -a "$RESULTS"
stop_basis
rm -rf "$DATA"
