"""The payment ledger: a payment is posted to the CIS at most once per (biller, PaymentGUID).

Why: payments are money. Retries, re-runs and backfills of `<biller>__payments` list the
same IC payments again; this table says which were already sent and what came of them.

Statuses (``icb_payment_posts.status``):

* ``sending``  - recorded *before* the CIS call; a row still ``sending`` when a run starts
  (a crash mid-call) is in doubt;
* ``posted``   - the CIS accepted it (``cis_reference`` e.g. AUS PendingPaymentID);
* ``refused``  - the CIS answered a business refusal (Success=false / ResponseCode != 0), or
  the payment could not be sent as it is (rule 4 left no account); never resent by itself;
* ``in_doubt`` - sent, no usable answer (timeout, dropped connection, HTTP 500, SOAP fault):
  the CIS may have applied it; never resent by itself;
* ``resend``   - known not sent (CIS not reached), or ops settled it as "send again": the
  next run of the biller sends it, whatever interval the payment belongs to;
* ``ignored``  - ops settled it as handled outside the data pump: never sent.

Ops settle ``in_doubt`` / ``refused`` rows with ``python -m icbridge payments settle``.
Whole account numbers are stored here (ops need them); logs mask them. No Airflow imports.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import Column, DateTime, Integer, String, Table, Text, UniqueConstraint, select, update
from sqlalchemy.exc import IntegrityError

from icbridge.state.db import default_state_url, make_engine, metadata, now
from icbridge.state.schema import ensure_schema

__all__ = [
    "FINAL",
    "NEEDS_OPS",
    "SETTLE_OUTCOMES",
    "PaymentLedger",
    "PaymentRow",
    "payment_posts",
]

payment_posts = Table(
    "icb_payment_posts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("biller_id", String(64), nullable=False),
    Column("payment_guid", String(64), nullable=False),
    Column("account_number", String(64), nullable=False),  # IC's (whole; masked in logs)
    Column("cis_account", String(64), nullable=False),  # as sent (rule 4 applied)
    Column("invoice_number", String(64)),
    Column("amount", String(32), nullable=False),
    Column("convenience_fee", String(32), nullable=False),
    Column("payment_type", String(50), nullable=False),  # as sent (rule 5 applied)
    Column("payment_date", DateTime(timezone=True)),
    Column("cis", String(16), nullable=False),
    # sending | posted | refused | in_doubt | resend | ignored
    Column("status", String(16), nullable=False),
    Column("cis_reference", String(128)),
    Column("message", Text),
    Column("attempts", Integer, nullable=False, default=0),
    Column("run_id", String(255)),
    Column("sent_at", DateTime(timezone=True)),
    Column("answered_at", DateTime(timezone=True)),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("biller_id", "payment_guid", name="uq_icb_payment_post"),
)

FINAL = ("posted", "ignored")
"""Never sent again."""
NEEDS_OPS = ("in_doubt", "refused")
"""Never sent again until ops settle them; a run that meets one fails."""
SETTLE_OUTCOMES = {"posted": "posted", "resend": "resend", "ignore": "ignored"}
"""``settle --outcome`` -> new status."""


@dataclass(frozen=True)
class PaymentRow:
    biller_id: str
    payment_guid: str
    account_number: str
    cis_account: str
    invoice_number: str | None
    amount: str
    status: str
    cis_reference: str | None
    message: str | None
    run_id: str | None
    attempts: int
    payment_date: datetime | None = None


def _row(r) -> PaymentRow:
    return PaymentRow(
        r.biller_id, r.payment_guid, r.account_number, r.cis_account, r.invoice_number, r.amount, r.status,
        r.cis_reference, r.message, r.run_id, r.attempts, r.payment_date,
    )


class PaymentLedger:
    """The payment ledger over the state DB. Every method is one short transaction."""

    def __init__(self, url: str | None = None) -> None:
        self.url = url or default_state_url()
        self.engine = make_engine(self.url)
        ensure_schema(self.engine)

    def dispose(self) -> None:
        self.engine.dispose()

    def _key(self, biller_id: str, payment_guid: str) -> tuple:
        return (payment_posts.c.biller_id == biller_id, payment_posts.c.payment_guid == payment_guid)

    # reading ----------------------------------------------------------------------------
    def get(self, biller_id: str, payment_guid: str) -> PaymentRow | None:
        with self.engine.connect() as conn:
            r = conn.execute(select(payment_posts).where(*self._key(biller_id, payment_guid))).first()
        return None if r is None else _row(r)

    def statuses(self, biller_id: str, payment_guids: Iterable[str]) -> dict[str, str]:
        """PaymentGUID -> status for those of ``payment_guids`` that have a row."""
        guids = list(dict.fromkeys(payment_guids))
        out: dict[str, str] = {}
        with self.engine.connect() as conn:
            for start in range(0, len(guids), 500):
                chunk = guids[start : start + 500]
                rows = conn.execute(
                    select(payment_posts.c.payment_guid, payment_posts.c.status).where(
                        payment_posts.c.biller_id == biller_id, payment_posts.c.payment_guid.in_(chunk)
                    )
                )
                out.update({r.payment_guid: r.status for r in rows})
        return out

    def rows(self, biller_id: str | None = None, *, status: str | None = None, limit: int | None = None
             ) -> list[PaymentRow]:
        """Rows newest first (for ops and tests)."""
        query = select(payment_posts).order_by(payment_posts.c.id.desc())
        if biller_id:
            query = query.where(payment_posts.c.biller_id == biller_id)
        if status:
            query = query.where(payment_posts.c.status == status)
        if limit:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            return [_row(r) for r in conn.execute(query)]

    # writing ----------------------------------------------------------------------------
    def claim(
        self,
        biller_id: str,
        payment_guid: str,
        *,
        account_number: str,
        cis_account: str,
        invoice_number: str | None,
        amount: Decimal,
        convenience_fee: Decimal,
        payment_type: str,
        payment_date: datetime | None,
        cis: str,
        run_id: str,
    ) -> bool:
        """Record ``sending`` before the call. True: this caller may send now. False: the payment
        is already posted, refused, in doubt, ignored, or being sent by another run.

        A new payment is inserted; a ``resend`` row is taken by compare-and-set; a row this
        execution itself left ``sending`` (a not-sent retry inside the execution: ``run_id`` is
        the execution's token, never shared by two executions) is taken again.
        """
        values = {
            "account_number": account_number,
            "cis_account": cis_account,
            "invoice_number": invoice_number or None,
            "amount": f"{amount:.2f}",
            "convenience_fee": f"{convenience_fee:.2f}",
            "payment_type": payment_type,
            "payment_date": payment_date,
            "cis": cis,
            "status": "sending",
            "run_id": run_id,
            "sent_at": now(),
            "answered_at": None,
            "cis_reference": None,
            "updated_at": now(),
        }
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    payment_posts.insert().values(biller_id=biller_id, payment_guid=payment_guid, attempts=1, **values)
                )
            return True
        except IntegrityError:
            pass
        with self.engine.begin() as conn:
            taken = conn.execute(
                update(payment_posts)
                .where(
                    *self._key(biller_id, payment_guid),
                    (payment_posts.c.status == "resend")
                    | ((payment_posts.c.status == "sending") & (payment_posts.c.run_id == run_id)),
                )
                .values(attempts=payment_posts.c.attempts + 1, **values)
            )
            return taken.rowcount == 1

    def finish(self, biller_id: str, payment_guid: str, status: str, *, message: str | None = None,
               cis_reference: str | None = None, run_id: str | None = None) -> bool:
        """The answer (or its absence) after a ``sending`` row's call. With ``run_id`` (the
        caller's token) only a row still ``sending`` and claimed by that caller changes: False
        when another run marked it meanwhile (the answer is then only in the task log)."""
        if status not in ("posted", "refused", "in_doubt", "resend"):
            raise ValueError(f"not a call outcome: {status!r}")
        guard = () if run_id is None else (payment_posts.c.status == "sending", payment_posts.c.run_id == run_id)
        with self.engine.begin() as conn:
            result = conn.execute(
                update(payment_posts)
                .where(*self._key(biller_id, payment_guid), *guard)
                .values(status=status, message=message, cis_reference=cis_reference, answered_at=now(),
                        updated_at=now())
            )
        return result.rowcount == 1

    def refuse_unsent(self, biller_id: str, payment_guid: str, *, account_number: str, amount: Decimal,
                      convenience_fee: Decimal, payment_type: str, cis: str, run_id: str, message: str) -> None:
        """A payment that cannot be sent as it is (e.g. rule 4 leaves no account): ``refused``,
        nothing sent. Kept only if no row exists yet."""
        stamp = now()
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    payment_posts.insert().values(
                        biller_id=biller_id, payment_guid=payment_guid, account_number=account_number,
                        cis_account="", amount=f"{amount:.2f}", convenience_fee=f"{convenience_fee:.2f}",
                        payment_type=payment_type, cis=cis, status="refused", message=message, attempts=0,
                        run_id=run_id, answered_at=stamp, updated_at=stamp,
                    )
                )
        except IntegrityError:
            pass

    def mark_stale_sending(self, biller_id: str, payment_guids: Iterable[str], run_id: str
                           ) -> tuple[list[str], dict[str, str]]:
        """Rows left ``sending`` by any *other* execution (``run_id`` is this execution's token,
        icbridge.state.executions) whose execution is gone (ended, lease lapsed, or never
        registered) become ``in_doubt``: the call went out and no answer was recorded. Rows of
        an execution still alive are left to it. Returns (the GUIDs now in doubt, {GUID: the
        live owner described} for those being sent right now)."""
        from icbridge.state.executions import owner

        changed: list[str] = []
        live: dict[str, str] = {}
        guids = list(payment_guids)
        for start in range(0, len(guids), 500):
            chunk = guids[start : start + 500]
            with self.engine.connect() as conn:
                rows = conn.execute(
                    select(payment_posts.c.payment_guid, payment_posts.c.run_id).where(
                        payment_posts.c.biller_id == biller_id,
                        payment_posts.c.payment_guid.in_(chunk),
                        payment_posts.c.status == "sending",
                        (payment_posts.c.run_id != run_id) | payment_posts.c.run_id.is_(None),
                    )
                ).all()
            owners = {token: owner(self.engine, token) for token in {r.run_id for r in rows}}
            for guid, token in rows:
                found = owners[token]
                if found.alive:
                    live[guid] = found.describe()
                    continue
                with self.engine.begin() as conn:  # compare-and-set: only if still that execution's
                    done = conn.execute(
                        update(payment_posts)
                        .where(*self._key(biller_id, guid), payment_posts.c.status == "sending",
                               (payment_posts.c.run_id == token) if token is not None
                               else payment_posts.c.run_id.is_(None))
                        .values(status="in_doubt", updated_at=now(),
                                message=f"found 'sending' at the start of a run: the execution that sent it "
                                        f"({found.describe()}) ended without recording an answer (crash?)")
                    )
                if done.rowcount == 1:
                    changed.append(guid)
        return changed, live

    def settle(self, biller_id: str, payment_guid: str, outcome: str, *, note: str | None = None,
               by: str | None = None) -> PaymentRow:
        """Ops settle an ``in_doubt`` or ``refused`` payment: ``posted`` (the CIS has it),
        ``resend`` (it does not: the next run sends it once), ``ignore`` (handled outside the
        pump: never sent). ValueError when there is nothing to settle."""
        from icbridge.state.settlements import record

        if outcome not in SETTLE_OUTCOMES:
            raise ValueError(f"outcome must be one of {', '.join(SETTLE_OUTCOMES)}")
        if not (note or "").strip():
            raise ValueError("a settlement needs a reason (--reason: what you checked in the CIS)")
        with self.engine.begin() as conn:
            r = conn.execute(select(payment_posts).where(*self._key(biller_id, payment_guid))).first()
            if r is None:
                raise ValueError(f"no payment {payment_guid} recorded for biller {biller_id}")
            if r.status not in NEEDS_OPS:
                raise ValueError(
                    f"payment {payment_guid} of biller {biller_id} is {r.status!r}: only in_doubt or refused "
                    "payments are settled"
                )
            message = f"settled by ops as {outcome}{f' by {by}' if by else ''} (was {r.status}: {r.message or '-'})"
            if note:
                message += f"; {note}"
            record(conn, kind="payment", biller_id=biller_id, item=payment_guid, from_status=r.status,
                   to_status=SETTLE_OUTCOMES[outcome], by=by, reason=note)
            conn.execute(
                update(payment_posts)
                .where(*self._key(biller_id, payment_guid), payment_posts.c.status == r.status)
                .values(status=SETTLE_OUTCOMES[outcome], message=message, updated_at=now())
            )
        row = self.get(biller_id, payment_guid)
        assert row is not None
        return row
