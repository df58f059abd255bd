"""Sign-in for scripts/schemathesis.sh: an admin's access token, renewed whenever it dies.

The operations run as an admin, so the admin-only ones are exercised past their 403. Some
generated requests end that sign-in: deleting the account, signing out everywhere, changing
the password, lowering the account's role. A fixed token would then leave every later
operation answering 401 or 403. This provider signs in again when an answer is 401 or 403
(schemathesis replays the request once with the new token, and stops retrying an operation
whose answer did not depend on the token), and when the account can no longer sign in or is
no longer an admin, it makes a new admin with `basis admin create-user`, the operator's way.
"""

import base64
import json
import os
import subprocess
import urllib.error
import urllib.request

import schemathesis

BASE = os.environ["BASIS_FUZZ_BASE"]
BASIS = os.environ["BASIS_FUZZ_BIN"]
DATA_DIR = os.environ["BASIS_FUZZ_DATA_DIR"]
PASSWORD = os.environ["BASIS_FUZZ_PASSWORD"]


def _post(path, body):
    request = urllib.request.Request(
        BASE + path,
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def _role(token):
    payload = token.split(".")[1]
    payload += "=" * (-len(payload) % 4)
    return json.loads(base64.urlsafe_b64decode(payload)).get("role")


def _log(line):
    # Kept beside the server log in the run's temporary directory.
    with open(os.path.join(DATA_DIR, "auth.log"), "a") as log:
        log.write(line + "\n")


class SignedIn:
    """The fuzz admin's token; a new admin when the old one can no longer serve."""

    def __init__(self):
        self.admins = 0
        self.email = None

    def _new_admin(self):
        self.admins += 1
        self.email = f"fuzz-admin-{self.admins}@example.com"
        subprocess.run(
            [BASIS, "admin", "create-user", "--role", "admin", "--email", self.email,
             "--data-dir", DATA_DIR],
            input=PASSWORD + "\n", text=True, check=True, capture_output=True,
        )
        _log(f"new admin {self.email}")

    def get(self, case, context):
        if self.email is not None:
            try:
                token = _post("/auth/login", {"email": self.email, "password": PASSWORD})["accessToken"]
                if _role(token) == "admin":
                    return token
                _log(f"{self.email} is no longer an admin")
            except urllib.error.HTTPError as error:
                _log(f"sign-in as {self.email}: {error.code} {error.read()[:200]!r}")
        self._new_admin()
        return _post("/auth/login", {"email": self.email, "password": PASSWORD})["accessToken"]

    def set(self, case, token, context):
        case.headers = case.headers or {}
        case.headers["Authorization"] = f"Bearer {token}"


schemathesis.auth(retry_on=[401, 403])(SignedIn)
