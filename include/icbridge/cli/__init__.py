"""Command line, without Airflow: map an AUS file to BIF(s), check BIFs, read and settle the state DB.

    python -m icbridge map-aus 123_20261101_UB.TXT --biller include/billers/demo_aus.yaml --out out/
    python -m icbridge check-bif out/123_20261101_UB.BIF
    python -m icbridge ledger|payments|deliveries show|settle ...   (the state DB; docs/operations.md)
    python -m icbridge state-db version|upgrade                     (the state DB's schema)
    python -m icbridge health | pools | biller check ID             (operations)

Exit codes: 0 success; 1 a checked BIF fails; 2 the input file is rejected (file-level
rule), the biller file is broken, there is nothing in doubt to settle, or the command line is wrong.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from icbridge.cli import files, ops, state

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="icbridge", description="Invoice Cloud bridge tools (no Airflow needed).")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    files.add_commands(commands)  # map-aus, sample-aus, check-bif
    ops.add_commands(commands)  # biller check, health, pools
    state.add_commands(commands)  # state-db, ledger, payments, deliveries
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    return int(args.run(args))
