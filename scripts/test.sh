#!/usr/bin/env bash
# The test command: installs what is missing, then lint and the whole test suite.
# Tests that need PostgreSQL/Redis skip with a reason when those are not running
# (and fail instead when CI is set).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check .
exec .venv/bin/python -m pytest "$@"
