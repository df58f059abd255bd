#!/usr/bin/env bash
# How many B-tree levels a lookup by id descends at 1M and 10M links, on PostgreSQL and SQLite.
# Page reads per lookup do not depend on the machine's load, unlike latency.
#   bench/btree-depth.sh    (BENCH_POSTGRES_URL, default postgres://postgres@127.0.0.1:5432/postgres)
# Tables have the columns of migration 0004 and are filled by SQL with 91-byte-ish URLs.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
ensure_tools
PG=${BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}
COLUMNS_SQL="id BIGINT PRIMARY KEY, created_at BIGINT NOT NULL, click_count BIGINT NOT NULL DEFAULT 0,
  redirect_type INTEGER NOT NULL DEFAULT 301, long_url TEXT NOT NULL, alias TEXT, url_hash BIGINT,
  expires_at BIGINT, max_clicks BIGINT, password_hash TEXT, owner_id TEXT"
URL_SQL="'https://www.example.com/articles/2026/11/' || i || '/launch-pricing-report?utm_source=mail'"
db=basis_depth_$$
psql -q "$PG" -c "CREATE DATABASE $db"
trap 'psql -q "$PG" -c "DROP DATABASE IF EXISTS $db"' EXIT
pg_db=${PG%/*}/$db
for n in 1000000 10000000; do
  psql -q "$pg_db" <<SQL
CREATE TABLE links_$n ($COLUMNS_SQL);
INSERT INTO links_$n (id, created_at, long_url) SELECT i, 1790000000000, $URL_SQL FROM generate_series(1, $n) i;
VACUUM ANALYZE links_$n;
SQL
done
psql -q "$pg_db" -c "CREATE EXTENSION IF NOT EXISTS pageinspect" \
  -c "SELECT '1M' AS links, level AS pkey_levels_below_root FROM bt_metap('links_1000000_pkey')
      UNION ALL SELECT '10M', level FROM bt_metap('links_10000000_pkey')"
dir=$(mktemp -d)
for n in 1000000 10000000; do
  sqlite3 "$dir/$n.db" "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;
    CREATE TABLE links (${COLUMNS_SQL/BIGINT PRIMARY KEY/INTEGER PRIMARY KEY});
    WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < $n)
    INSERT INTO links (id, created_at, long_url) SELECT i, 1790000000000, $URL_SQL FROM s;" >/dev/null
  echo "sqlite $n links: $(sqlite3 "$dir/$n.db" "SELECT max(length(path) - length(replace(path, '/', ''))) FROM dbstat WHERE name = 'links'") levels"
done
rm -rf "$dir"
