#!/usr/bin/env bash
# The blog's read path over 100,000 posts, on SQLite and on PostgreSQL:
#   1. GET /posts?limit=20 (the 200 path: query, serialise, hash for the ETag);
#   2. the same request with a matching If-None-Match (the 304 path: same work, no body);
#   3. full-text search, 100 different words each matching 1,000 posts (p50/p99 latency),
#      with 64 connections and with one.
# Usage: bench/blog.sh   (BENCH_POSTGRES_URL: where a scratch database may be made;
#                         BLOG_POSTS: how many posts, default 100000)
set -euo pipefail
. "$(dirname "$0")/lib.sh"
RESULTS=${RESULTS:-$BENCH_DIR/tmp/blog.txt}
mkdir -p "$BENCH_DIR/tmp"; : >"$RESULTS"
ensure_tools
build_basis
PG_ADMIN=${BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}
POSTS=${BLOG_POSTS:-100000}
BASE=http://127.0.0.1:$BASIS_PORT

# The seed, in SQL both engines run: $1 is the author's id. One post in ten is a draft; each
# post has a category, two tags and a "topicN" word shared with 1% of the posts.
seed_sql() { # seed_sql <author id> <series of 1..POSTS as a FROM clause>
  cat <<SQL
INSERT INTO categories (name) SELECT 'cat' || i FROM $2 WHERE i <= 10;
INSERT INTO tags (name) SELECT 'tag' || i FROM $2 WHERE i <= 20;
INSERT INTO posts (author_id, title, body, body_html, category, status, created_at, updated_at)
SELECT '$1', 'Post ' || i || ' on topic' || (i % 100),
       'The body of post ' || i || ' is about topic' || (i % 100) || ' and word' || (i % 997) || '.',
       '<p>The body of post ' || i || '.</p>', 'cat' || (1 + i % 10),
       CASE WHEN i % 10 = 0 THEN 'draft' ELSE 'published' END,
       1700000000000 + i * 1000, 1700000000000 + i * 1000
FROM $2;
INSERT INTO post_tags (post_id, tag) SELECT id, 'tag' || (1 + id % 20) FROM posts;
INSERT INTO post_tags (post_id, tag) SELECT id, 'tag' || (1 + (id + 7) % 20) FROM posts;
SQL
}

author() { # signs a user up and prints their id
  curl -fs "$BASE/users" -H 'content-type: application/json' \
    -d '{"email":"bench@example.com","password":"correct horse battery staple 42","name":"Bench"}' | jq -r .id
}

cat >"$BENCH_DIR/tmp/search.lua" <<'LUA'
local n = 0
request = function()
  n = n + 1
  return wrk.format(nil, "/posts?q=topic" .. (n % 100) .. "&limit=20")
end
LUA

measure() { # measure <engine>
  local etag
  curl -fs -o /dev/null "$BASE/posts?limit=20"
  etag=$(curl -fsI "$BASE/posts?limit=20" | awk -F': ' 'tolower($1)=="etag" {print $2}' | tr -d '\r')
  printf 'wrk.headers["If-None-Match"] = %s\n' "'$etag'" >"$BENCH_DIR/tmp/inm.lua"
  [ "$(curl -s -o /dev/null -w '%{http_code}' -H "If-None-Match: $etag" "$BASE/posts?limit=20")" = 304 ]
  run_wrk "$1: GET /posts?limit=20 (200)" "$BASE/posts?limit=20"
  run_wrk "$1: same, If-None-Match (304)" "$BASE/posts?limit=20" "$BENCH_DIR/tmp/inm.lua"
  run_wrk "$1: search q=topicN (200)" "$BASE" "$BENCH_DIR/tmp/search.lua"
  # Latency without queueing behind 63 other clients.
  WRK_CONNECTIONS=1 run_wrk "$1: search q=topicN, 1 connection" "$BASE" "$BENCH_DIR/tmp/search.lua"
}

echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); $POSTS posts; wrk -t$WRK_THREADS -c$WRK_CONNECTIONS -d$WRK_DURATION" | tee -a "$RESULTS"
DATA=$(mktemp -d)

start_basis "$DATA/sqlite"
id=$(author)
stop_basis
seed_sql "$id" "(WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < $POSTS) SELECT i FROM s) AS n" |
  sqlite3 "$DATA/sqlite/basis.db"
sqlite3 "$DATA/sqlite/basis.db" 'ANALYZE;'
start_basis "$DATA/sqlite"
measure sqlite
stop_basis

db=basis_bench_blog_$$
psql "$PG_ADMIN" -qc "CREATE DATABASE $db"
pg_url=${PG_ADMIN%/*}/$db
start_basis "$DATA/pg" --database-url "$pg_url"
id=$(author)
seed_sql "$id" "generate_series(1, $POSTS) AS n(i)" | psql -q "$pg_url"
psql -q "$pg_url" -c 'VACUUM ANALYZE'
measure postgres
stop_basis
psql "$PG_ADMIN" -qc "DROP DATABASE $db"
rm -rf "$DATA"
