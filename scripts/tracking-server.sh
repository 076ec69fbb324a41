#!/usr/bin/env bash
# The team's MLflow tracking server (PostgreSQL backend, proxied artifacts, basic auth):
#   scripts/tracking-server.sh [--dir DIR] start [--host H] [--port P] [--db-port P] [--workers N]
#                                               [--allowed-hosts H] [--default-permission P]
#   scripts/tracking-server.sh [--dir DIR] stop | status | add-user NAME
# (`scripts/tracking-server.sh start --help` says more.)
# Its folder: --dir, else $MNIST_AE_SERVER_DIR, else .tracking-server/ in this repository.
# The first start needs MLFLOW_AUTH_ADMIN_PASSWORD. README "Working as a team"; the code is
# src/mnist_ae/team_server.py.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
if [ ! -x "$root/.venv/bin/python" ]; then
  echo "tracking-server: no .venv; run bash scripts/setup-env.sh first" >&2
  exit 1
fi
export MNIST_AE_SERVER_DIR="${MNIST_AE_SERVER_DIR:-$root/.tracking-server}"
PYTHONPATH="$root/src" exec "$root/.venv/bin/python" -m mnist_ae.team_server "$@"
