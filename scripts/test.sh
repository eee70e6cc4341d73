#!/usr/bin/env bash
# The test command: installs what is missing, then lint, the type checker and the whole test suite.
# Tests that need PostgreSQL/Redis skip with a reason when those are not running
# (and fail instead when CI is set).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/mypy  # the whole product package (pyproject [tool.mypy])
exec .venv/bin/python -m pytest "$@"
