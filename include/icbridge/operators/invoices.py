"""Operators of the `<biller>__invoices` DAG: thin shells over icbridge.flows.invoices."""

from __future__ import annotations

import dataclasses
import json
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from icbridge.flows.invoices import UploadAnswer, find_files, process_file
from icbridge.hooks.invoice_cloud import InvoiceCloudHook
from icbridge.hooks.state import get_ledger
from icbridge.hooks.transfer import open_remote_folder
from icbridge.operators.common import (
    BillerOperator,
    artifacts_root,
    final_errors,
    recorded_outcome,
    run_artifacts,
    run_flag,
    task_execution,
)
from icbridge.soap.errors import AnswerError, NoAnswer
from icbridge.soap.invoice_cloud import InvoiceCloudError

__all__ = ["FindAusFilesOperator", "UploadAusFileOperator", "artifacts_root"]


_BillerOperator = BillerOperator  # the old private name, kept for imports elsewhere


class FindAusFilesOperator(BillerOperator):
    """Lists the biller's new AUS files in its inbox (by the naming convention and BID)."""

    ui_color = "#e8f1fb"

    @final_errors
    def execute(self, context: Any) -> list[str]:
        biller = self.biller()
        transfer = biller.invoices_config().transfer
        with open_remote_folder(transfer.protocol, transfer.conn_id) as folder:
            found = find_files(folder, biller)
        for name, reason in found.ignored:
            self.log.warning("ignored %s in %s: %s", name, transfer.inbox, reason)
        if found.ignored:  # the run's record of what the inbox held besides the biller's files
            target = run_artifacts(self.dag_id, context["run_id"])
            target.mkdir(parents=True, exist_ok=True)
            (target / "ignored.json").write_text(json.dumps(
                [{"name": name, "reason": reason} for name, reason in found.ignored], indent=2), encoding="utf-8")
        self.log.info("%d file(s) to process: %s", len(found.files), ", ".join(found.files) or "none")
        return found.files


class UploadAusFileOperator(BillerOperator):
    """Download one AUS file, map and check it, upload each BIF part once, archive the file.

    Retries are safe: parts already uploaded are skipped (state DB). A file-level rejection,
    an IC refusal or an in-doubt part fails the task at once (no retry: it needs a person);
    a file whose trailer is missing is retried (it may still be being written).
    """

    template_fields = ("biller_id", "file_name", "force")
    ui_color = "#fdf1e1"

    def __init__(self, *, file_name: str, force: bool | str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.file_name = file_name
        self.force = force

    @final_errors
    def execute(self, context: Any) -> dict:
        biller = self.biller()
        force = run_flag(context, "force", self.force)
        ic_hook = InvoiceCloudHook(ic_conn_id=biller.ic_conn_id)
        client = ic_hook.get_conn()

        def upload(name: str, content: bytes) -> UploadAnswer:
            # NotSent propagates (the part is retried); no answer or an answer that cannot be
            # judged propagates too (the part stays `sending`: in doubt); a fault is a refusal
            try:
                result = client.upload_invoice_file(name, content)
            except InvoiceCloudError as exc:
                return UploadAnswer(False, f"SOAP fault: {exc.message}", "", 0)
            return UploadAnswer(result.success, result.error_message, result.file_id, result.invoices_accepted)

        run_id = context["run_id"]
        artifacts = run_artifacts(self.dag_id, run_id)
        ledger = get_ledger()
        transfer = biller.invoices_config().transfer
        try:
            with (
                recorded_outcome(biller.biller_id, "invoices", run_id),  # failed (and alerted) until a success
                task_execution(context, ledger.engine) as execution,  # owns the parts it marks `sending`
                tempfile.TemporaryDirectory(prefix=f"icb-{biller.biller_id}-") as workdir,
                open_remote_folder(transfer.protocol, transfer.conn_id) as folder,
            ):
                outcome = process_file(
                    file_name=self.file_name,
                    folder=folder,
                    uploader=upload,
                    ledger=ledger,
                    biller=biller,
                    biller_guid=ic_hook.biller_guid,
                    workdir=Path(workdir),
                    artifacts_dir=artifacts,
                    run_id=execution.token,
                    today=datetime.now(biller.tz).date(),
                    force=force,
                )
        except (NoAnswer, AnswerError) as exc:  # the rest of icbridge's errors: final_errors
            raise AirflowFailException(
                f"{self.file_name}: IC's answer to the upload cannot be judged ({exc}); the part is in doubt "
                "and is not sent again until settled (see docs/operations.md)"
            ) from exc
        finally:
            ledger.dispose()
        self.log.info("artifacts (summary.json, rejects.csv): %s", outcome.artifacts)
        return dataclasses.asdict(outcome)
