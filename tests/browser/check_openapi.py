"""Checks a running console's answers against crates/mailpipe-console/openapi.json.

Fetches every JSON endpoint of the console at CONSOLE_URL (default http://127.0.0.1:8090) and
validates each 200 answer against the response schema the document gives it, plus a 400 for a
bad range against the Error schema. Needs openapi-schema-validator (PyPI), e.g. in a venv:

    python3 -m venv ~/.cache/mailpipe/openapi-venv
    ~/.cache/mailpipe/openapi-venv/bin/pip install openapi-spec-validator
    ~/.cache/mailpipe/openapi-venv/bin/python tests/browser/check_openapi.py
"""

import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

from openapi_schema_validator import OAS30Validator
from openapi_spec_validator import validate

SPEC_PATH = Path(__file__).resolve().parents[2] / "crates" / "mailpipe-console" / "openapi.json"
CONSOLE_URL = os.environ.get("CONSOLE_URL", "http://127.0.0.1:8090").rstrip("/")

# (path with query, expected status)
REQUESTS = [
    ("/api/overview", 200),
    ("/api/overview?from=0&to=1", 200),
    ("/api/providers?limit=5", 200),
    ("/api/sources", 200),
    ("/api/campaigns", 200),
    ("/api/rejections", 200),
    ("/api/examples?kind=rejection&reason=bad_signature", 200),
    ("/api/examples?kind=dead_letter&reason=unparseable_payload&stage=normalize&limit=2", 200),
    ("/api/lag", 200),
    ("/api/rules", 200),
    ("/api/alerts", 200),
    ("/api/stages", 200),
    ("/api/overview?from=banana", 400),
    ("/api/examples?kind=nonsense&reason=x", 400),
]


def fetch(path):
    try:
        with urllib.request.urlopen(CONSOLE_URL + path, timeout=30) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as err:
        return err.code, json.load(err)


def response_schema(spec, path, status):
    operation = spec["paths"][path.split("?")[0]]["get"]
    answer = operation["responses"][str(status)]
    if "$ref" in answer:
        answer = spec["components"]["responses"][answer["$ref"].rsplit("/", 1)[1]]
    return answer["content"]["application/json"]["schema"]


def main():
    spec = json.loads(SPEC_PATH.read_text())
    validate(spec)
    failures = 0
    for path, want in REQUESTS:
        status, body = fetch(path)
        problems = []
        if status != want:
            problems.append(f"status {status}, expected {want}: {json.dumps(body)[:300]}")
        else:
            schema = {**response_schema(spec, path, status), "components": spec["components"]}
            validator = OAS30Validator(schema)
            problems = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(body)]
        print(f"{'ok  ' if not problems else 'FAIL'} {path}")
        for problem in problems[:10]:
            print(f"       {problem}")
        failures += bool(problems)
    print(f"{len(REQUESTS) - failures} passed, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
