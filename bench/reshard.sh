#!/usr/bin/env bash
# Online resharding from two shard databases to three under load: the rate of the move and
# what the traffic sees while it runs, then a checker that every link is where the map says,
# exactly once, and still redirects.
#
#   bench/reshard.sh
#     LINKS=100000          links made before the move (1,000 per bulk request)
#     LOAD_SECONDS=60       length of the mixed load run during the move (and of the baseline)
#     KILL_AFTER=           SIGKILL the reshard after this many shards, then run it again
#     BENCH_POSTGRES_URL    a server where scratch databases may be made
#                           (default postgres://postgres@127.0.0.1:5432/postgres)
#     BASIS_BIN             a binary built elsewhere (else `cargo build --release -p basis`)
#
# The load (wrk, 64 connections) is 90 % redirects of 5,000 of the links and 10 % creates;
# creates are what a shard's short write freeze can hold up. Writes bench/tmp/reshard.txt.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
RESULTS=${RESULTS:-$BENCH_DIR/tmp/reshard.txt}
mkdir -p "$BENCH_DIR/tmp"; : >"$RESULTS"
ensure_tools
build_basis
PG_ADMIN=${BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}
LINKS=${LINKS:-100000}
LOAD_SECONDS=${LOAD_SECONDS:-60}
KILL_AFTER=${KILL_AFTER:-}
WORK=$(mktemp -d)
TAG=$(date +%s)_$$
DBS=(catalog a b c)
url_of() { echo "${PG_ADMIN%/*}/basis_reshard_${TAG}_$1"; }
for db in "${DBS[@]}"; do psql -q "$PG_ADMIN" -c "CREATE DATABASE basis_reshard_${TAG}_$db"; done
drop_all() {
  cleanup
  for db in "${DBS[@]}"; do
    psql -q "$PG_ADMIN" -c "DROP DATABASE IF EXISTS basis_reshard_${TAG}_$db WITH (FORCE)" || true
  done
  rm -rf "$WORK"
}
trap drop_all EXIT

export DATABASE_URL BASIS_SHARD_URLS
DATABASE_URL=$(url_of catalog)
BASIS_SHARD_URLS="$(url_of a),$(url_of b)"
start_basis "$WORK/basis"
base="http://127.0.0.1:$BASIS_PORT"
echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); commit $(git -C "$ROOT" rev-parse --short HEAD)" | tee -a "$RESULTS"

# The links: bulk creates of 1,000 by one account; 5,000 of their codes are the redirect set.
curl -fs "$base/users" -H 'content-type: application/json' \
  -d '{"email":"bench@example.com","password":"velvet otter juggles nine lanterns","name":"Bench"}' >/dev/null
TOKEN=$(curl -fs "$base/auth/login" -H 'content-type: application/json' \
  -d '{"email":"bench@example.com","password":"velvet otter juggles nine lanterns"}' | jq -r .accessToken)
python3 - "$WORK" "$LINKS" <<'PY'
import json, sys
work, links = sys.argv[1], int(sys.argv[2])
for r in range((links + 999) // 1000):
    items = [{"longUrl": f"https://example.com/reshard/{r}/{i}"} for i in range(1000)]
    open(f"{work}/bulk-{r}.json", "w").write(json.dumps(items))
PY
started=$(date +%s.%N)
for body in "$WORK"/bulk-*.json; do
  curl -fs "$base/links/bulk" -H 'content-type: application/json' -H "authorization: Bearer $TOKEN" \
    --data-binary "@$body" \
    | jq -r '.. | .shortCode? // empty' >>"$WORK/codes"
done
made=$(wc -l <"$WORK/codes")
echo "made $made links in $(awk -v s="$started" -v e="$(date +%s.%N)" 'BEGIN {printf "%.1f", e - s}') s" | tee -a "$RESULTS"
shuf -n 5000 "$WORK/codes" >"$WORK/sample"
{
  echo "local codes = {"
  sed 's/.*/"&",/' "$WORK/sample"
  cat <<'LUA'
}
local n = 0
request = function()
  n = n + 1
  if math.random(10) == 1 then
    return wrk.format("POST", "/shorten", {["Content-Type"] = "application/json"},
      string.format('{"longUrl": "https://example.com/reshard/new/%d/%d"}', n, math.random(1e9)))
  end
  return wrk.format("GET", "/" .. codes[math.random(#codes)])
end
LUA
} >"$WORK/load.lua"
# Warm the link cache, as a running service's is.
wrk -t1 -c16 -d5s -s "$WORK/load.lua" "$base" >/dev/null

load() { # load <label>: the mixed load for LOAD_SECONDS, summarised
  local out
  out=$(wrk -t1 -c64 -d"${LOAD_SECONDS}s" --latency -s "$WORK/load.lua" "$base")
  printf '%-22s %10s req/s  p50 %-9s p99 %-9s max %-9s errors: %s\n' "$1" \
    "$(awk '/^Requests\/sec/ {print $2}' <<<"$out")" \
    "$(awk '$1=="50%" {print $2}' <<<"$out")" "$(awk '$1=="99%" {print $2}' <<<"$out")" \
    "$(awk '/Latency/ {print $4; exit}' <<<"$out")" \
    "$(awk '/Non-2xx or 3xx/ {n=$5} /Socket errors/ {e=$0} END {print (n ? n : 0) " non-2xx/3xx" (e ? "; " e : "")}' <<<"$out")" \
    | tee -a "$RESULTS"
}
load "baseline (no move)"

reshard() { # reshard: the command, its progress on $WORK/reshard.log
  "$BASIS" admin reshard --add "$(url_of c)" >>"$WORK/reshard.out" 2>>"$WORK/reshard.log"
}
( sleep 5; if [ -n "$KILL_AFTER" ]; then
    reshard & pid=$!
    until grep -q "^\[ *$KILL_AFTER/" "$WORK/reshard.log" 2>/dev/null; do
      kill -0 "$pid" 2>/dev/null || { echo "the reshard ended before $KILL_AFTER shards" >&2; exit 1; }
      sleep 0.05
    done
    kill -9 "$pid"; wait "$pid" 2>/dev/null || true
    echo "killed the reshard (SIGKILL) after $KILL_AFTER shards; running it again" >>"$WORK/reshard.log"
  fi
  reshard ) &
mover=$!
load "during the move"
wait "$mover"
grep -E "^\[|killed" "$WORK/reshard.log" | awk 'NR % 10 == 1 || /killed/' | tee -a "$RESULTS" >/dev/null || true
tail -n1 "$WORK/reshard.log" | tee -a "$RESULTS"
tee -a "$RESULTS" <"$WORK/reshard.out"
held=$(grep -o 'writes held [0-9]* ms' "$WORK/reshard.log" | awk '{print $3}' | sort -n)
echo "write freeze per shard: median $(median $held) ms, max $(tail -n1 <<<"$held") ms" | tee -a "$RESULTS"

# The checker: every link in exactly one database, the one its shard maps to, and the
# redirect set still redirecting.
total=0; for db in a b c; do
  n=$(psql -tA "$(url_of "$db")" -c "SELECT COUNT(*) FROM links"); total=$((total + n))
  echo "database $db holds $n links" | tee -a "$RESULTS"
done
distinct=$(for db in a b c; do psql -tA "$(url_of "$db")" -c "SELECT id FROM links"; done | sort -u | wc -l)
echo "links stored $total, distinct $distinct (made before: $made, the rest by the load's creates)" | tee -a "$RESULTS"
[ "$total" = "$distinct" ] || { echo "FAIL: a link is in two databases" | tee -a "$RESULTS"; exit 1; }
[ "$total" -ge "$made" ] || { echo "FAIL: links were lost" | tee -a "$RESULTS"; exit 1; }
bad=0
while read -r code; do
  status=$(curl -s -o /dev/null -w '%{http_code}' "$base/$code")
  [ "$status" = 301 ] || bad=$((bad + 1))
done < <(head -n 1000 "$WORK/sample")
echo "redirects of 1,000 sampled codes after the move: $bad not 301" | tee -a "$RESULTS"
[ "$bad" = 0 ] || exit 1
