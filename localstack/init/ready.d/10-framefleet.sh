#!/usr/bin/env bash
# LocalStack ready.d hook: runs once LocalStack accepts requests. Provisioning itself is the
# `provision` compose service (the same `framefleet-provision` the tests use), so this hook only
# checks that the three services framefleet needs are there, and says so in the log. A failing
# hook marks the init stage failed, which keeps the compose healthcheck (and everything that
# depends on it) from going green.
set -euo pipefail

python3 - <<'PY'
import json
import sys
import urllib.request

with urllib.request.urlopen("http://localhost:4566/_localstack/health", timeout=10) as response:
    health = json.load(response)
states = health.get("services", {})
missing = [s for s in ("s3", "sqs", "dynamodb") if states.get(s) not in ("available", "running")]
if missing:
    print(f"framefleet: LocalStack lacks {', '.join(missing)}: {states}", file=sys.stderr)
    sys.exit(1)
print("framefleet: LocalStack ready (s3, sqs, dynamodb); the provision service creates the resources")
PY
