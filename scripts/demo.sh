#!/usr/bin/env bash
# Runs the demo: simulators + Airflow standalone + one AUS file through demo_aus__invoices.
#   bash scripts/demo.sh [--home .demo] [--exit] [--state-db-url URL] [--timeout 300]
# See `python -m icbridge.demo --help` and include/icbsim/demo.py (icbridge.demo runs it).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh && exec .venv/bin/python -m icbridge.demo "$@"
