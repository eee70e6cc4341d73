"""``python -m icbsim.demo``: the whole pipeline on one machine, against the simulators.

    python -m icbsim.demo [--home .demo] [--exit] [--state-db-url URL] [--timeout 300]

1. starts the simulators (:class:`~icbsim.stack.SimStack`: Invoice Cloud, FTPS, SFTP)
   in ``HOME/sim``, with a generated GUID, key and password per biller;
2. starts ``airflow standalone`` in its own session (``AIRFLOW_HOME=HOME/airflow``, SQLite
   metadata DB, this repository's dags/ and plugins/, API server on a free 127.0.0.1 port,
   the connections as ``AIRFLOW_CONN_*`` variables) and waits until it is healthy;
3. drops a generated AUS file (200 bills, BID 123) into demo_aus's FTPS inbox, unpauses
   ``demo_aus__invoices`` and triggers it through the REST API;
4. waits for the run and prints its state, what the IC simulator received, the UI address
   and the login;
5. seeds the CIS simulators and IC with the demo accounts (``icbsim.demo_data.seed_demo``),
   runs ``demo_inhance__balance_all`` (the weekly reconciliation) and prints the address of
   its report page (Browse › Balance All in the UI).

Without ``--exit`` everything stays up until Ctrl-C; with ``--exit`` it stops at once and
exits 0 when the run succeeded, 1 otherwise. Airflow's output is in ``HOME/airflow/standalone.log``.
The Airflow it starts and drives is :mod:`icbsim.local_airflow`'s. ``python -m icbridge.demo``
(scripts/demo.sh, the README) runs this.
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from icbsim.aus_files import make_rows, write_file
from icbsim.demo_data import seed_bills_in_cis, seed_demo
from icbsim.local_airflow import (
    ADMIN,
    PASSWORD_FILE,
    Airflow,
    Api,
    DemoError,
    airflow_env,
    free_port,
    read_admin_password,
    say,
    start_airflow,
    task_summary,
    trigger,
    unpause,
    wait_for_dag,
    wait_for_run,
    wait_healthy,
)
from icbsim.stack import SimStack

DEMO_BILLER = "demo_aus"
DEMO_DAG = f"{DEMO_BILLER}__invoices"
DEMO_BILLS = 200
RECONCILE_DAG = "demo_inhance__balance_all"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m icbsim.demo", description=__doc__.split("\n")[0])
    parser.add_argument("--home", type=Path, default=Path(".demo"), help="demo folder (default: .demo)")
    parser.add_argument("--exit", action="store_true", help="stop after the run; exit 0 if it succeeded")
    parser.add_argument("--state-db-url", help="icbridge state DB (SQLAlchemy URL; default sqlite:///HOME/state.db)")
    parser.add_argument(
        "--timeout", type=float, default=300, help="seconds for Airflow to start and the run to finish (default 300)"
    )
    return parser.parse_args(argv)


def print_received(stack: SimStack) -> None:
    access = stack.access(DEMO_BILLER)
    uploads = stack.ic.uploads(access.biller_guid)
    say(f"Invoice Cloud simulator received {len(uploads)} file(s) for BID {access.biller.bid}:")
    for upload in uploads:
        verdict = f"accepted, FileID {upload['file_id']}" if upload["success"] else f"refused: {upload['message']}"
        say(f"  {upload['file_name']} ({upload['size']} bytes, {upload['invoices']} invoices): {verdict}")
    say(f"  invoices now on file at IC: {len(stack.ic.invoices(access.biller_guid))}")


def run_reconciliation(api: Api, stack: SimStack, deadline: float) -> bool:
    """Run the inHance biller's Balance All as a dry run on the seeded demo accounts, print its outcome.

    Unpausing first lets the weekly schedule's due run go by (it would correct every mismatch
    before the demo's run could show one); the accounts are seeded after it, and the demo's run
    is a dry run (``dry_run: true``): its report keeps the mismatches to look at."""
    unpause(api, RECONCILE_DAG, deadline)
    counts = seed_demo(stack)
    say(f"seeded demo accounts: {', '.join(f'{b} {c}' for b, c in counts.items())}")
    run_id = trigger(api, RECONCILE_DAG, conf={"dry_run": True})
    say(f"triggered {RECONCILE_DAG} run {run_id}; waiting for it")
    state = wait_for_run(api, RECONCILE_DAG, run_id, deadline)
    say(f"Run {run_id} of {RECONCILE_DAG}: {state}")
    for line in task_summary(api, RECONCILE_DAG, run_id):
        say(line)
    return state == "success"


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def run_demo(args: argparse.Namespace) -> int:
    started = time.monotonic()
    home = args.home.resolve()
    if not home.exists():  # secrets (connections, admin password) live below: private by default
        home.mkdir(parents=True)
        home.chmod(0o700)
    airflow_home = home / "airflow"
    stack = SimStack(home / "sim").start()
    airflow: Airflow | None = None
    try:
        for name, address in stack.addresses().items():
            say(f"simulator {name:14} {address}")
        port = free_port()
        env, dropped = airflow_env(home, airflow_home, port, stack, args.state_db_url)
        if dropped:
            say(f"(ignoring inherited {', '.join(dropped)})")
        airflow = start_airflow(env, airflow_home, port)
        say(f"airflow standalone started: pid {airflow.sid} (own session/process group); log {airflow.log_path}")
        deadline = time.monotonic() + args.timeout
        api = Api(airflow.url)
        wait_healthy(api, airflow, deadline)
        say(f"Airflow healthy after {time.monotonic() - started:.0f} s")
        password = read_admin_password(airflow_home, deadline)
        api.login(ADMIN, password)
        wait_for_dag(api, DEMO_DAG, airflow, deadline)
        unpause(api, DEMO_DAG, deadline)

        with tempfile.TemporaryDirectory() as tmp:
            bid = stack.access(DEMO_BILLER).biller.bid
            name = f"{bid}_{datetime.now():%Y%m%d%H%M%S}_UB.TXT"
            seed = time.time_ns() % 1_000_000
            source = write_file(Path(tmp) / name, DEMO_BILLS, bid=bid, seed=seed)
            dropped_at = stack.drop_file(DEMO_BILLER, source)
        known = seed_bills_in_cis(stack, DEMO_BILLER, make_rows(DEMO_BILLS, bid=bid, seed=seed))
        say(f"dropped {name} ({DEMO_BILLS} bills) into {dropped_at.parent}; the AUS CIS knows its {known} accounts")

        run_id = trigger(api, DEMO_DAG)
        say(f"triggered {DEMO_DAG} run {run_id}; waiting for it")
        state = wait_for_run(api, DEMO_DAG, run_id, deadline)
        say()
        say(f"Run {run_id} of {DEMO_DAG}: {state}")
        for line in task_summary(api, DEMO_DAG, run_id):
            say(line)
        print_received(stack)
        say()
        say(f"Airflow UI: {airflow.url}/dags/{DEMO_DAG}")
        say(f"Login: user {ADMIN}, password {password} (stored in {airflow_home / PASSWORD_FILE})")
        say(f"Artifacts (summary.json, rejects.csv): {home / 'artifacts'}")
        state_url = env["ICBRIDGE_STATE_DB_URL"]
        say(f"State DB (ledgers): {state_url}; from a shell: ICBRIDGE_STATE_DB_URL={state_url} "
            f".venv/bin/python -m icbridge ledger show --biller {DEMO_BILLER}")
        ok = state == "success"
        ok = run_reconciliation(api, stack, deadline) and ok
        say(f"Balance All report: {airflow.url}/icbridge/balance-all/ (Browse › Balance All)")
        say(f"Demo took {time.monotonic() - started:.0f} s")
        if not args.exit:
            say("Everything stays up: press Ctrl-C to stop.")
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                say("stopping")
        return 0 if ok else 1
    finally:
        # A second Ctrl-C must not cut the clean-up short (Airflow's session would survive).
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if airflow is not None:
            airflow.stop()
        stack.stop()
        say("Airflow and the simulators are stopped.")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)  # stop like Ctrl-C: Airflow and the simulators too
    try:
        return run_demo(args)
    except KeyboardInterrupt:
        say("interrupted")
        return 130
    except DemoError as exc:
        say(f"demo failed: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
