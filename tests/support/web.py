"""The analysts' pages: reconcile runs seeded into a state DB, and tokens the way the api-server
makes them (the auth manager's generate_jwt)."""

from __future__ import annotations

from decimal import Decimal

from icbridge.reconcile.compare import CisAccount, IcAccount, Outcome, Rules, compare, error_item
from icbridge.reconcile.engine import Summary
from icbridge.state.reconcile import FAILED_THRESHOLD, SUCCEEDED, ReconcileStore

D = Decimal
ITEMS = 260  # more than two pages of 100


def seed_runs(store: ReconcileStore, biller: str = "demo_inhance", items: int = ITEMS) -> int:
    """Three past weekly runs (3, 5 and 2 balance mismatches, P0000…) and one current dry run with
    `items` non-matching accounts (+ 40 matches)."""
    for week, mismatches in (("2026-W42", 3), ("2026-W43", 5), ("2026-W44", 2)):
        run_id = store.start_run(biller, week, dag_run_id=f"scheduled__{week}", dry_run=False,
                                 corrections_allowed=True, error_threshold_pct=2)
        summary = Summary()
        for i in range(100):
            balance = "10.00" if i >= mismatches else "11.00"
            item = compare(IcAccount(f"P{i:04d}", "1", D(balance), D(balance)), CisAccount(D("10.00")), Rules())
            summary.add(item)
            if item.is_mismatch:  # stored, so each week is compared with the last (new / still open / resolved)
                store.add_items(run_id, [item])
        store.finish_run(run_id, summary, SUCCEEDED)
    run_id = store.start_run(biller, "2026-W45", dag_run_id="scheduled__2026-W45", dry_run=True,
                             corrections_allowed=True, error_threshold_pct=2)
    summary = Summary()
    stored = []
    for i in range(items + 40):
        account = IcAccount(f"{100000 + i}", f"INV{i}", D(f"{50 + i}.25"), D(f"{50 + i}.25"))
        if i < 40:
            item = compare(account, CisAccount(account.balance_due), Rules())
        elif i % 10 == 0:
            item = error_item(account, Outcome.CIS_ERROR, "SOAP fault: Server busy")
        elif i % 10 == 1:
            item = error_item(account, Outcome.MISSING_IN_CIS, "Account not found")
        else:
            item = compare(account, CisAccount(D("50.00")), Rules())
        summary.add(item)
        if item.outcome is not Outcome.MATCH:
            stored.append(item)
    store.add_items(run_id, stored)
    store.finish_run(run_id, summary, FAILED_THRESHOLD, "too many cis_error")
    return run_id


def token(username: str = "analyst", role: str = "VIEWER") -> str:
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    return get_auth_manager().generate_jwt(SimpleAuthManagerUser(username=username, role=role))


def bearer(value: str | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {value or token()}"}


HTML = {"Accept": "text/html,application/xhtml+xml"}


def store_run(store: ReconcileStore, biller: str, week: str, reported: dict[str, tuple[Outcome, str | None]], *,
              kind: str = "scheduled", dry: bool = False, status: str = SUCCEEDED) -> int:
    """A finished run of ``biller`` whose accounts are ``reported`` (account: outcome and its
    own difference; None for a missing account), run id ``<kind>__<week>``."""
    from icbridge.reconcile.compare import Item

    run_id = store.start_run(biller, week, dag_run_id=f"{kind}__{week}", dry_run=dry, corrections_allowed=False,
                             error_threshold_pct=2.0)
    summary = Summary()
    items = []
    for account, (outcome, difference) in reported.items():
        value = None if difference is None else D(difference)
        item = Item(account, f"I{account}", outcome, difference=value, total_difference=D("0.00"))
        if outcome is Outcome.TOTAL_MISMATCH:
            item.difference, item.total_difference = D("0.00"), value
        items.append(item)
        summary.add(item)
    store.add_items(run_id, items)
    store.finish_run(run_id, summary, status)
    return run_id
