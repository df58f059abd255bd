#!/usr/bin/env bash
# Property-based API testing: runs schemathesis (PyPI) against a real `basis serve` and its
# own /openapi.json, over every operation, with every check: no 5xx, responses as the spec
# says (status code, content type, headers, body schema), schema-violating requests refused
# and schema-valid ones accepted. A failure passes only when a rule the spec describes but no
# schema can state explains it: scripts/schemathesis_verdict.py judges the run's report
# against scripts/schemathesis-allowed.toml and lists every failure with its reason.
#
# Usage: scripts/schemathesis.sh [extra `st run` options]
#   SCHEMATHESIS_CHECKS=list (default `all`: server errors, responses as specified,
#   schema-violating requests refused and schema-valid ones accepted or explained),
#   SCHEMATHESIS_EXAMPLES=n, BASIS_BIN=path;
#   `--report ndjson --report-ndjson-path FILE` keeps the report (else it is temporary).
# Loopback only; bounded in time; the server and its temporary data dir are removed at exit.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

# Run as a module of the same python3 that pip installs into, so PATH does not matter.
# The verdict's own tests first: a broken judge would pass anything.
python3 -m unittest -q scripts/test_schemathesis_verdict.py

if ! python3 -c 'import schemathesis' >/dev/null 2>&1; then
  echo "installing schemathesis"
  python3 -m pip install -q --disable-pip-version-check "schemathesis>=4.3,<5"
fi

. scripts/serve-lib.sh
basis_binary
trap stop_basis EXIT
BASIS_RATE_LIMITS=off start_basis

# A signed-in caller, and one published post with a comment and one tagged link for the reads
# to find.
PASSWORD="correct horse battery staple 42"
curl -fs -o /dev/null -H 'content-type: application/json' \
  -d "{\"email\":\"fuzz@example.com\",\"password\":\"$PASSWORD\",\"name\":\"Fuzz\"}" "$BASE/users"
TOKEN=$(curl -fs -H 'content-type: application/json' \
  -d "{\"email\":\"fuzz@example.com\",\"password\":\"$PASSWORD\"}" "$BASE/auth/login" |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["accessToken"])')
curl -fs -o /dev/null -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' \
  -d '{"title":"Seed","body":"Seed *post*","tags":["seed"],"status":"published"}' "$BASE/posts"
curl -fs -o /dev/null -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' \
  -d '{"body":"Seed comment"}' "$BASE/posts/1/comments"
curl -fs -o /dev/null -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' \
  -d '{"longUrl":"https://example.com/seed","customAlias":"fuzzseed","tags":["seed"]}' "$BASE/shorten"

# Path parameters name the seeded resources in part of the generated requests (the rest stay
# random), so operations on one resource get past their 404 to the code behind it.
cat >"$DATA/schemathesis.toml" <<'TOML'
[dictionaries.codes]
values = ["fuzzseed"]
[dictionaries.ids]
values = ["1"]
[dictionaries.tags]
values = ["seed"]
[dictionaries.numbers]
values = [1]
[parameters]
"path.code" = { dictionary = "codes", probability = 0.5 }
"path.id" = { dictionary = "ids", probability = 0.3 }
"path.tag" = { dictionary = "tags", probability = 0.5 }
# Integer ids take the number 1: the text "1" breaks their schema, so schemathesis would send
# it as a schema-violating value that the server rightly reads as id 1.
[[operations]]
include-path-regex = "^/(accounts|events|orders|products|transfers|admin/sagas)/\\{id\\}"
parameters = { "path.id" = { dictionary = "numbers", probability = 0.3 } }
TOML

# The report the verdict reads: the caller's (`--report-ndjson-path FILE`) or a temporary one.
NDJSON=
previous=
for arg in "$@"; do
  [ "$previous" = "--report-ndjson-path" ] && NDJSON=$arg
  case $arg in --report-ndjson-path=*) NDJSON=${arg#*=} ;; esac
  previous=$arg
done
REPORT_ARGS=()
if [ -z "$NDJSON" ]; then
  NDJSON=$DATA/report/run.ndjson
  REPORT_ARGS=(--report ndjson --report-ndjson-path "$NDJSON")
fi
NDJSON=$(cd "$DATA" && realpath -m "$NDJSON") # schemathesis runs in $DATA

status=0
# Operations run signed in as an admin made by scripts/schemathesis_auth.py, which signs in
# again (as a new admin if need be) whenever a generated request ended that sign-in. The
# MFA policy is left out: a valid generated policy ("admins need two-step sign-in") locks the
# fuzzing admin out for the rest of the run; its rules are tested in the API tests.
# From the temporary directory, so schemathesis's own cache stays out of the work tree.
(cd "$DATA" && PYTHONPATH="$ROOT/scripts" SCHEMATHESIS_HOOKS=schemathesis_auth \
  BASIS_FUZZ_BASE="$BASE" BASIS_FUZZ_BIN="$BASIS" BASIS_FUZZ_DATA_DIR="$DATA" \
  BASIS_FUZZ_PASSWORD="$PASSWORD" \
  python3 -m schemathesis.cli run "$BASE/openapi.json" \
  --checks "${SCHEMATHESIS_CHECKS:-all}" \
  --exclude-path-regex '^/admin/mfa-policy$' \
  --phases examples,coverage,fuzzing \
  --max-examples "${SCHEMATHESIS_EXAMPLES:-25}" \
  --max-time 150 \
  --request-timeout 10 \
  --seed "${SCHEMATHESIS_SEED:-1}" \
  --generation-database none \
  --no-color \
  --report-dir "$DATA/report" \
  "${REPORT_ARGS[@]}" \
  "$@") || status=$?
# Schemathesis fails on any failure; the run passes when each one is a described rule.
if [ -f "$NDJSON" ]; then
  verdict=0
  curl -fs -o "$DATA/openapi.json" "$BASE/openapi.json"
  python3 scripts/schemathesis_verdict.py "$NDJSON" scripts/schemathesis-allowed.toml \
    "$DATA/openapi.json" || verdict=$?
  if [ "$verdict" -eq 0 ]; then
    status=0
  else
    status=$verdict
  fi
fi
if [ "$status" -ne 0 ]; then
  echo "schemathesis failed (exit $status); server log:" >&2
  grep -E 'ERROR|panicked' "$DATA/basis.log" | tail -20 >&2 || true
  cat "$DATA/auth.log" >&2 2>/dev/null || true
fi
exit "$status"
