"""``/icbridge/health/{biller}/doubts``: what of one biller waits for a person, and who settled
what (issue 21). The health page's "in doubt" counts link here.

Lists the payments in doubt, refused or being sent, the upload parts and deliveries left
``sending`` (each with the run that owns it, alive or gone), and the biller's last 50
settlements (icbridge.state.settlements). Accounts are masked (ops see them whole with
``python -m icbridge payments show``). Reads the state DB only; settling stays a command.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, select

from icbridge.masking import mask_account
from icbridge.state.db import invoice_uploads, source_files
from icbridge.state.deliveries import deliveries
from icbridge.state.executions import owner
from icbridge.state.payments import NEEDS_OPS, payment_posts
from icbridge.state.schema import ensure_schema
from icbridge.state.settlements import history

__all__ = ["doubts"]


def doubts(engine: Engine, biller_id: str) -> dict[str, Any]:
    """The page's context: ``items`` (kind, item, status, detail, owner) and ``settled``."""
    ensure_schema(engine)
    items: list[tuple[str, str, str, str, str]] = []
    with engine.connect() as conn:
        for r in conn.execute(select(payment_posts).where(payment_posts.c.biller_id == biller_id,
                                                          payment_posts.c.status.in_([*NEEDS_OPS, "sending"]))
                              .order_by(payment_posts.c.id)):
            items.append(("payment", r.payment_guid, r.status,
                          f"account {mask_account(r.account_number)}, {r.amount}: {r.message or ''}", r.run_id or ""))
        for r in conn.execute(
            select(source_files.c.file_name, invoice_uploads.c.part_name, invoice_uploads.c.message,
                   invoice_uploads.c.run_id)
            .join(source_files, source_files.c.id == invoice_uploads.c.source_file_id)
            .where(source_files.c.biller_id == biller_id, invoice_uploads.c.status == "sending",
                   invoice_uploads.c.generation == source_files.c.generation)):
            items.append(("upload", f"{r.file_name} {r.part_name}", "sending", r.message or "", r.run_id or ""))
        for r in conn.execute(select(deliveries).where(deliveries.c.biller_id == biller_id,
                                                       deliveries.c.status == "sending")):
            items.append(("delivery", f"{r.flow} {r.day} {r.file_name}", "sending", r.destination, r.run_id or ""))
    owners = {token: owner(engine, token).describe() if token else "-" for *_, token in items}
    return {"items": [(kind, item, status, detail, owners[token]) for kind, item, status, detail, token in items],
            "settled": history(engine, biller_id=biller_id, limit=50)}
