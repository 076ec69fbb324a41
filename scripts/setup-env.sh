#!/usr/bin/env bash
# Create (or bring up to date) the project's virtual environment .venv from uv.lock.
# Needs only Python 3.10-3.13 (PYTHON, default python3) and a package index: if the pinned
# uv is not on PATH, it is installed from PyPI into .tools/uv first (git-ignored).
# Idempotent: quick when .venv already matches the lock.
# `setup-env.sh lock` first re-resolves uv.lock from pyproject.toml (needs PyPI): `make lock`.
set -euo pipefail
cd "$(dirname "$0")/.."

uv_version=0.13.9  # keep equal to [tool.uv] required-version in pyproject.toml
python=${PYTHON:-python3}
if ! "$python" -c 'import sys; sys.exit(not (3, 10) <= sys.version_info[:2] <= (3, 13))' 2>/dev/null; then
  echo "setup-env: needs Python 3.10 to 3.13, found $("$python" --version 2>&1 || echo "no $python"); set PYTHON=/path/to/python3.X" >&2
  exit 1
fi

uv=uv
if ! { command -v uv >/dev/null && [ "$(uv --version | cut -d' ' -f2)" = "$uv_version" ]; }; then
  uv=.tools/uv/bin/uv
  if ! { [ -x "$uv" ] && [ "$("$uv" --version | cut -d' ' -f2)" = "$uv_version" ]; }; then
    echo "setup-env: installing uv $uv_version from PyPI into .tools/uv" >&2
    rm -rf .tools/uv
    if ! "$python" -m venv .tools/uv; then
      echo "setup-env: $python cannot create a virtual environment; install its venv module" \
        "(Debian/Ubuntu: apt install python3-venv) or put uv $uv_version on PATH" >&2
      exit 1
    fi
    .tools/uv/bin/python -m pip install --quiet --disable-pip-version-check "uv==$uv_version"
  fi
fi

if [ "${1:-}" = lock ]; then
  "$uv" lock
fi

# The team tracking server and its tests need PostgreSQL's programs (initdb, pg_ctl; README
# "Working as a team"). Install Debian's package where we can; elsewhere say what is missing.
if ! command -v initdb >/dev/null && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup-env: installing PostgreSQL from Debian's packages" >&2
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; } \
        >/tmp/setup-env-apt.log 2>&1; then
      echo "setup-env: warning: could not install PostgreSQL (see /tmp/setup-env-apt.log): the" \
        "team tracking server and the end-to-end tests need it" >&2
    fi
  else
    echo "setup-env: warning: PostgreSQL (initdb, pg_ctl) not found: the team tracking server" \
      "and the end-to-end tests need it (Debian/Ubuntu: apt install postgresql; macOS:" \
      "brew install postgresql@16, then put \$(brew --prefix postgresql@16)/bin on PATH)" >&2
  fi
fi

# The browser test of `mnist-ae ui` (tests/test_ui.py) opens the MLflow UI in a headless
# Chromium. Install Debian's package where we can; elsewhere say what is missing.
if ! command -v chromium >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup-env: installing Chromium from Debian's packages" >&2
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } \
        >>/tmp/setup-env-apt.log 2>&1; then
      echo "setup-env: warning: could not install Chromium (see /tmp/setup-env-apt.log): the" \
        "browser test of \`mnist-ae ui\` (tests/test_ui.py) needs it" >&2
    fi
  else
    echo "setup-env: warning: chromium not found: the browser test of \`mnist-ae ui\`" \
      "(tests/test_ui.py) needs it and skips without it (Debian/Ubuntu: apt install chromium)" >&2
  fi
fi

# --locked: install exactly uv.lock, and stop if it no longer matches pyproject.toml (then run
# `make lock`). No Python downloads: use $python. --link-mode copy: the environment shares no
# files with uv's cache. --compile-bytecode: write every .pyc now (about 15 s once; a no-op when
# they are current). Without them, where PYTHONDONTWRITEBYTECODE is set (as on our development
# machines), every process compiles TensorFlow's ~3,000 modules from source: `import tensorflow`
# took 8.9 s instead of 4.2 s (AMD EPYC), paid by each DVC stage and each test subprocess.
if [ ! -x .venv/bin/python ]; then
  echo "setup-env: installing .venv from uv.lock (first time: a few minutes)" >&2
fi
UV_PYTHON_DOWNLOADS=never "$uv" sync --locked --python "$python" --link-mode copy --compile-bytecode --quiet
