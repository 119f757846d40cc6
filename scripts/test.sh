#!/usr/bin/env bash
# Set up (idempotent) and run the test suite: ./scripts/test.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh dev
# A real browser for the end-to-end test (Debian's chromium); the test skips with a reason if none installs.
if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
    || echo "warning: chromium could not be installed; the browser test will skip"
fi
exec .venv/bin/python -m pytest "$@"
