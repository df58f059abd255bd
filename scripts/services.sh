#!/usr/bin/env bash
# Starts each local service the engine suites use if it is not answering, and exports the
# URLs the suites read. Source it: `. scripts/services.sh`.
# Each wait is a bounded loop on a real readiness check, never a fixed sleep.

wait_for() { # wait_for <what> <command…>: up to 60 s
  local what=$1; shift
  for _ in $(seq 1 120); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.5
  done
  echo "error: $what did not become ready" >&2
  return 1
}

ensure_postgres() {
  if ! pg_isready -h 127.0.0.1 -p 5432 >/dev/null 2>&1; then
    echo "starting PostgreSQL"
    if ! command -v pg_ctlcluster >/dev/null; then
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    fi
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start
    wait_for PostgreSQL pg_isready -h 127.0.0.1 -p 5432
  fi
  export BASIS_TEST_POSTGRES_URL=${BASIS_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}
  # Test databases are named basis_test_<random>; drop what earlier runs left behind. Only
  # those created over an hour ago: a run going on beside this one may be between two
  # connections to a database it still needs (a server restart in a process test).
  psql "$BASIS_TEST_POSTGRES_URL" -Atqc "SELECT datname FROM pg_database
      WHERE datname LIKE 'basis\_test\_%'
        AND (pg_stat_file('base/' || oid || '/PG_VERSION')).modification < now() - interval '1 hour'" 2>/dev/null |
    while read -r db; do psql "$BASIS_TEST_POSTGRES_URL" -qc "DROP DATABASE IF EXISTS \"$db\"" >/dev/null 2>&1 || true; done
}

ensure_redis() {
  if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
    echo "starting Redis"
    if ! command -v redis-server >/dev/null; then
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
    fi
    mkdir -p /var/lib/redis /var/log/redis
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
      --dir /var/lib/redis --logfile /var/log/redis/ci.log
    wait_for Redis redis-cli -h 127.0.0.1 -p 6379 ping
  fi
  export BASIS_TEST_REDIS_URL=${BASIS_TEST_REDIS_URL:-redis://127.0.0.1:6379}
}

ensure_rabbitmq() { # the RabbitMQ queue backend's suite (quorum queues need 3.8+; 3.10 for TTLs)
  if ! rabbitmq-diagnostics -q check_port_connectivity >/dev/null 2>&1; then
    echo "starting RabbitMQ"
    if ! command -v rabbitmq-server >/dev/null; then
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rabbitmq-server >/dev/null
    fi
    rabbitmq-server -detached
    # Ready means the node booted and its AMQP listener accepts connections.
    wait_for RabbitMQ rabbitmq-diagnostics -q check_port_connectivity
  fi
  export BASIS_TEST_AMQP_URL=${BASIS_TEST_AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}
  # Tests declare under basis-test-<random> or basis_test_<random>; drop what earlier runs left.
  # A delete can hang (seen on a key queue left by a killed test), so each is bounded.
  # (`|| true`: finding none is the usual case, and pipefail would make it an error.)
  { rabbitmqctl -q list_queues --no-table-headers name 2>/dev/null || true; } |
    { grep -E '^basis[-_]test[-_]' || true; } |
    while read -r q; do timeout 20 rabbitmqctl -q delete_queue "$q" </dev/null >/dev/null 2>&1 || true; done
}

ensure_node() { # the OpenID Connect tests run a real provider (npm package oidc-provider)
  if ! command -v npm >/dev/null; then
    echo "installing Node.js"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
  fi
  local dir
  dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/crates/server/tests/oidc
  if [ ! -d "$dir/node_modules/oidc-provider" ]; then
    npm ci --prefix "$dir" --no-audit --no-fund --loglevel=error >/dev/null
  fi
}

ensure_patroni() { # the failover test starts a Patroni cluster of its own (scripts/pg-cluster)
  "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/pg-cluster" install
}

ensure_postgres
ensure_patroni
ensure_redis
ensure_rabbitmq
ensure_node
