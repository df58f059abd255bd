"""Unit tests of the schemathesis verdict: python3 -m unittest scripts/test_schemathesis_verdict.py"""

import base64
import io
import json
import os
import sys
import tomllib
import unittest

sys.path.insert(0, os.path.dirname(__file__))

import schemathesis_verdict as verdict  # noqa: E402


def b64(value) -> dict:
    return {"$base64": base64.b64encode(json.dumps(value).encode()).decode()}


def scenario(code: str, operation: str, status: int, problem: dict, headers=None) -> str:
    """One finished scenario with one failed check, as the NDJSON report holds it."""
    return json.dumps(
        {
            "ScenarioFinished": {
                "recorder": {
                    "checks": {
                        "c1": [
                            {
                                "name": "positive_data_acceptance",
                                "status": "failure",
                                "failure_info": {
                                    "failure": {
                                        "code": code,
                                        "operation": operation,
                                        "message": "Invalid component: in body",
                                    }
                                },
                            },
                            {"name": "not_a_server_error", "status": "success"},
                        ]
                    },
                    "interactions": {
                        "c1": {
                            "request": {"uri": "http://127.0.0.1:1/x", "headers": headers or {}},
                            "response": {"status_code": status, "content": b64(problem)},
                        }
                    },
                }
            }
        }
    )


FINISHED = json.dumps({"EngineFinished": {}})
RULES = tomllib.loads(
    """
[[rule]]
operation = "*"
check = "ST202"
status = 412
detail = "changed since you read it"
reason = "stale If-Match"

[[rule]]
operation = "POST /users"
check = "ST202"
status = 400
field = "password"
reason = "password strength"

[[rule]]
operation = "POST /shorten"
check = "ST202"
status = 422
field = "rules.*.url"
reason = "URL policy"
"""
)

SPEC = {
    "paths": {
        "/posts/{id}": {
            "patch": {
                "parameters": [
                    {"name": "If-Match", "in": "header",
                     "schema": {"$ref": "#/components/schemas/EntityTags"}},
                ]
            }
        }
    },
    "components": {"schemas": {"EntityTags": {"type": "string", "pattern": '^(\\*|"[a-z]*")$'}}},
}


class VerdictTest(unittest.TestCase):
    def judge(self, *lines: str, spec=None) -> tuple[int, str]:
        out = io.StringIO()
        status = verdict.verdict(verdict.read_run(lines, spec), verdict.rules(RULES), out)
        return status, out.getvalue()

    def test_a_field_rule_may_name_fields_by_a_glob(self):
        explained = scenario("ST202", "POST /shorten", 422,
                             {"errors": [{"field": "rules.targets[3].url"}]})
        status, text = self.judge(explained, FINISHED)
        self.assertEqual(status, 0, text)
        other = scenario("ST202", "POST /shorten", 422,
                         {"errors": [{"field": "rules.targets[3].country"}]})
        status, text = self.judge(other, FINISHED)
        self.assertEqual(status, 1, text)

    def test_a_request_whose_header_breaks_its_schema_is_not_schema_valid(self):
        refused = {"errors": [{"field": "If-Match", "message": "must be * or tags"}]}
        broken = scenario("ST202", "PATCH /posts/{id}", 400, refused, {"If-Match": ["0"]})
        status, text = self.judge(broken, FINISHED, spec=SPEC)
        self.assertEqual(status, 0, text)
        self.assertIn("If-Match header broke its schema", text)
        # A header the schema allows proves the refusal wrong; so does a run without the spec.
        kept = scenario("ST202", "PATCH /posts/{id}", 400, refused, {"If-Match": ['"ab"']})
        status, text = self.judge(kept, FINISHED, spec=SPEC)
        self.assertEqual(status, 1, text)
        status, text = self.judge(broken, FINISHED)
        self.assertEqual(status, 1, text)

    def test_a_failure_a_rule_explains_passes_with_its_reason(self):
        status, text = self.judge(
            scenario("ST202", "PATCH /posts/{id}", 412,
                     {"detail": "the resource changed since you read it"}),
            scenario("ST202", "POST /users", 400,
                     {"detail": "invalid", "errors": [{"field": "password", "message": "weak"}]}),
            FINISHED,
        )
        self.assertEqual(status, 0, text)
        self.assertIn("because: stale If-Match", text)
        self.assertIn("because: password strength", text)

    def test_a_failure_no_rule_explains_fails_the_run(self):
        for line in [
            # Another status, another field, another operation or another check.
            scenario("ST202", "PATCH /posts/{id}", 400, {"detail": "changed since you read it"}),
            scenario("ST202", "POST /users", 400, {"errors": [{"field": "name"}]}),
            scenario("ST202", "POST /posts", 400, {"errors": [{"field": "password"}]}),
            scenario("ST201", "POST /users", 400, {"errors": [{"field": "password"}]}),
        ]:
            status, text = self.judge(line, FINISHED)
            self.assertEqual(status, 1, text)
            self.assertIn("UNEXPLAINED", text)

    def test_an_unfinished_run_or_an_error_fails(self):
        status, text = self.judge()
        self.assertEqual(status, 1)
        self.assertIn("did not finish", text)
        error = json.dumps({"NonFatalError": {"info": "boom"}})
        status, text = self.judge(error, FINISHED)
        self.assertEqual(status, 1)
        self.assertIn("ERROR", text)

    def test_every_rule_needs_a_reason(self):
        with self.assertRaises(ValueError):
            verdict.rules({"rule": [{"operation": "*", "check": "ST202", "status": 400}]})

    def test_the_project_allowlist_reads_and_gives_reasons(self):
        path = os.path.join(os.path.dirname(__file__), "schemathesis-allowed.toml")
        with open(path, "rb") as allowlist:
            allowed = verdict.rules(tomllib.load(allowlist))
        self.assertTrue(allowed)
        self.assertTrue(all(rule.reason for rule in allowed))


if __name__ == "__main__":
    unittest.main()
