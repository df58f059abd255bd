# Sourced by the scripts that test a running server (browser-test, schemathesis.sh,
# sqlmap.sh): the binary to run, and one `basis serve` on a free loopback port with a
# temporary data dir.
#
#   basis_binary                 sets BASIS: $BASIS_BIN, or a debug build made here
#   start_basis [serve flags]    sets DATA, BASE and SERVER; waits up to 20 s for /healthz
#   stop_basis                   stops it (SIGTERM) and removes its data dir
#
# Environment for the server (BASIS_RATE_LIMITS=off, say) is passed as usual:
# `BASIS_RATE_LIMITS=off start_basis`. Its log is $DATA/basis.log.

basis_binary() {
  # BASIS_BIN=path tests a binary built elsewhere instead of building one.
  if [ -z "${BASIS_BIN:-}" ]; then
    cargo build -q -p basis
    BASIS_BIN=${CARGO_TARGET_DIR:-target}/debug/basis
  fi
  BASIS=$(realpath "$BASIS_BIN")
}

SERVER=""
DATA=""

start_basis() {
  DATA=$(mktemp -d)
  local port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
  BASE=http://127.0.0.1:$port
  RUST_LOG=${RUST_LOG:-warn} "$BASIS" serve --listen "127.0.0.1:$port" --data-dir "$DATA" "$@" \
    >"$DATA/basis.log" 2>&1 &
  SERVER=$!
  for _ in $(seq 1 100); do # up to 20 s for the server to answer
    curl -fs -o /dev/null "$BASE/healthz" && return 0
    sleep 0.2
  done
  cat "$DATA/basis.log" >&2
  return 1
}

stop_basis() {
  if [ -n "$SERVER" ]; then
    kill -TERM "$SERVER" 2>/dev/null || true
    wait "$SERVER" 2>/dev/null || true
  fi
  [ -z "$DATA" ] || rm -rf "$DATA"
  SERVER=""
  DATA=""
}
