"""Command line, without Airflow: map an AUS file to BIF(s), check BIFs, read and settle the state DB.

    python -m icbridge map-aus 123_20261101_UB.TXT --biller include/billers/demo_aus.yaml --out out/
    python -m icbridge check-bif out/123_20261101_UB.BIF
    python -m icbridge ledger|payments|deliveries show|settle ...   (the state DB; docs/operations.md)
    python -m icbridge state-db version|upgrade                     (the state DB's schema)

Exit codes: 0 success; 1 a checked BIF fails; 2 the input file is rejected (file-level
rule), the biller file is broken, there is nothing in doubt to settle, or the command line is wrong.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Iterator, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Any

NO_GUID = "00000000-0000-0000-0000-000000000000"
GUID_ENV = "ICBRIDGE_BILLER_GUID"
REJECTS_FILE = "rejects.csv"
SUMMARY_FILE = "summary.json"


def _iso_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date YYYY-MM-DD") from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="icbridge", description="Invoice Cloud bridge tools (no Airflow needed).")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    m = commands.add_parser(
        "map-aus",
        help="map an AUS IC Daily Export TXT to BIF file(s)",
        description="Map an AUS IC Daily Export TXT to BIF file(s), rejects.csv and summary.json in --out.",
    )
    m.add_argument(
        "input", type=Path, metavar="INPUT.TXT", help="the AUS file; its name must be {BID}_{STAMP}_{TYPE}.TXT"
    )
    m.add_argument("--biller", type=Path, required=True, metavar="BILLER.yaml", help="the biller configuration")
    m.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder for the BIF(s), rejects and summary")
    m.add_argument(
        "--biller-guid",
        metavar="GUID",
        help=f"FH BillerGuid (a secret: normally from the IC connection); default: env {GUID_ENV}",
    )
    m.add_argument(
        "--date",
        type=_iso_date,
        metavar="YYYY-MM-DD",
        help="FH FileCreationDate (default: today in the biller's time zone)",
    )
    m.add_argument("--workers", type=int, default=None, help=argparse.SUPPRESS)
    m.set_defaults(run=_map_aus)

    sample = commands.add_parser(
        "sample-aus",
        help="write a sample AUS IC Daily Export TXT for a biller (to try map-aus or the DAG)",
        description="Write {BID}_{YYYYMMDD}_UB.TXT with --bills generated bills for the biller's BID "
        "(a development tool: needs the repository's simulators, include/icbsim).",
    )
    sample.add_argument("--biller", type=Path, required=True, metavar="BILLER.yaml", help="the biller configuration")
    sample.add_argument("--bills", type=int, default=20, help="how many bills (default 20)")
    sample.add_argument("--out", type=Path, default=Path("."), metavar="DIR", help="folder (default: here)")
    sample.add_argument("--date", type=_iso_date, metavar="YYYY-MM-DD", help="the stamp (default: today)")
    sample.set_defaults(run=_sample_aus)

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

    c = commands.add_parser(
        "check-bif", help="run the pre-upload checks on BIF file(s)", description="Run the pre-upload BIF checks."
    )
    c.add_argument("files", type=Path, nargs="+", metavar="FILE.BIF")
    c.set_defaults(run=_check_bif)

    schema_commands = _state_command(commands, "state-db", "the state DB's schema: its version, or upgrade it",
                                     "The state DB's schema (icb_schema).")
    schema_commands.add_parser("version", help="print the schema version recorded in the state DB").set_defaults(
        run=_schema_version)
    schema_commands.add_parser("upgrade", help="create the missing tables and record this version (the first "
                               "task does the same, under a lock)").set_defaults(run=_schema_upgrade)

    ledger_commands = _state_command(commands, "ledger", "read or settle the upload ledger (state DB)",
                                     "The upload ledger.")
    show = ledger_commands.add_parser("show", help="the latest part uploads")
    show.add_argument("--biller")
    show.add_argument("--limit", type=int, default=20)
    show.set_defaults(run=_ledger_show)
    settle = ledger_commands.add_parser("settle", help="settle an in-doubt part (sent, never answered)")
    settle.add_argument("--biller", required=True)
    settle.add_argument("--file", required=True, help="source file name (.TXT)")
    settle.add_argument("--part", required=True, help="BIF part name (.BIF)")
    settle.add_argument("--as", dest="outcome", required=True, choices=["uploaded", "resend"],
                        help="uploaded: IC has it (skip it); resend: IC does not (send it again)")
    settle.add_argument("--reason", required=True, help="why: what you checked (kept with who and when)")
    settle.add_argument("--force", action="store_true",
                        help="settle even though the run sending the part still holds its lease (only when you "
                             "know that run is dead)")
    settle.set_defaults(run=_ledger_settle)

    pay_commands = _state_command(commands, "payments", "read or settle the payment ledger (state DB)",
                                  "The payment ledger (icb_payment_posts): one row per PaymentGUID sent to a CIS.")
    pshow = pay_commands.add_parser("show", help="the latest payments (or those in one status)")
    pshow.add_argument("--biller")
    pshow.add_argument("--payment-guid", help="one payment, with its message")
    pshow.add_argument("--status", choices=["sending", "posted", "refused", "in_doubt", "resend", "ignored"])
    pshow.add_argument("--limit", type=int, default=20)
    pshow.set_defaults(run=_payments_show)
    psettle = pay_commands.add_parser("settle", help="settle an in-doubt or refused payment")
    psettle.add_argument("--biller", required=True)
    psettle.add_argument("--payment-guid", required=True)
    psettle.add_argument("--outcome", required=True, choices=["posted", "resend", "ignore"],
                         help="posted: the CIS has it (never send); resend: it does not (the next run sends it "
                         "once); ignore: handled outside the data pump (never send)")
    psettle.add_argument("--reason", "--note", dest="reason", required=True,
                         help="why: what you checked in the CIS (kept with who and when; `show` lists it)")
    psettle.set_defaults(run=_payments_settle)

    dlv_commands = _state_command(commands, "deliveries", "read or settle the file deliveries (state DB)",
                                  "The deliveries of generated files to billers (icb_deliveries; the Logis "
                                  "payment export): one row per attempt.")
    dshow = dlv_commands.add_parser("show", help="the latest delivery attempts (or those of one day / status)")
    dshow.add_argument("--biller")
    dshow.add_argument("--flow", help="e.g. payment_export (default: every flow)")
    dshow.add_argument("--day", type=_iso_date, metavar="YYYY-MM-DD", help="the business day of the file")
    dshow.add_argument("--status", choices=["sending", "delivered", "failed"])
    dshow.add_argument("--limit", type=int, default=20)
    dshow.set_defaults(run=_deliveries_show)
    dsettle = dlv_commands.add_parser("settle", help="settle an in-doubt delivery (left 'sending')")
    dsettle.add_argument("--biller", required=True)
    dsettle.add_argument("--day", required=True, type=_iso_date, metavar="YYYY-MM-DD",
                         help="the business day of the file (YYYYMMDD in its name)")
    dsettle.add_argument("--flow", default="payment_export", help="default: payment_export")
    dsettle.add_argument("--outcome", required=True, choices=["delivered", "failed"],
                         help="delivered: the biller has the file (never send it again); failed: it did not "
                         "arrive (the next run sends it)")
    dsettle.add_argument("--reason", required=True, help="why: what you checked (kept with who and when)")
    dsettle.add_argument("--force", action="store_true",
                         help="settle even though the run sending it still holds its lease (only when you know "
                              "that run is dead)")
    dsettle.set_defaults(run=_deliveries_settle)
    return parser


def _state_command(commands: Any, name: str, help_text: str, description: str) -> Any:
    """A ``show|settle`` command over a state-DB table: its ``--db`` option and its actions."""
    command = commands.add_parser(
        name, help=help_text,
        description=f"{description} The state DB is found as the DAGs find it: ICBRIDGE_STATE_DB_URL, else the "
        "Airflow connection icbridge_state (when AIRFLOW_HOME is set), else $AIRFLOW_HOME/icbridge/state.db; "
        "the command prints which one it read and never creates one.",
    )
    command.add_argument("--db", help="SQLAlchemy URL of the state DB (default: as the DAGs find it)")
    return _WithDb(command.add_subparsers(dest=f"{name}_command", required=True, metavar="ACTION"))


class _WithDb:
    """A state command's actions, each taking ``--db`` too: ``ledger --db URL show`` and
    ``ledger show --db URL`` both work (the action's value, when given, wins)."""

    def __init__(self, actions: Any) -> None:
        self.actions = actions

    def add_parser(self, *args: Any, **kwargs: Any) -> argparse.ArgumentParser:
        action = self.actions.add_parser(*args, **kwargs)
        action.add_argument("--db", default=argparse.SUPPRESS,
                            help="SQLAlchemy URL of the state DB (default: as the DAGs find it)")
        return action


def _state_db(args: argparse.Namespace) -> str:
    """The state DB's URL (``--db``, else as the DAGs find it), printed to stderr; SystemExit
    when it is a SQLite file that does not exist (a new empty DB would say "nothing recorded")."""
    from icbridge.state.locate import StateDb, locate_state_db

    found = StateDb(args.db, "--db") if args.db else locate_state_db(ask_airflow=bool(os.environ.get("AIRFLOW_HOME")))
    print(f"state DB: {found.describe()}", file=sys.stderr)
    path = found.sqlite_path
    if path is not None and not path.exists():
        raise SystemExit(_error(
            f"no state DB at {path}: the DAGs write theirs where ICBRIDGE_STATE_DB_URL, the Airflow connection "
            "icbridge_state or AIRFLOW_HOME point; set the same here, or pass --db URL (the demo's is "
            "sqlite:///<checkout>/.demo/state.db)"))
    return found.url


@contextlib.contextmanager
def _disposed(store: Any) -> Iterator[Any]:
    """A state-DB store, its engine disposed after the command."""
    try:
        yield store
    finally:
        store.dispose()


def _delivery_log(args: argparse.Namespace) -> contextlib.AbstractContextManager:
    from icbridge.state.deliveries import DeliveryLog

    return _disposed(DeliveryLog(_state_db(args)))


def _deliveries_show(args: argparse.Namespace) -> int:
    with _delivery_log(args) as log:
        rows = log.history(args.biller, args.flow)
    if args.day:
        rows = [r for r in rows if r.day == args.day.isoformat()]
    if args.status:
        rows = [r for r in rows if r.status == args.status]
    for r in rows[-args.limit :]:
        print(f"{r.biller_id}  {r.flow}  {r.day}  {r.file_name}  {r.status}  by {r.method} to {r.destination}"
              f"  records {r.records}  {r.size} bytes  sha256 {r.sha256[:12]}  run {r.run_id or '-'}"
              f"  started {r.started_at:%Y-%m-%d %H:%M:%S}")
        if r.message:
            print(f"    {r.message}")
    if not rows:
        print("no deliveries recorded")
    _print_settlements(log.engine, "delivery", args.biller)
    return 0


def _deliveries_settle(args: argparse.Namespace) -> int:
    from icbridge.state.db import OwnerAlive

    with _delivery_log(args) as log:
        try:
            changed = log.settle(args.biller, args.flow, args.day, args.outcome, force=args.force, by=_operator(),
                                 reason=args.reason)
        except (OwnerAlive, ValueError) as exc:
            return _error(str(exc))
    if not changed:
        return _error(f"no in-doubt ('sending') {args.flow} delivery of {args.day} for biller {args.biller}")
    print(f"settled the {args.flow} delivery of {args.day} for {args.biller} as {args.outcome}")
    return 0


def _payment_ledger(args: argparse.Namespace) -> contextlib.AbstractContextManager:
    from icbridge.state.payments import PaymentLedger

    return _disposed(PaymentLedger(_state_db(args)))


def _payments_show(args: argparse.Namespace) -> int:
    with _payment_ledger(args) as ledger:
        if args.payment_guid:
            if not args.biller:
                return _error("--payment-guid needs --biller")
            row = ledger.get(args.biller, args.payment_guid)
            rows = [row] if row else []
        else:
            rows = ledger.rows(args.biller, status=args.status, limit=args.limit)
    for r in rows:
        # the whole account is for ops at the terminal (the ledger keeps it); logs mask it
        print(f"{r.biller_id}  {r.payment_guid}  {r.status}  account {r.account_number}"
              f" (sent as {r.cis_account or '-'})  amount {r.amount}  ref {r.cis_reference or '-'}"
              f"  tries {r.attempts}  run {r.run_id or '-'}")
        if r.message and (args.payment_guid or r.status in ("in_doubt", "refused", "resend")):
            print(f"    {r.message}")
    if not rows:
        print("no payments recorded" + (f" for {args.payment_guid}" if args.payment_guid else ""))
    _print_settlements(ledger.engine, "payment", args.biller, args.payment_guid)
    return 0


def _payments_settle(args: argparse.Namespace) -> int:
    with _payment_ledger(args) as ledger:
        try:
            row = ledger.settle(args.biller, args.payment_guid, args.outcome, note=args.reason, by=_operator())
        except ValueError as exc:
            return _error(str(exc))
    print(f"settled {row.payment_guid} of {row.biller_id} as {args.outcome}: now {row.status}")
    return 0


def _ledger(args: argparse.Namespace) -> contextlib.AbstractContextManager:
    from icbridge.state.db import Ledger

    return _disposed(Ledger(_state_db(args)))


def _ledger_show(args: argparse.Namespace) -> int:
    with _ledger(args) as ledger:
        rows = ledger.uploads(args.biller)[-args.limit :]
    for r in rows:
        print(f"{r['biller_id']}  {r['file_name']}  gen {r['generation']}  {r['part_name']}  {r['status']}"
              f"  invoices {r['invoices']}  total {r['total']}  IC FileID {r['ic_file_id'] or '-'}")
    if not rows:
        print("no uploads recorded")
    _print_settlements(ledger.engine, "upload", args.biller)
    return 0


def _ledger_settle(args: argparse.Namespace) -> int:
    from icbridge.state.db import OwnerAlive

    with _ledger(args) as ledger:
        try:
            changed = ledger.settle(args.biller, args.file, args.part, args.outcome, force=args.force,
                                    by=_operator(), reason=args.reason)
        except (OwnerAlive, ValueError) as exc:
            return _error(str(exc))
    if not changed:
        return _error(f"no in-doubt part {args.part} of {args.file} for biller {args.biller}")
    print(f"settled {args.part} of {args.file} as {args.outcome}")
    return 0


def _schema_version(args: argparse.Namespace) -> int:
    from icbridge.state.engine import make_engine
    from icbridge.state.schema import SCHEMA_VERSION, schema_version

    engine = make_engine(_state_db(args))
    try:
        found = schema_version(engine)
    finally:
        engine.dispose()
    print(f"schema version {found if found is not None else 'none (no icbridge tables yet)'}; this icbridge: "
          f"{SCHEMA_VERSION}")
    return 0


def _schema_upgrade(args: argparse.Namespace) -> int:
    from icbridge.state.engine import make_engine
    from icbridge.state.schema import SchemaTooNew, ensure_schema

    engine = make_engine(_state_db(args))
    try:
        version = ensure_schema(engine)
    except SchemaTooNew as exc:
        return _error(str(exc))
    finally:
        engine.dispose()
    print(f"schema version {version}")
    return 0


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


def _print_settlements(engine: Any, kind: str, biller_id: str | None, item: str | None = None) -> None:
    from icbridge.state.settlements import history

    done = history(engine, kind=kind, biller_id=biller_id, item=item, limit=20)
    if done:
        print("settled (newest first):")
        for s in done:
            print(f"  {s.biller_id}  {s.describe()}")


def _operator() -> str:
    """Who runs this command, for the ledgers' "settled by" (the login name, else the uid)."""
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid {os.getuid()}"


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    return args.run(args)


def _error(message: str) -> int:
    """One line on stderr (a multi-line message is joined), exit code 2."""
    print(" | ".join(line for line in str(message).splitlines() if line.strip()), file=sys.stderr)
    return 2


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

    engine = make_engine(_state_db(args))
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


def _sample_aus(args: argparse.Namespace) -> int:
    """A development tool: the bills come from the simulators' generator (icbsim.aus_files),
    which is in the repository (include/icbsim), not in the icbridge package; imported here
    only, so nothing else in the CLI needs it."""
    from datetime import date

    from icbridge.config.biller import BillerConfigError, load_biller

    try:
        from icbsim.aus_files import write_file
    except ImportError:
        return _error("sample-aus is a development tool: it needs the simulators (include/icbsim of the "
                      "repository, on sys.path after scripts/setup.sh), which the icbridge package does not ship")
    try:
        biller = load_biller(args.biller)
    except BillerConfigError as exc:
        return _error(str(exc))
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{biller.bid}_{(args.date or date.today()):%Y%m%d}_UB.TXT"
    write_file(path, args.bills, bid=biller.bid)
    print(path)
    return 0


def _map_aus(args: argparse.Namespace) -> int:
    from icbridge.config.biller import GUID, BillerConfigError, load_biller
    from icbridge.exports import rejects_csv
    from icbridge.layouts.aus import FileRejected
    from icbridge.mapping.aus_to_bif import map_aus

    try:
        config = load_biller(args.biller)
    except OSError as exc:
        return _error(f"{args.biller}: cannot read the biller file: {exc.strerror or exc}")
    except BillerConfigError as exc:
        print(str(exc), file=sys.stderr)  # one line per broken field, each naming file and field
        return 2

    guid = args.biller_guid or os.environ.get(GUID_ENV, "").strip()
    inspection_only = not guid
    if inspection_only:
        guid = NO_GUID
    elif not GUID.match(guid):
        return _error(f"biller GUID {guid!r} is not a GUID like 1918BF19-973B-4930-800E-2005C652C62A")
    try:
        settings = config.invoice_settings(guid)
    except ValueError as exc:
        return _error(f"{args.biller}: invoices: {exc}")
    creation_date = args.date or datetime.now(config.tz).date()

    try:
        with args.input.open("rb"):  # mapped from its path, by ranges: never held whole
            pass
    except OSError as exc:
        return _error(f"{args.input}: cannot read: {exc.strerror or exc}")

    try:
        result = map_aus(args.input, args.input.name, settings, args.out, creation_date, workers=args.workers)
    except FileRejected as exc:
        # map_aus leaves no BIF behind; we write no rejects.csv / summary.json either, so
        # whatever a previous run left in the folder is not rewritten or mixed with this one
        return _error(str(exc))

    _write_atomic(args.out / REJECTS_FILE, rejects_csv(result.rejects))
    _write_atomic(args.out / SUMMARY_FILE, json.dumps(result.summary(), indent=2) + "\n")

    summary = result.summary()
    print(
        f"{summary['source']}: {summary['bills_read']} bills read, {summary['accepted']} accepted, "
        f"{summary['rejected']} rejected"
    )
    for part in summary["bifs"]:
        print(f"  {args.out / part['name']}: {part['invoices']} invoices, total {part['total']}")
    if not summary["bifs"]:
        print("  no invoices: no BIF written")
    for reason, count in sorted(summary["warnings"].items()):
        print(f"  warning: {reason}: {count}")
    if summary["unknown_columns"]:
        print(f"  unknown columns ignored: {', '.join(summary['unknown_columns'])}")
    print(f"  rejects: {args.out / REJECTS_FILE}; summary: {args.out / SUMMARY_FILE}")
    if inspection_only and result.bifs:
        print(
            f"warning: no biller GUID given (--biller-guid or {GUID_ENV}): FH BillerGuid is {NO_GUID}; "
            "the BIF is for inspection, not upload",
            file=sys.stderr,
        )
    return 0


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", encoding="utf-8", newline="") as f:
        f.write(text)
    os.replace(tmp, path)


def _check_bif(args: argparse.Namespace) -> int:
    from icbridge.layouts.bif import check_bif, read_bif

    failed = 0
    for path in args.files:
        try:
            data = path.read_bytes()
        except OSError as exc:
            print(f"FAIL {path}: cannot read: {exc.strerror or exc}")
            failed += 1
            continue
        problems = check_bif(data, path.name)
        if problems:
            failed += 1
            print(f"FAIL {path.name}")
            for problem in problems:
                print(f"  {problem}")
            continue
        fh = read_bif(data).header
        print(f"OK {path.name} ({fh['InvoiceCount']} invoices, total {fh['TotalInvoiceAmount']})")
    return 1 if failed else 0
