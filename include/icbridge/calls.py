"""Many CIS/IC calls at once, within a biller's bounds: calls in flight, calls per second, retries.

Why one runner: balances, payments, customer changes and Balance All all call a CIS for a
list of accounts. 100,000 accounts must not be 100,000 task instances, and must not hit the
CIS harder than the biller allows. Items are consumed lazily (bounded memory: at most
``in_flight`` x 2 items are held) and results are yielded as they complete.

Retries are the caller's judgement: ``retryable(exc)`` says whether an error is safe to try
again (a read after a timeout is; a payment after a timeout is not: its outcome is unknown).
No Airflow imports.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Generic, TypeVar

import requests

from icbridge.soap.cis import CisFault
from icbridge.soap.errors import HttpStatusError, TlsRefused
from icbridge.soap.invoice_cloud import InvoiceCloudError

T = TypeVar("T")
R = TypeVar("R")

__all__ = ["CallPolicy", "Outcome", "RateLimiter", "call_all", "is_transport_error", "never", "retry_after"]


@dataclass(frozen=True)
class CallPolicy:
    """A biller's bounds for one CIS: calls in flight, calls per second, retry schedule."""

    in_flight: int = 8
    per_second: float = 20.0  # 0 or less: no rate limit
    attempts: int = 3  # tries in all for a retryable error (1: no retry)
    backoff_seconds: float = 0.5  # first wait; doubles, up to max_backoff_seconds
    max_backoff_seconds: float = 10.0

    def __post_init__(self) -> None:
        if self.in_flight < 1:
            raise ValueError("in_flight must be at least 1")
        if self.attempts < 1:
            raise ValueError("attempts must be at least 1")

    def delay(self, attempt: int) -> float:
        """Wait before try ``attempt + 1`` (attempt counts from 1)."""
        return min(self.backoff_seconds * (2 ** (attempt - 1)), self.max_backoff_seconds)


class RateLimiter:
    """Token bucket shared by the worker threads: at most ``per_second`` starts per second."""

    def __init__(self, per_second: float, burst: int = 1) -> None:
        self.interval = 1.0 / per_second if per_second > 0 else 0.0
        self.burst = max(1, burst)
        self._next = time.monotonic()
        self._lock = threading.Lock()

    def acquire(self) -> None:
        if not self.interval:
            return
        with self._lock:
            now = time.monotonic()
            # a quiet spell earns at most `burst` immediate starts
            start = max(self._next, now - self.interval * (self.burst - 1))
            self._next = start + self.interval
        if start > now:
            time.sleep(start - now)


@dataclass(frozen=True)
class Outcome(Generic[T, R]):
    """What became of one item: a result, or the last error after the allowed tries."""

    item: T
    result: R | None
    error: BaseException | None
    attempts: int

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def failure(self) -> BaseException:
        """The last error of an outcome that is not ok (ValueError when asked of one that is)."""
        if self.error is None:
            raise ValueError(f"outcome of {self.item!r} is ok: it has no failure")
        return self.error

    @property
    def value(self) -> R:
        """The result of an outcome that is ok (ValueError when asked of one that is not)."""
        if self.error is not None or self.result is None:
            raise ValueError(f"outcome of {self.item!r} failed: it has no result")
        return self.result


def is_transport_error(exc: BaseException) -> bool:
    """Not sent, sent without an answer (timeouts, dropped connections), HTTP 5xx/408/429 and
    SOAP faults: the peer or the network failed, not the request. Safe to retry for reads and
    idempotent setters only. Not: a TLS refusal (certificate, host name: final), a 3xx/4xx,
    an answer that breaks the contract (MalformedAnswer, MissingValue)."""
    if isinstance(exc, TlsRefused):
        return False
    if isinstance(exc, HttpStatusError):
        return exc.retryable
    return isinstance(exc, (requests.Timeout, requests.ConnectionError, CisFault, InvoiceCloudError))


def retry_after(exc: BaseException) -> float | None:
    """Seconds the peer asked us to wait (HTTP Retry-After), when it did."""
    return getattr(exc, "retry_after", None)


def never(_exc: BaseException) -> bool:
    """Retry policy for calls that move money: an unknown outcome is never retried here."""
    return False


def call_all(
    items: Iterable[T],
    call: Callable[[T], R],
    policy: CallPolicy,
    retryable: Callable[[BaseException], bool] = is_transport_error,
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[Outcome[T, R]]:
    """Run ``call(item)`` for every item with at most ``policy.in_flight`` at once; yield each
    :class:`Outcome` as it completes (not in input order). An error that is not retryable, or
    still failing after ``policy.attempts`` tries, is reported in its Outcome, never raised."""
    limiter = RateLimiter(policy.per_second, burst=policy.in_flight)

    def attempt(item: T) -> Outcome[T, R]:
        tries = 0
        exc: BaseException | None = None
        while True:
            tries += 1
            limiter.acquire()
            try:
                return Outcome(item, call(item), None, tries)
            except Exception as error:  # judged by the policy, reported in the Outcome
                if tries >= policy.attempts or not retryable(error):
                    return Outcome(item, None, error, tries)
                exc = error
            sleep(max(policy.delay(tries), retry_after(exc) or 0.0))

    source = iter(items)
    pending: set[Future[Outcome[T, R]]] = set()
    pool = ThreadPoolExecutor(max_workers=policy.in_flight, thread_name_prefix="icb-call")
    try:
        exhausted = False
        while True:
            while not exhausted and len(pending) < policy.in_flight * 2:
                try:
                    pending.add(pool.submit(attempt, next(source)))
                except StopIteration:
                    exhausted = True
            if not pending:
                return
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                yield future.result()
    finally:  # the consumer left early (an error, a timeout, a signal): no queued call starts now
        pool.shutdown(wait=True, cancel_futures=True)
