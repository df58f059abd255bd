#!/usr/bin/env bash
# SQL injection scan: sqlmap (Debian's package, installed when missing) against every
# operation of a real `basis serve`, with every path, query and JSON-body parameter of
# /openapi.json as an injection point, signed in as an admin so no operation stops at 401.
#
#   scripts/sqlmap.sh [sqlite|postgres]      (default sqlite; SQLMAP_LEVEL, SQLMAP_RISK, BASIS_BIN)
#
# Fails when sqlmap reports any parameter injectable. Loopback only; the server, its data
# and, on PostgreSQL, its scratch database are removed at exit. A full run takes tens of
# minutes: it is run for releases, not by CI.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
ENGINE=${1:-sqlite}

if ! command -v sqlmap >/dev/null; then
  echo "installing sqlmap"
  sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get install -y -q sqlmap >/dev/null
fi

. scripts/serve-lib.sh
basis_binary
db_args=()
if [ "$ENGINE" = postgres ]; then
  . scripts/services.sh
  DB=basis_sqlmap_$$
  psql -q -h 127.0.0.1 -U postgres -c "CREATE DATABASE $DB" postgres
  db_args=(--database-url "postgres://postgres@127.0.0.1:5432/$DB")
fi
cleanup() {
  stop_basis
  [ -z "${DB:-}" ] || psql -q -h 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS $DB" postgres || true
}
trap cleanup EXIT
BASIS_RATE_LIMITS=off start_basis "${db_args[@]}"

# An admin (the operator's way), signed in, and the resources the path parameters name.
PASSWORD="correct horse battery staple 42"
echo "$PASSWORD" | "$BASIS" admin create-user --role admin --email sql@example.com \
  --data-dir "$DATA" "${db_args[@]}" >/dev/null
TOKEN=$(curl -fs -H 'content-type: application/json' \
  -d "{\"email\":\"sql@example.com\",\"password\":\"$PASSWORD\"}" "$BASE/auth/login" |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["accessToken"])')
auth=(-H "authorization: Bearer $TOKEN" -H 'content-type: application/json')
curl -fs -o /dev/null "${auth[@]}" -d '{"title":"Seed","body":"Seed","tags":["seed"],"status":"published"}' "$BASE/posts"
curl -fs -o /dev/null "${auth[@]}" -d '{"body":"Seed comment"}' "$BASE/posts/1/comments"
curl -fs -o /dev/null "${auth[@]}" -d '{"longUrl":"https://example.com/seed","customAlias":"sql-seed","tags":["seed"]}' "$BASE/shorten"

status=0
python3 scripts/sqlmap_scan.py "$BASE" sql@example.com "$PASSWORD" "$DATA" || status=$?
if grep -E 'panicked' "$DATA/basis.log" >/dev/null; then
  echo "the server panicked:"; grep -E 'panicked' "$DATA/basis.log" | head; exit 1
fi
exit "$status"
