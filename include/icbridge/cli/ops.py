"""``biller check``, ``health``, ``pools``: onboarding and operations on the command line."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from icbridge.cli.common import state_db


def add_commands(commands: Any) -> None:
    biller_commands = commands.add_parser(
        "biller", help="onboarding: check a biller before unpausing it",
        description="Check a biller's file and prove every connection it names (changes nothing).",
    ).add_subparsers(dest="biller_command", required=True, metavar="ACTION")
    bcheck = biller_commands.add_parser(
        "check", help="validate the biller file and prove each connection (IC, CIS, FTPS/SFTP folders, SMTP)",
        description="Validate include/billers/<biller_id>.yaml and prove each connection it names, with the "
        "same hooks and connections as the DAGs (run it with the DAGs' AIRFLOW_HOME). Prints a checklist; "
        "exit 0 when every check passed, 1 otherwise. Nothing is uploaded, paid, sent or created.",
    )
    bcheck.add_argument("biller_id")
    bcheck.add_argument("--billers-dir", type=Path, help="folder of biller files (default: as the DAGs find it)")
    bcheck.set_defaults(run=_biller_check)

    health = commands.add_parser(
        "health",
        help="how far each biller flow got (watermark, lag, items in doubt); exit 1 when one is late, behind or failed",
        description="The Integration health rows of the Airflow UI page, from the state DB and the biller files: "
        "per biller and flow, status, lag against its bound, covered through, last success, items in doubt, "
        "files rejected in 7 days; worst first. Exit 1 when a flow is behind its bound or its last run failed, "
        "0 otherwise: a monitor can run it while Airflow itself is down. The state DB is found as the DAGs "
        "find it (see `payments --help`).",
    )
    health.add_argument("--db", help="SQLAlchemy URL of the state DB (default: as the DAGs find it)")
    health.add_argument("--biller", help="one biller only")
    health.add_argument("--billers-dir", type=Path, help="folder of biller files (default: as the DAGs find it)")
    health.set_defaults(run=_health)

    pools = commands.add_parser(
        "pools", help="the Airflow pools the biller files' tasks take (one per shared endpoint), to create them",
        description="Each endpoint pool (icbridge.dagbuild.pools) the biller files use, the tasks that take it and "
        "the slots each asks; the pool needs at least the largest. --json prints a file for `airflow pools import` "
        "with that minimum as each pool's size: raise it to the endpoint's own limit.",
    )
    pools.add_argument("--billers-dir", type=Path, help="folder of biller files (default: as the DAGs find it)")
    pools.add_argument("--json", action="store_true", help="print an `airflow pools import` file")
    pools.add_argument("--create-missing", action="store_true",
                       help="create, in Airflow's metadata DB, each pool that does not exist yet, with the minimum "
                            "size (an existing pool keeps the size ops gave it); for a deployment's init step")
    pools.set_defaults(run=_pools)


def _biller_check(args: argparse.Namespace) -> int:
    from icbridge.config.biller import default_billers_dir
    from icbridge.preflight import check_biller

    folder = args.billers_dir or default_billers_dir()
    checks = check_biller(folder / f"{args.biller_id}.yaml")
    for check in checks:
        print(check.line())
    failed = [c for c in checks if not c.ok]
    print(f"{len(checks) - len(failed)} of {len(checks)} checks passed"
          + ("" if not failed else ": fix the FAIL lines, then run this again before unpausing the biller"))
    return 1 if failed else 0


def _health(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime, timedelta

    from icbridge.config.biller import default_billers_dir, load_billers
    from icbridge.flows.windows import describe_gap
    from icbridge.state.db import make_engine
    from icbridge.state.health import health_rows

    def when(moment: datetime | None) -> str:
        return "-" if moment is None else f"{moment:%Y-%m-%d %H:%M}"

    engine = make_engine(state_db(args))
    try:
        rows = health_rows(engine, load_billers(args.billers_dir or default_billers_dir()).billers,
                           datetime.now(UTC))
    finally:
        engine.dispose()
    rows = [r for r in rows if not args.biller or r.biller_id == args.biller]
    for r in rows:
        lag = "-" if r.lag is None else describe_gap(max(r.lag, timedelta(0)))
        bound = "" if r.lag_bound is None else f" (bound {describe_gap(r.lag_bound)})"
        print(f"{r.status:<9}  {r.biller_id}  {r.flow}  lag {lag}{bound}  covered through {when(r.covered_through)}"
              f"  last success {when(r.last_success)}  in doubt {'-' if r.in_doubt is None else r.in_doubt}"
              f"  rejected 7d {'-' if r.rejected_7d is None else r.rejected_7d}")
        if r.status == "late" and r.due is not None:
            print(f"    no file since the deadline of {when(r.due)} UTC (last received {when(r.last_received)})")
        if r.status in ("behind", "failed") and r.last_message:
            print(f"    {r.last_message[:500]}")
    if not rows:
        print("no biller flow configured or recorded")
    return 1 if any(r.status in ("late", "behind", "failed") for r in rows) else 0


def _pools(args: argparse.Namespace) -> int:
    import json

    from icbridge.config.biller import default_billers_dir, load_billers
    from icbridge.dagbuild.pools import pools_used

    used = pools_used(load_billers(args.billers_dir or default_billers_dir()).billers)
    if args.create_missing:
        from airflow.models.pool import Pool

        for name, uses in sorted(used.items()):
            if Pool.get_pool(name) is None:
                Pool.create_or_update_pool(name, max(u.slots for u in uses), "icbridge endpoint pool: set its size "
                                           "to the endpoint's limit (docs/deployment.md)", False)
                print(f"created pool {name} with {max(u.slots for u in uses)} slots")
            else:
                print(f"pool {name} exists: kept as it is")
        return 0
    if args.json:
        print(json.dumps({name: {"slots": max(u.slots for u in uses), "include_deferred": False,
                                 "description": f"icbridge endpoint pool ({len(uses)} task(s))"}
                          for name, uses in sorted(used.items())}, indent=2))
        return 0
    for name, uses in sorted(used.items()):
        print(f"{name}: at least {max(u.slots for u in uses)} slots; {len(uses)} task(s)")
        for use in uses:
            print(f"  {use.task}: {use.slots} slots")
    if not used:
        print("no endpoint pools: no biller file has a flow that calls a shared endpoint")
    return 0
