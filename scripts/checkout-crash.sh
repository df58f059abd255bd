#!/usr/bin/env bash
# The checkout crash drill, long form: 200 concurrent checkouts over 10 products with tight
# stock, 3 workers killed with SIGKILL at random, the payment simulator failing 20 % of
# calls (and answering 5 % after the client gave up); then the checker (see
# crates/basis/tests/checkout_crash.rs). `cargo test` runs the short form (30 orders).
# Needs PostgreSQL: `. scripts/services.sh` first, or BASIS_TEST_POSTGRES_URL.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${BASIS_TEST_POSTGRES_URL:-}" ] && [ -f scripts/services.sh ]; then . scripts/services.sh; fi
rounds=${ROUNDS:-1}
for round in $(seq 1 "$rounds"); do
  echo "round $round/$rounds"
  CHECKOUT_CRASH_ORDERS=${ORDERS:-200} CHECKOUT_CRASH_PRODUCTS=${PRODUCTS:-10} CHECKOUT_CRASH_WORKERS=${WORKERS:-3} \
    cargo test -p basis --test checkout_crash -- --nocapture 2>&1 | grep -E "checkout drill|test result|panicked|assert"
done
