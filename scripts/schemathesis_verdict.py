#!/usr/bin/env python3
"""The verdict on a schemathesis run: every failure it found, and whether a described rule
explains it.

Usage: scripts/schemathesis_verdict.py NDJSON ALLOWLIST [OPENAPI]

NDJSON is the run's `--report ndjson` file; ALLOWLIST is a TOML file of `[[rule]]` entries
(see scripts/schemathesis-allowed.toml); OPENAPI, the document the run was generated from.
With it, a "schema-valid request refused" whose request sent a header its operation's
schema forbids (schemathesis's generation does so at times without marking the case) is
set apart as not schema-valid, like the cases it marks. Each failure is printed with its operation, check,
response status and the problem document's fields and detail; a failure that no rule explains
is marked and makes the exit status 1. A rule no failure used is only reported: a run is
random and need not meet every rule.
"""

import base64
import fnmatch
import json
import re
import sys
import tomllib
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Failure:
    """One failed check on one generated request."""

    operation: str
    code: str
    status: int | None
    fields: tuple[str, ...]
    detail: str
    messages: tuple[str, ...]
    uri: str
    component: str = ""


@dataclass
class Rule:
    """An allowlist entry: a rule the API enforces that no schema can state."""

    operation: str
    check: str
    status: int
    reason: str
    field_name: str | None = None
    detail: str | None = None
    used: int = field(default=0)

    def explains(self, failure: Failure) -> bool:
        if self.operation not in ("*", failure.operation):
            return False
        if self.check != failure.code or self.status != failure.status:
            return False
        if self.field_name is not None and not any(
            fnmatch.fnmatchcase(name, self.field_name) for name in failure.fields
        ):
            return False
        if self.detail is not None:
            texts = (failure.detail, *failure.messages)
            if not any(self.detail in text for text in texts):
                return False
        return True


def decoded(body) -> str:
    """A recorded body as text (schemathesis stores them as `{"$base64": …}`)."""
    if isinstance(body, dict) and "$base64" in body:
        try:
            return base64.b64decode(body["$base64"]).decode(errors="replace")
        except ValueError:
            return ""
    return body if isinstance(body, str) else ""


@dataclass
class Run:
    """What a run's report holds: its failures, its errors, and whether it finished."""

    failures: list[Failure]
    errors: list[str]
    finished: bool
    skipped: list[str] = field(default_factory=list)


def header_patterns(spec: dict | None, operation: str) -> dict[str, str]:
    """The `pattern` of each header parameter `operation` ("POST /x") declares, by
    lower-case name; references to components are followed."""
    if not spec or " " not in operation:
        return {}
    method, path = operation.split(" ", 1)
    item = (spec.get("paths") or {}).get(path) or {}
    parameters = list(item.get("parameters") or []) + list(
        (item.get(method.lower()) or {}).get("parameters") or []
    )
    schemas = (spec.get("components") or {}).get("schemas") or {}
    patterns = {}
    for parameter in parameters:
        if parameter.get("in") != "header":
            continue
        schema = parameter.get("schema") or {}
        ref = schema.get("$ref", "")
        if ref.startswith("#/components/schemas/"):
            schema = schemas.get(ref.rsplit("/", 1)[1]) or {}
        if "pattern" in schema:
            patterns[str(parameter.get("name", "")).lower()] = schema["pattern"]
    return patterns


def headers_breaking_schema(spec: dict | None, operation: str, request: dict) -> list[str]:
    """The headers of a recorded request whose value the operation's schema forbids."""
    patterns = header_patterns(spec, operation)
    broken = []
    for name, values in (request.get("headers") or {}).items():
        pattern = patterns.get(name.lower())
        if pattern is None:
            continue
        for value in values if isinstance(values, list) else [values]:
            if re.search(pattern, str(value)) is None:
                broken.append(name)
    return broken


def read_run(lines, spec: dict | None = None) -> Run:
    """The failed checks of every finished scenario (once per distinct request and check),
    the errors that stopped a test, and whether the engine finished. With `spec`, requests
    that sent a header their schema forbids are not schema-valid ([`headers_breaking_schema`])."""
    found: list[Failure] = []
    errors: list[str] = []
    skipped: list[str] = []
    finished_engine = False
    seen = set()
    for line in lines:
        line = line.strip()
        if not line:
            continue
        event = json.loads(line)
        if "EngineFinished" in event:
            finished_engine = True
        for kind in ("NonFatalError", "FatalError"):
            if kind in event:
                errors.append(f"{kind}: {json.dumps(event[kind])[:300]}")
        finished = event.get("ScenarioFinished")
        if not finished:
            continue
        recorder = finished.get("recorder") or {}
        interactions = recorder.get("interactions") or {}
        for case_id, checks in (recorder.get("checks") or {}).items():
            for check in checks:
                if check.get("status") != "failure":
                    continue
                info = (check.get("failure_info") or {}).get("failure") or {}
                interaction = interactions.get(case_id) or {}
                case = ((recorder.get("cases") or {}).get(case_id) or {}).get("value") or {}
                negative_parts = [
                    place
                    for place, meta in ((case.get("meta") or {}).get("components") or {}).items()
                    if (meta or {}).get("mode") == "negative"
                ]
                request = interaction.get("request") or {}
                response = interaction.get("response") or {}
                fields: tuple[str, ...] = ()
                detail = ""
                try:
                    problem = json.loads(decoded(response.get("content")))
                except ValueError:
                    problem = None
                if isinstance(problem, dict):
                    detail = str(problem.get("detail") or "")
                    problems = problem.get("errors")
                    if isinstance(problems, list):
                        fields = tuple(
                            str(e.get("field"))
                            for e in problems
                            if isinstance(e, dict) and "field" in e
                        )
                        messages = tuple(
                            str(e.get("message"))
                            for e in problems
                            if isinstance(e, dict) and "message" in e
                        )
                    else:
                        messages = ()
                else:
                    messages = ()
                message = str(info.get("message") or "")
                component = next(
                    (
                        part.split(":", 1)[1].strip()
                        for part in message.splitlines()
                        if part.startswith("Invalid component:")
                    ),
                    "",
                )
                # ST202 says the request kept to the schema; a case whose own record says a
                # part was generated to break it (schemathesis's coverage phase does so with
                # headers) proves nothing either way.
                if info.get("code") == "ST202" and negative_parts:
                    skipped.append(
                        f"{info.get('operation')}: the case's {', '.join(negative_parts)} "
                        "broke the schema by design"
                    )
                    continue
                broken = headers_breaking_schema(spec, str(info.get("operation") or ""), request)
                if info.get("code") == "ST202" and broken:
                    skipped.append(
                        f"{info.get('operation')}: the request's {', '.join(sorted(set(broken)))} "
                        "header broke its schema"
                    )
                    continue
                failure = Failure(
                    operation=str(info.get("operation") or ""),
                    code=str(info.get("code") or check.get("name") or ""),
                    status=response.get("status_code"),
                    fields=fields,
                    detail=detail,
                    messages=messages,
                    uri=str(request.get("uri") or ""),
                    component=component,
                )
                key = (failure.operation, failure.code, failure.status, failure.fields,
                       failure.detail, failure.messages, failure.uri, failure.component)
                if key not in seen:
                    seen.add(key)
                    found.append(failure)
    return Run(failures=found, errors=errors, finished=finished_engine, skipped=skipped)


def rules(document: dict) -> list[Rule]:
    """The allowlist's rules; each must say why in `reason`."""
    out = []
    for entry in document.get("rule", []):
        reason = str(entry.get("reason") or "").strip()
        if not reason:
            raise ValueError(f"allowlist entry without a reason: {entry}")
        out.append(
            Rule(
                operation=str(entry["operation"]),
                check=str(entry["check"]),
                status=int(entry["status"]),
                reason=reason,
                field_name=entry.get("field"),
                detail=entry.get("detail"),
            )
        )
    return out


def verdict(run: Run, allowed: list[Rule], out=sys.stdout) -> int:
    """Prints every failure with the rule that explains it; 1 if any is unexplained, if a
    test ended in an error or if the run did not finish."""
    found = run.failures
    unexplained = 0
    groups: dict[tuple, list[Failure]] = {}
    for failure in found:
        key = (failure.operation, failure.code, failure.status, failure.fields, failure.detail)
        groups.setdefault(key, []).append(failure)
    for (operation, code, status, fields, detail), members in sorted(
        groups.items(), key=lambda item: tuple(str(part) for part in item[0])
    ):
        rule = next((r for r in allowed if r.explains(members[0])), None)
        what = f"{code} {operation} -> {status}"
        if fields:
            what += f" fields={','.join(fields)}"
        if detail:
            what += f" detail={detail!r}"
        what += f" ({len(members)}x)"
        if rule is None:
            unexplained += len(members)
            print(f"UNEXPLAINED {what}", file=out)
            for member in members[:2]:
                if member.component:
                    print(f"    invalid: {member.component}", file=out)
                if member.messages:
                    print(f"    messages: {'; '.join(member.messages)}", file=out)
                uri = member.uri if len(member.uri) <= 200 else member.uri[:200] + "…"
                print(f"    request: {uri}", file=out)
        else:
            rule.used += len(members)
            print(f"explained   {what}\n    because: {rule.reason}", file=out)
    for rule in allowed:
        if not rule.used:
            print(f"(unused rule: {rule.check} {rule.operation} {rule.status}: {rule.reason})",
                  file=out)
    for note in sorted(set(run.skipped)):
        print(f"not a schema-valid request: {note}", file=out)
    for error in run.errors:
        print(f"ERROR {error}", file=out)
    if not run.finished:
        print("the run did not finish (no EngineFinished event)", file=out)
    print(
        f"{len(found)} failures, {len(found) - unexplained} explained by described rules, "
        f"{unexplained} unexplained, {len(run.errors)} errors",
        file=out,
    )
    return 1 if unexplained or run.errors or not run.finished else 0


def main(argv: list[str]) -> int:
    if len(argv) not in (3, 4):
        print(__doc__, file=sys.stderr)
        return 2
    spec = None
    if len(argv) == 4:
        with open(argv[3], encoding="utf-8") as document:
            spec = json.load(document)
    with open(argv[1], encoding="utf-8") as ndjson:
        run = read_run(ndjson, spec)
    with open(argv[2], "rb") as allowlist:
        allowed = rules(tomllib.load(allowlist))
    return verdict(run, allowed)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
