"""Runs sqlmap on every operation of Basis's /openapi.json, every parameter in it.

Usage: sqlmap_scan.py BASE EMAIL PASSWORD WORKDIR   (run by scripts/sqlmap.sh)

One sqlmap run per operation (and one per query parameter), signed in as the given admin. Path parameters take the seeded resource's value (so the
request reaches the code behind it) followed by sqlmap's `*` marker, which makes the path
segment an injection point too; query parameters get a sample value each (sqlmap tests every
one of them); a JSON body gets a sample of its schema (sqlmap tests every value in it).
"""

import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request

BASE, EMAIL, PASSWORD, WORKDIR = sys.argv[1:5]
LEVEL = os.environ.get("SQLMAP_LEVEL", "2")
RISK = os.environ.get("SQLMAP_RISK", "1")
SEEDS = {"code": "sql-seed", "id": "1", "tag": "seed", "key": "1", "name": "seed",
         "limit": "10", "sort": "-created"}
# Operations that end the caller's own sign-in: run last, by the shell script, if at all.
LAST = {("post", "/auth/logout-all"), ("delete", "/users/{id}"), ("post", "/auth/logout")}

with urllib.request.urlopen(BASE + "/openapi.json", timeout=10) as response:
    spec = json.load(response)


def resolve(schema):
    while isinstance(schema, dict) and "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = spec["components"]["schemas"][name]
    return schema or {}


def sample(schema, depth=0):
    schema = resolve(schema)
    if "example" in schema:
        return schema["example"]
    if schema.get("enum"):
        return schema["enum"][0]
    for combo in ("oneOf", "anyOf", "allOf"):
        if schema.get(combo):
            return sample(schema[combo][0], depth)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    if kind == "object" or "properties" in schema:
        if depth > 3:
            return {}
        return {k: sample(v, depth + 1) for k, v in schema.get("properties", {}).items()}
    if kind == "array":
        return [sample(schema.get("items", {}), depth + 1)]
    if kind == "integer":
        return max(1, schema.get("minimum", 1))
    if kind == "number":
        return 1.5
    if kind == "boolean":
        return True
    fmt = schema.get("format")
    if fmt == "email":
        return "sql@example.com"
    if fmt in ("uri", "url"):
        return "https://example.com/sql"
    if fmt == "date-time":
        return "2026-01-01T00:00:00Z"
    return "seed"


operations = []
for path, item in spec["paths"].items():
    shared = item.get("parameters", [])
    for method, op in item.items():
        if method not in ("get", "post", "put", "patch", "delete"):
            continue
        params = [resolve(p) for p in shared + op.get("parameters", [])]
        marked = plain = path
        query = []
        for p in params:
            value = SEEDS.get(p["name"], str(sample(p.get("schema", {}))))
            if p["in"] == "path":
                marked = marked.replace("{" + p["name"] + "}", value + "*")
                plain = plain.replace("{" + p["name"] + "}", value)
            elif p["in"] == "query":
                query.append(f"{p['name']}={urllib.parse.quote(value)}")
        data = None
        body = op.get("requestBody", {}).get("content", {})
        if "application/json" in body:
            data = json.dumps(sample(body["application/json"].get("schema", {})))
        name = f"{method.upper()} {path}"
        last = (method, path) in LAST
        # The path and the body in one run; each query parameter alone in a run of its own,
        # so one parameter's 400 (a page size of "seed") cannot hide another's handling.
        if "*" in marked or data is not None:
            operations.append({"name": name, "method": method.upper(), "url": BASE + marked,
                               "data": data, "last": last})
        for pair in query:
            operations.append({"name": f"{name} ?{pair.split('=')[0]}", "method": method.upper(),
                               "url": f"{BASE}{plain}?{pair}", "data": data, "last": last})

operations.sort(key=lambda o: o["last"])


def request(method, path, body=None, token=None):
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = "Bearer " + token
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(BASE + path, data=data, headers=headers, method=method)
    with urllib.request.urlopen(req, timeout=10) as response:
        return json.load(response) if response.status != 204 else None


def sign_in():
    return request("POST", "/auth/login", {"email": EMAIL, "password": PASSWORD})["accessToken"]


def still_valid(token):
    try:
        request("GET", "/auth/me", token=token)
        return True
    except urllib.error.HTTPError:
        return False


FOUND = re.compile(r"identified the following injection point|is vulnerable|appears to be .*injectable")
token = sign_in()
print(f"== sqlmap on {len(operations)} operations, level {LEVEL}, risk {RISK}", flush=True)
injectable = []
for n, op in enumerate(operations, 1):
    args = [
        "sqlmap", "-u", op["url"], "--method", op["method"],
        "--headers", f"Authorization: Bearer {token}",
        "--batch", "--disable-coloring", "--level", LEVEL, "--risk", RISK,
        "--threads", "4", "--timeout", "10", "--retries", "1", "--flush-session",
        "--ignore-code", "400,401,403,404,409,410,413,415,422,429",
        "--output-dir", os.path.join(WORKDIR, "sqlmap"),
    ]
    if op["data"] is not None:
        args += ["--data", op["data"]]
    run = subprocess.run(args, capture_output=True, text=True)
    out = run.stdout + run.stderr
    with open(os.path.join(WORKDIR, f"op-{n}.log"), "w") as log:
        log.write(" ".join(args) + "\n" + out)
    payloads = len(re.findall(r"testing '", out))
    if FOUND.search(out):
        injectable.append(op["name"])
        print(f"{n:3}/{len(operations)} INJECTABLE {op['name']}", flush=True)
        print("\n".join(l for l in out.splitlines() if re.match(r"\s*(Parameter|Type|Payload):", l)))
    else:
        print(f"{n:3}/{len(operations)} ok  {op['name']:<55} {payloads} techniques tried", flush=True)
    if not still_valid(token):  # an operation ended the sign-in: sign in again
        token = sign_in()

print(f"== {len(operations)} operations scanned, {len(injectable)} injectable")
sys.exit(1 if injectable else 0)
