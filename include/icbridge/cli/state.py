"""``state-db``, ``ledger``, ``payments``, ``deliveries``: read and settle the state DB
(docs/operations.md); every settlement records who, when and why."""

from __future__ import annotations

import argparse
import contextlib
from typing import Any

from icbridge.cli.common import disposed, error, iso_date, operator, state_db


def add_commands(commands: Any) -> None:
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
    dshow.add_argument("--day", type=iso_date, metavar="YYYY-MM-DD", help="the business day of the file")
    dshow.add_argument("--status", choices=["sending", "delivered", "failed"])
    dshow.add_argument("--limit", type=int, default=20)
    dshow.set_defaults(run=_deliveries_show)
    dsettle = dlv_commands.add_parser("settle", help="settle an in-doubt delivery (left 'sending')")
    dsettle.add_argument("--biller", required=True)
    dsettle.add_argument("--day", required=True, type=iso_date, metavar="YYYY-MM-DD",
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


def _delivery_log(args: argparse.Namespace) -> contextlib.AbstractContextManager:
    from icbridge.state.deliveries import DeliveryLog

    return disposed(DeliveryLog(state_db(args)))


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
            changed = log.settle(args.biller, args.flow, args.day, args.outcome, force=args.force, by=operator(),
                                 reason=args.reason)
        except (OwnerAlive, ValueError) as exc:
            return error(str(exc))
    if not changed:
        return error(f"no in-doubt ('sending') {args.flow} delivery of {args.day} for biller {args.biller}")
    print(f"settled the {args.flow} delivery of {args.day} for {args.biller} as {args.outcome}")
    return 0


def _payment_ledger(args: argparse.Namespace) -> contextlib.AbstractContextManager:
    from icbridge.state.payments import PaymentLedger

    return disposed(PaymentLedger(state_db(args)))


def _payments_show(args: argparse.Namespace) -> int:
    with _payment_ledger(args) as ledger:
        if args.payment_guid:
            if not args.biller:
                return error("--payment-guid needs --biller")
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
            row = ledger.settle(args.biller, args.payment_guid, args.outcome, note=args.reason, by=operator())
        except ValueError as exc:
            return error(str(exc))
    print(f"settled {row.payment_guid} of {row.biller_id} as {args.outcome}: now {row.status}")
    return 0


def _ledger(args: argparse.Namespace) -> contextlib.AbstractContextManager:
    from icbridge.state.db import Ledger

    return disposed(Ledger(state_db(args)))


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
                                    by=operator(), reason=args.reason)
        except (OwnerAlive, ValueError) as exc:
            return error(str(exc))
    if not changed:
        return error(f"no in-doubt part {args.part} of {args.file} for biller {args.biller}")
    print(f"settled {args.part} of {args.file} as {args.outcome}")
    return 0


def _schema_version(args: argparse.Namespace) -> int:
    from icbridge.state.engine import make_engine
    from icbridge.state.schema import SCHEMA_VERSION, schema_version

    engine = make_engine(state_db(args))
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

    engine = make_engine(state_db(args))
    try:
        version = ensure_schema(engine)
    except SchemaTooNew as exc:
        return error(str(exc))
    finally:
        engine.dispose()
    print(f"schema version {version}")
    return 0


def _print_settlements(engine: Any, kind: str, biller_id: str | None, item: str | None = None) -> None:
    from icbridge.state.settlements import history

    done = history(engine, kind=kind, biller_id=biller_id, item=item, limit=20)
    if done:
        print("settled (newest first):")
        for s in done:
            print(f"  {s.biller_id}  {s.describe()}")
