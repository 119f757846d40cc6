#!/usr/bin/env bash
# Set up (idempotent) and start the dashboard: ./scripts/run.sh [streamlit args]
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
exec .venv/bin/streamlit run app.py "$@"
