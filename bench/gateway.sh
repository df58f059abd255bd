#!/usr/bin/env bash
# The load balancer alone: `basis gateway`, HAProxy and nginx `proxy_pass` (upstream
# keep-alive), each in front of the same two static-answer backends (nginx `return 200`),
# measured with the same wrk settings in the same run, the order rotating every round.
#   bench/gateway.sh
#     ROUNDS=3         rounds; each runs every proxy once (the order rotates)
#     WRK_DURATION, WRK_CONNECTIONS, WRK_THREADS   the load (default 10s, 64, 1)
#     PROXY_THREADS=2  threads of each proxy (tokio workers, HAProxy nbthread, nginx workers)
#     ALGORITHM=round-robin   the gateway's algorithm (HAProxy and nginx use round robin)
#     WARMUP=3s        an unmeasured run against each proxy first
# Every line gives req/s, p50/p99, and the proxy's own CPU time per request (all its threads,
# from /proc); "added" latency is the proxy's minus the direct run against one backend.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
RESULTS=${RESULTS:-$BENCH_DIR/tmp/gateway.txt}
mkdir -p "$BENCH_DIR/tmp"; : >"$RESULTS"
ensure_tools
command -v haproxy >/dev/null || {
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy >/dev/null
}
build_basis
ROUNDS=${ROUNDS:-3}
PROXY_THREADS=${PROXY_THREADS:-2}
ALGORITHM=${ALGORITHM:-round-robin}
DATA=$(mktemp -d)
B1=18181 B2=18182 GW=18100 HA=18101 NG=18102

# The nginx proxy (the backends are started below, by static_backends in lib.sh).
mkdir -p "$DATA/proxy/logs"
cat >"$DATA/proxy/nginx.conf" <<CONF
worker_processes $PROXY_THREADS;
pid $DATA/proxy/nginx.pid;
error_log $DATA/proxy/logs/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 10000000;
  upstream backends { server 127.0.0.1:$B1; server 127.0.0.1:$B2; keepalive 128; }
  server {
    listen 127.0.0.1:$NG;
    location / {
      proxy_pass http://backends;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
    }
  }
}
CONF
cat >"$DATA/haproxy.cfg" <<CONF
global
  nbthread $PROXY_THREADS
  maxconn 4096
defaults
  mode http
  timeout connect 1s
  timeout client 30s
  timeout server 30s
  option http-keep-alive
  option forwardfor
  http-reuse always
frontend fe
  bind 127.0.0.1:$HA
  default_backend be
backend be
  balance roundrobin
  server a 127.0.0.1:$B1 check inter 1s
  server b 127.0.0.1:$B2 check inter 1s
CONF

stop_all() {
  stop_static_backends "$DATA/backends"
  nginx -p "$DATA/proxy" -c "$DATA/proxy/nginx.conf" -s quit 2>/dev/null || true
  cleanup
  rm -rf "$DATA"
}
trap stop_all EXIT

static_backends "$DATA/backends" "$B1" "$B2"
nginx -p "$DATA/proxy" -c "$DATA/proxy/nginx.conf"
haproxy -f "$DATA/haproxy.cfg" -q &
PIDS+=($!); HA_PID=$!
TOKIO_WORKER_THREADS=$PROXY_THREADS RUST_LOG=warn "$BASIS" gateway --listen "127.0.0.1:$GW" \
  --backend "http://127.0.0.1:$B1" --backend "http://127.0.0.1:$B2" --algorithm "$ALGORITHM" \
  >"$DATA/gateway.log" 2>&1 &
PIDS+=($!); GW_PID=$!
for url in "http://127.0.0.1:$B1/" "http://127.0.0.1:$NG/" "http://127.0.0.1:$HA/" "http://127.0.0.1:$GW/"; do
  wait_http "$url"
done
NG_PIDS="$(cat "$DATA/proxy/nginx.pid") $(pgrep -P "$(cat "$DATA/proxy/nginx.pid")" | tr '\n' ' ')"
HA_PIDS=$HA_PID  # one process, nbthread threads

echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); wrk -t$WRK_THREADS -c$WRK_CONNECTIONS -d$WRK_DURATION;" \
  "proxies with $PROXY_THREADS threads; gateway --algorithm $ALGORITHM; $(haproxy -v | head -1 | cut -d' ' -f1-3);" \
  "$(nginx -v 2>&1); commit $(git -C "$ROOT" rev-parse --short HEAD)" | tee -a "$RESULTS"
for port in $GW $HA $NG; do
  wrk -t"$WRK_THREADS" -c"$WRK_CONNECTIONS" -d"${WARMUP:-3s}" "http://127.0.0.1:$port/" >/dev/null
done

declare -A rps p50 p99 cpu
run_one() { # run_one <name>
  case $1 in
    direct) CPU_PIDS="" run_wrk "  direct to one backend" "http://127.0.0.1:$B1/" ;;
    gateway) CPU_PIDS=$GW_PID run_wrk "  basis gateway" "http://127.0.0.1:$GW/" ;;
    haproxy) CPU_PIDS=$HA_PIDS run_wrk "  haproxy" "http://127.0.0.1:$HA/" ;;
    nginx) CPU_PIDS=$NG_PIDS run_wrk "  nginx proxy_pass" "http://127.0.0.1:$NG/" ;;
  esac
  rps[$1]="${rps[$1]:-} $WRK_RPS"; p99[$1]="${p99[$1]:-} $WRK_P99"; cpu[$1]="${cpu[$1]:-} ${WRK_CPU_US:-0}"
}
order=(gateway haproxy nginx)
for round in $(seq 1 "$ROUNDS"); do
  echo "round $round (load $(cut -d' ' -f1 /proc/loadavg))" | tee -a "$RESULTS"
  run_one direct
  for name in "${order[@]}"; do run_one "$name"; done
  order=("${order[@]:1}" "${order[0]}")
done

# shellcheck disable=SC2086
{
  echo "medians over $ROUNDS rounds:"
  d99=$(median ${p99[direct]})
  for name in gateway haproxy nginx; do
    printf '  %-8s %10.0f req/s  p99 %7.3f ms (added %6.3f ms)  CPU %6.2f µs/req\n' "$name" \
      "$(median ${rps[$name]})" "$(median ${p99[$name]})" \
      "$(awk -v a="$(median ${p99[$name]})" -v d="$d99" 'BEGIN {print a - d}')" "$(median ${cpu[$name]})"
  done
  g=$(median ${rps[gateway]})
  echo "  gateway/haproxy req/s: $(awk -v g="$g" -v h="$(median ${rps[haproxy]})" 'BEGIN {printf "%.3f", g / h}');" \
    "gateway/nginx req/s: $(awk -v g="$g" -v n="$(median ${rps[nginx]})" 'BEGIN {printf "%.3f", g / n}');" \
    "load average at the end $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee -a "$RESULTS"
