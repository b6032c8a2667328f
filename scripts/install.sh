#!/usr/bin/env bash
# Install Fine-Tune Lens into ./.venv (idempotent). With --test, also the test tools and the
# Debian packages the tests need (chromium for the browser test).
#
#   bash scripts/install.sh          # the dashboard
#   bash scripts/install.sh --test   # the dashboard + everything the test suite needs
set -euo pipefail
cd "$(dirname "$0")/.."

want_tests=0
[ "${1:-}" = "--test" ] && want_tests=1
PYTHON=${PYTHON:-python3}

if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "Fine-Tune Lens needs Python 3.11 or newer; set PYTHON=/path/to/python3.11" >&2
  exit 1
fi
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv

reqs=requirements.txt
[ "$want_tests" = 1 ] && reqs=requirements-test.txt
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r "$reqs"

if [ "$want_tests" = 1 ] && [ ! -x /usr/bin/chromium ]; then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  echo "Installing Debian's chromium for the browser test…" >&2
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends chromium
fi
echo "Installed into .venv" >&2
