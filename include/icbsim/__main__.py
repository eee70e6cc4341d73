"""``python -m icbsim``: run the simulator stack (IC SOAP, FTPS, SFTP) until stopped.

    python -m icbsim [--host 127.0.0.1] [--state-dir DIR] [--env-file FILE]

Prints where each server listens and the connection ids it serves; ``--env-file`` gets the
``AIRFLOW_CONN_<ID>='{...}'`` lines (mode 0600: they hold the generated secrets), ready for
``set -a; . FILE`` or docker-compose's ``env_file``. Stops cleanly on SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

from icbsim.demo_data import seed_demo
from icbsim.demo_payments import seed_logis_payments
from icbsim.stack import SimStack


def shell_quote(value: str) -> str:
    """Single-quoted for sh (and docker-compose env files, as long as there is no quote in it)."""
    return "'" + value.replace("'", "'\\''") + "'"


def write_env_file(path: Path, env: Mapping[str, str]) -> None:
    """``NAME='value'`` lines, written to a 0600 file (an existing one is tightened first)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write("# Airflow connections to the icbridge simulators (generated; secrets: do not commit)\n")
        for name, value in sorted(env.items()):
            out.write(f"{name}={shell_quote(value)}\n")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m icbsim", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="listen address: loopback (default 127.0.0.1), or 0.0.0.0 inside a container only",
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=Path(".demo/sim"),
        help="state folder, secrets included (default: .demo/sim, git-ignored in the repo root)",
    )
    parser.add_argument("--env-file", type=Path, help="write the AIRFLOW_CONN_* variables here (mode 0600)")
    parser.add_argument(
        "--no-demo-data", action="store_true", help="do not seed the CIS simulators and IC with the demo accounts"
    )
    parser.add_argument(
        "--billers-dir", type=Path, help="biller YAML folder (default: $ICBRIDGE_BILLERS_DIR or include/billers)"
    )
    parser.add_argument(
        "--public-host", help="host name written into the connections (default: --host, or 127.0.0.1 for 0.0.0.0)"
    )
    for name in ("soap", "ftps", "sftp"):
        parser.add_argument(f"--{name}-port", type=int, default=0, help=f"{name.upper()} port (default: a free one)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stop = threading.Event()

    def _on_signal(signum: int, _frame: object) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    stack = SimStack(
        args.state_dir,
        host=args.host,
        billers_dir=args.billers_dir,
        public_host=args.public_host,
        soap_port=args.soap_port,
        ftps_port=args.ftps_port,
        sftp_port=args.sftp_port,
    )
    try:
        stack.start()
        try:
            if not args.no_demo_data:
                for biller_id, counts in seed_demo(stack).items():
                    print(f"demo data     {biller_id}: {counts}")
                for biller_id, count in seed_logis_payments(stack).items():
                    print(f"demo data     {biller_id}: {count} CloudPay payments (payment export)")
            for name, address in stack.addresses().items():
                print(f"{name:14} {address}")
            print(f"{'FTPS CA':14} {stack.ca_file}")
            for path, message in stack.skipped.items():
                print(f"skipped biller file {path}: {message}", file=sys.stderr)
            for biller_id, item in sorted(stack.billers.items()):
                conns = [item.biller.ic_conn_id]
                if item.biller.invoices is not None:
                    conns.append(item.biller.invoices.transfer.conn_id)
                if item.biller.cis_service is not None:
                    conns.extend(item.biller.cis_service.conn_ids())
                if item.biller.payment_export is not None:
                    conns.append(item.biller.payment_export.conn_id)
                where = f", inbox {item.inbox}" if item.inbox else ""
                print(f"biller {biller_id}: connections {', '.join(conns)}{where}")
            if args.env_file:
                write_env_file(args.env_file, stack.env())
                print(f"connections written to {args.env_file} (mode 0600)")
            print(f"secrets kept in {stack.state_dir / 'secrets.json'}; Ctrl-C to stop", flush=True)
            while not stop.wait(0.5):
                pass
        finally:
            stack.stop()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print("simulators stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
