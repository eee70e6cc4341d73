"""``map-aus``, ``sample-aus``, ``check-bif``: AUS files and BIFs on the command line."""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from icbridge.cli.common import error, iso_date

NO_GUID = "00000000-0000-0000-0000-000000000000"
GUID_ENV = "ICBRIDGE_BILLER_GUID"
REJECTS_FILE = "rejects.csv"
SUMMARY_FILE = "summary.json"


def add_commands(commands: Any) -> None:
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
        type=iso_date,
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
    sample.add_argument("--date", type=iso_date, metavar="YYYY-MM-DD", help="the stamp (default: today)")
    sample.set_defaults(run=_sample_aus)
    c = commands.add_parser(
        "check-bif", help="run the pre-upload checks on BIF file(s)", description="Run the pre-upload BIF checks."
    )
    c.add_argument("files", type=Path, nargs="+", metavar="FILE.BIF")
    c.set_defaults(run=_check_bif)


def _sample_aus(args: argparse.Namespace) -> int:
    """A development tool: the bills come from the simulators' generator (icbsim.aus_files),
    which is in the repository (include/icbsim), not in the icbridge package; imported here
    only, so nothing else in the CLI needs it."""
    from datetime import date

    from icbridge.config.biller import BillerConfigError, load_biller

    try:
        from icbsim.aus_files import write_file
    except ImportError:
        return error("sample-aus is a development tool: it needs the simulators (include/icbsim of the "
                      "repository, on sys.path after scripts/setup.sh), which the icbridge package does not ship")
    try:
        biller = load_biller(args.biller)
    except BillerConfigError as exc:
        return error(str(exc))
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
        return error(f"{args.biller}: cannot read the biller file: {exc.strerror or exc}")
    except BillerConfigError as exc:
        print(str(exc), file=sys.stderr)  # one line per broken field, each naming file and field
        return 2

    guid = args.biller_guid or os.environ.get(GUID_ENV, "").strip()
    inspection_only = not guid
    if inspection_only:
        guid = NO_GUID
    elif not GUID.match(guid):
        return error(f"biller GUID {guid!r} is not a GUID like 1918BF19-973B-4930-800E-2005C652C62A")
    try:
        settings = config.invoice_settings(guid)
    except ValueError as exc:
        return error(f"{args.biller}: invoices: {exc}")
    creation_date = args.date or datetime.now(config.tz).date()

    try:
        with args.input.open("rb"):  # mapped from its path, by ranges: never held whole
            pass
    except OSError as exc:
        return error(f"{args.input}: cannot read: {exc.strerror or exc}")

    try:
        result = map_aus(args.input, args.input.name, settings, args.out, creation_date, workers=args.workers)
    except FileRejected as exc:
        # map_aus leaves no BIF behind; we write no rejects.csv / summary.json either, so
        # whatever a previous run left in the folder is not rewritten or mixed with this one
        return error(str(exc))

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
