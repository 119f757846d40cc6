#!/usr/bin/env bash
# Create .venv and install pinned requirements (runtime, or dev = runtime + test tools). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
want=requirements.txt
[ "${1:-}" = dev ] && want=requirements-dev.txt
[ -x .venv/bin/python ] || python3 -m venv .venv
stamp=".venv/.installed-$(cat requirements.txt requirements-dev.txt pyproject.toml | sha256sum | cut -c1-16)-$(basename $want)"
if [ ! -f "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -r "$want"
  .venv/bin/python -m pip install -q --no-deps --no-build-isolation -e .  # vitdash itself (pyproject.toml)
  touch "$stamp"
fi
