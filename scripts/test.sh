#!/usr/bin/env bash
# The test command: installs what is missing, then lint, the type checker and the whole test suite.
# Tests that need PostgreSQL/Redis skip with a reason when those are not running
# (and fail instead when CI is set).
#   bash scripts/test.sh [pytest args]         everything: tests/unit, tests/integration, tests/e2e (what CI runs)
#   bash scripts/test.sh --fast [pytest args]  the fast loop: the same lint and type check, then tests/unit only
set -euo pipefail
cd "$(dirname "$0")/.."
fast=0
if [[ "${1:-}" == "--fast" ]]; then
  fast=1
  shift
fi
bash scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/mypy  # the whole product package (pyproject [tool.mypy])
if ((fast)); then
  exec .venv/bin/python -m pytest tests/unit "$@"
fi
exec .venv/bin/python -m pytest "$@"
