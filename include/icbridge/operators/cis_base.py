"""Base of every operator that calls one vendor SOAP method (inHance, AUS, Invoice Cloud).

Why one base: every such call must be judged, logged, retried and reported the same way,
whichever vendor answers. The subclasses (operators/cis.py, operators/invoice_cloud.py) only
say which method, which inputs, and what to keep of the answer.

* Hook: from ``conn_id`` (+ ``method_conn_ids``), or from the biller file (``biller_id`` +
  ``billers_dir``: ``cis_service`` for inHance/AUS, ``ic_conn_id`` for Invoice Cloud).
* Success: ``Success``/``ErrorMessage`` and ``ResponseCode``/``ResponseMessage`` via the
  results' ``ok``/``message`` (IC: ``success``/``error_message``; a view that finds nothing is
  ``not_found``). Each call ends in one status of :data:`STATUSES`.
* Retries: reads and idempotent setters retry transport errors (timeouts, dropped
  connections, HTTP 5xx, SOAP faults) inside the task with backoff (icbridge.calls). Calls
  that move money are tried once, never retried here, and their task gets ``retries=0``:
  a call sent without a usable answer ends ``unknown`` (:class:`CisOutcomeUnknown`).
* Logs: account numbers and emails masked (icbridge.masking) in every line and error.
  XCom keeps them whole (downstream tasks need them; see docs/operators.md).
* Single or batch by argument: without ``items`` one call with the operator's inputs; with
  ``items`` (a list, or ``{"items": [...]}`` as the list operators return) one call per item,
  the operator's inputs its defaults, through :func:`icbridge.calls.call_all` within the
  biller's calls in flight and calls per second; the task returns counts per status and the
  failed items.
* Inputs are each operator's explicit keyword arguments (its signature and docstring; the
  catalogue in docs/operators.md is generated from them, icbridge.operators.catalogue).
"""

from __future__ import annotations

import ast
import json
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, ClassVar

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from icbridge.calls import CallPolicy, Outcome, call_all, is_transport_error, never
from icbridge.config.biller import BillerConfig
from icbridge.errors import SoapError
from icbridge.hooks.invoice_cloud import InvoiceCloudHook
from icbridge.masking import mask_account, mask_email
from icbridge.operators.cis_values import BUSINESS, STATUSES, as_bool, as_datetime, as_money, jsonable, judge
from icbridge.operators.common import final_errors, load_biller_file
from icbridge.soap.cis import CisFault
from icbridge.soap.errors import is_not_sent
from icbridge.soap.invoice_cloud import InvoiceCloudError
from icbridge.vendors import vendor

__all__ = [
    "STATUSES",
    "CisBatchFailed",
    "CisCallOperator",
    "CisOperatorError",
    "CisOutcomeUnknown",
    "CisRefused",
    "CisUnavailable",
    "as_bool",
    "as_datetime",
    "as_money",
    "jsonable",
]

DEFAULT_IN_FLIGHT = 8
DEFAULT_PER_SECOND = 20.0
FAILED_LOG_LINES = 50  # failed items logged one by one (masked); the rest only counted


class CisOperatorError(SoapError):
    """Raised by these operators; ``method`` and ``account`` (masked) name the call."""

    def __init__(self, message: str, method: str = "", account: str = "") -> None:
        super().__init__(message)
        self.method = method
        self.account = account


class CisRefused(CisOperatorError, AirflowFailException):
    """The service refused the call (or the input/payload was invalid): retrying will not help."""


class CisUnavailable(CisOperatorError, AirflowException):
    """Transport errors outlasted the in-task retries; Airflow's own retries may try later."""


class CisOutcomeUnknown(CisOperatorError, AirflowFailException):
    """A money call was sent but no usable answer came: it may have been applied. Never retried."""


class CisBatchFailed(CisOperatorError, AirflowFailException):
    """A batch finished with failures beyond what it was told to accept (summary in XCom "summary")."""


class CisCallOperator(BaseOperator):
    """Calls one vendor method once, or (``items`` given) once for every item.

    Subclasses set ``service`` ("inhance" | "aus" | "invoice_cloud"), ``method``, ``fields``
    (the inputs a single call needs), ``moves_money``, declare their inputs as keyword
    arguments (passed on as ``inputs``) and implement :meth:`invoke` (and :meth:`normalize` /
    :meth:`summarize` when needed). In a batch the inputs are defaults for every item.

    Common arguments: ``biller_id``/``billers_dir`` (the connection and bounds from the biller
    file) or ``conn_id``/``method_conn_ids``; ``timeout`` (s); ``calls_in_flight``,
    ``calls_per_second`` (batch bounds; default the biller's); ``attempts``, ``backoff_seconds``,
    ``max_backoff_seconds`` (reads and idempotent setters; a money call is tried once);
    ``fail_on_business_error`` (default: a single call fails on a refusal, a batch records it);
    ``items``, ``error_threshold_pct``, ``max_failed_items``, ``return_results`` (batch).
    """

    service: ClassVar[str]
    method: ClassVar[str]
    fields: ClassVar[tuple[str, ...]] = ()
    account_field: ClassVar[str | None] = "account_number"
    moves_money: ClassVar[bool] = False
    batchable: ClassVar[bool] = True  # the list operators take no items
    retry: ClassVar[str] = "idempotent"  # "read" | "idempotent": retried on transport errors (a money call: never)
    xcom: ClassVar[str] = "inputs"  # what a call's XCom record keeps besides status/ok/message/attempts (docs)

    template_fields: Sequence[str] = ("biller_id", "conn_id", "items")
    ui_color = "#e9f5ee"

    def __init__(
        self,
        *,
        inputs: Mapping[str, Any] | None = None,
        biller_id: str | None = None,
        billers_dir: str | None = None,
        conn_id: str | None = None,
        method_conn_ids: Mapping[str, str] | None = None,
        timeout: float | None = None,
        calls_in_flight: int | None = None,
        calls_per_second: float | None = None,
        attempts: int = 3,
        backoff_seconds: float = 0.5,
        max_backoff_seconds: float = 10.0,
        fail_on_business_error: bool | None = None,
        items: Any = None,
        error_threshold_pct: float = 0.0,
        max_failed_items: int = 1000,
        return_results: bool = False,
        **kwargs: Any,
    ) -> None:
        values = dict(inputs or {})
        self.batch = items is not None
        if self.batch and not self.batchable:
            raise TypeError(f"{type(self).__name__} takes no items (it lists; a batch goes to the operator it feeds)")
        missing = [name for name in self.fields if values.get(name) is None]
        if missing and not self.batch:  # in a batch each item brings its own
            raise TypeError(f"{type(self).__name__} needs {', '.join(map(repr, missing))} (or items=[...] for a batch)")
        if self.moves_money:
            kwargs["retries"] = 0  # an unknown outcome must never be sent again by Airflow either
        super().__init__(**kwargs)
        self.input_names = tuple(values)
        for name, value in values.items():
            setattr(self, name, value)  # declared (typed) on the subclass
        self.biller_id = biller_id
        self.billers_dir = billers_dir
        self.conn_id = conn_id
        self.method_conn_ids = dict(method_conn_ids or {})
        self.timeout = timeout
        self.calls_in_flight = calls_in_flight
        self.calls_per_second = calls_per_second
        self.attempts = 1 if self.moves_money else attempts
        self.backoff_seconds = backoff_seconds
        self.max_backoff_seconds = max_backoff_seconds
        # a single call fails its task on a business refusal unless told to record and go on;
        # a batch records refusals and goes on unless told otherwise (RTDR rule 3)
        self.fail_on_business_error = (not self.batch) if fail_on_business_error is None else fail_on_business_error
        self.items = items
        self.error_threshold_pct = error_threshold_pct
        self.max_failed_items = max_failed_items
        self.return_results = return_results
        if self.moves_money:
            self.retries = 0

    # what subclasses provide ----------------------------------------------------------------

    def normalize(self, item: dict[str, Any]) -> dict[str, Any]:
        """Coerce and check one item's inputs (ValueError: status ``invalid``, nothing sent)."""
        return item

    def invoke(self, client: Any, item: dict[str, Any]) -> Any:
        raise NotImplementedError

    def summarize(self, item: dict[str, Any], result: Any) -> dict[str, Any]:
        """What to keep in XCom of a successful call besides status/message (JSON-able)."""
        return {k: v for k, v in item.items() if v is not None}

    def judge(self, result: Any) -> tuple[str, str]:
        return judge(result)

    def prepare(self, context: Any, biller: BillerConfig | None) -> None:
        """Per-run settings a subclass needs (e.g. the biller's PayPal type, a destination)."""

    # configuration -------------------------------------------------------------------------

    def load_biller(self) -> BillerConfig | None:
        if not self.biller_id:
            return None
        return load_biller_file(self.biller_id, self.billers_dir)

    def get_hook(self, biller: BillerConfig | None) -> Any:
        if self.service == "invoice_cloud":
            conn_id = self.conn_id or (biller.ic_conn_id if biller else InvoiceCloudHook.default_conn_name)
            return InvoiceCloudHook(ic_conn_id=conn_id)
        hook_class = vendor(self.service).hook_class()
        if self.conn_id or biller is None:
            return hook_class(
                self.conn_id, self.method_conn_ids, timeout=self.timeout, pool_maxsize=self.calls_in_flight
            )
        if biller.cis != self.service:
            raise AirflowFailException(f"biller {biller.biller_id} uses cis {biller.cis}, not {self.service}")
        hook = hook_class.for_biller(biller)
        if self.timeout is not None:
            hook.timeout = self.timeout
        return hook

    def policy(self, biller: BillerConfig | None) -> CallPolicy:
        cis = biller.cis_service if biller is not None and self.service != "invoice_cloud" else None
        in_flight = self.calls_in_flight or (cis.calls_in_flight if cis else DEFAULT_IN_FLIGHT)
        per_second = self.calls_per_second or (cis.calls_per_second if cis else DEFAULT_PER_SECOND)
        return CallPolicy(
            in_flight=int(in_flight) if self.batch else 1,
            per_second=float(per_second),
            attempts=self.attempts,
            backoff_seconds=self.backoff_seconds,
            max_backoff_seconds=self.max_backoff_seconds,
        )

    def retryable(self, exc: BaseException) -> bool:
        return never(exc) if self.moves_money else is_transport_error(exc)

    # masking -------------------------------------------------------------------------------

    def masked_account(self, item: Mapping[str, Any]) -> str:
        account = item.get(self.account_field) if self.account_field else None
        return mask_account(str(account)) if account else "-"

    def safe(self, text: str, item: Mapping[str, Any]) -> str:
        """``text`` with the item's account numbers and any email masked (for logs and errors)."""
        text = str(text)
        keys = ("account_number", "ic_account_number", self.account_field)
        accounts = {str(item[k]) for k in keys if k and item.get(k)}
        for value in sorted(accounts, key=len, reverse=True):  # the IC number holds the CIS one
            text = text.replace(value, mask_account(value))
        return mask_email(text)

    # running -------------------------------------------------------------------------------

    @final_errors
    def execute(self, context: Any) -> dict[str, Any]:
        biller = self.load_biller()
        self.prepare(context, biller)
        client = self.get_hook(biller).get_conn()
        policy = self.policy(biller)
        if self.batch:
            return self._execute_batch(context, client, policy)
        item = {name: getattr(self, name) for name in self.input_names}
        [outcome] = call_all([item], lambda it: self._call(client, it), policy, self.retryable)
        record = self._record(outcome)
        return self._finish(record, item)

    def _call(self, client: Any, raw: dict[str, Any]) -> tuple[dict[str, Any], Any]:
        item = self.normalize(dict(raw))
        return item, self.invoke(client, item)

    def _record(self, outcome: Outcome) -> dict[str, Any]:
        """The JSON-able record of one call (whole account numbers: this goes to XCom, not logs)."""
        if outcome.error is None:
            item, result = outcome.value
            status, message = self.judge(result)
            body = self.summarize(item, result)
        else:
            status, message = self._classify(outcome.error)
            body = {k: v for k, v in outcome.item.items() if v is not None}
        record = {**body, "status": status, "ok": status == "ok", "message": message, "attempts": outcome.attempts}
        return jsonable(record)

    def _classify(self, exc: BaseException) -> tuple[str, str]:
        text = f"{type(exc).__name__}: {exc}"
        if isinstance(exc, ValueError):
            return "invalid", str(exc)
        if self.moves_money:
            if isinstance(exc, CisFault | InvoiceCloudError):  # the peer answered: it refused
                return "refused", f"SOAP fault: {exc}"
            if is_not_sent(exc):
                return "error", f"not sent ({text})"
            return "unknown", f"sent, no usable answer ({text})"
        return "error", text

    def _finish(self, record: dict[str, Any], item: Mapping[str, Any]) -> dict[str, Any]:
        status = record["status"]
        merged = {**item, **record}  # record: the account as sent (rule 4 applied), item: as given
        account = self.masked_account(merged)
        message = self.safe(record["message"], merged)
        where = f"{self.method} for account {account}"
        if status == "ok":
            self.log.info("%s: ok%s", where, f" ({message})" if message else "")
            return record
        if status == "unknown":
            raise CisOutcomeUnknown(
                f"{where}: OUTCOME UNKNOWN — {message}. The call may have been applied; it is not retried. "
                "Check the CIS before sending it again (docs/operators.md).",
                self.method,
                account,
            )
        if status == "error":
            raise CisUnavailable(f"{where} failed after {record['attempts']} tries: {message}", self.method, account)
        if self.fail_on_business_error:
            raise CisRefused(f"{where}: {status}: {message}", self.method, account)
        self.log.warning("%s: %s: %s (recorded, going on)", where, status, message)
        return record

    def _iter_items(self) -> Iterator[dict[str, Any]]:
        items = self.items
        if isinstance(items, str):
            try:
                items = json.loads(items)
            except ValueError:
                items = ast.literal_eval(items)  # a Jinja-rendered Python list
        if isinstance(items, Mapping):
            items = items.get("items", [])
        defaults = {name: getattr(self, name) for name in self.input_names}
        defaults = {k: v for k, v in defaults.items() if v is not None}
        for raw in items or []:
            if not isinstance(raw, Mapping):
                if not self.account_field:
                    raise AirflowFailException(f"{type(self).__name__}: each item must be a mapping, got {raw!r}")
                raw = {self.account_field: str(raw)}
            yield {**defaults, **raw}

    def _execute_batch(self, context: Any, client: Any, policy: CallPolicy) -> dict[str, Any]:
        counts: Counter[str] = Counter({s: 0 for s in STATUSES})
        failed: list[dict[str, Any]] = []
        results: list[dict[str, Any]] = []
        self.log.info(
            "%s batch: at most %d call(s) in flight, %s per second, %d attempt(s) per item",
            self.method, policy.in_flight, policy.per_second, policy.attempts,
        )
        outcomes = call_all(self._iter_items(), lambda it: self._call(client, it), policy, self.retryable)
        for outcome in outcomes:
            record = self._record(outcome)
            counts[record["status"]] += 1
            if record["ok"]:
                if self.return_results:
                    results.append(record)
                continue
            if len(failed) < self.max_failed_items:
                failed.append(record)
            if sum(counts[s] for s in STATUSES if s != "ok") <= FAILED_LOG_LINES:
                merged = {**outcome.item, **record}
                self.log.warning(
                    "%s for account %s: %s: %s",
                    self.method, self.masked_account(merged), record["status"], self.safe(record["message"], merged),
                )
        total = sum(counts.values())
        summary: dict[str, Any] = {
            "service": self.service,
            "method": self.method,
            "total": total,
            "counts": dict(counts),
            "failed": failed,
            "failed_truncated": len(failed) < total - counts["ok"],
        }
        if self.return_results:
            summary["results"] = results
        self.log.info("%s batch done: %d item(s): %s", self.method, total, dict(counts))
        self._judge_batch(context, summary)
        return summary

    def _judge_batch(self, context: Any, summary: dict[str, Any]) -> None:
        counts, total = summary["counts"], summary["total"]
        problem: CisOperatorError | None = None
        if counts["unknown"]:
            problem = CisOutcomeUnknown(
                f"{self.method} batch: {counts['unknown']} call(s) with OUTCOME UNKNOWN (sent, no usable answer; "
                "they may have been applied and are not retried; check the CIS before sending them again)",
                self.method,
            )
        elif total and counts["error"] * 100.0 / total > self.error_threshold_pct:
            problem = CisUnavailable(
                f"{self.method} batch: {counts['error']} of {total} call(s) failed on transport errors "
                f"(threshold {self.error_threshold_pct}%)",
                self.method,
            )
        elif self.fail_on_business_error and any(counts[s] for s in BUSINESS):
            problem = CisBatchFailed(
                f"{self.method} batch: business failures {({s: counts[s] for s in BUSINESS})}", self.method
            )
        if problem is not None:
            context["ti"].xcom_push(key="summary", value=summary)
            raise problem
