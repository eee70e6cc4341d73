"""Runtime fault injection for the SOAP simulators (inHance, AUS; usable by any handler).

Why one mechanism: tests and benchmarks must provoke the same failure kinds on every
simulated service (slow answers, business refusals, HTTP 500, SOAP faults, dropped
connections, answers that arrive after the client gave up) without restarting anything.

    sim.faults.set("MakePaymentExtended", kind="late", seconds=3, times=1)
    sim.faults.set(kind="business", rate=0.1, seed=7)      # 10 % of every method, reproducible
    sim.faults.clear()

A rule for the method wins over the ``"*"`` rule. ``rate`` is the share of matching calls the
rule hits, drawn from ``random.Random(seed)`` (deterministic for a given call order);
``times`` caps the hits, after which the rule is spent and removed.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from icbsim.soapserver import DropConnection, Handler, HttpError, SoapFault

__all__ = ["ALL", "KINDS", "FaultRule", "Faults"]

ALL = "*"
KINDS = ("latency", "business", "http500", "fault", "drop", "late", "non_pdf")
DEFAULT_MESSAGE = "Simulated failure"


@dataclass
class FaultRule:
    kind: str
    seconds: float = 0.0
    rate: float = 1.0
    times: int | None = None
    message: str | None = None
    rng: random.Random = field(default_factory=random.Random, repr=False)
    hits: int = 0


class Faults:
    """Fault rules of one simulator, by method name (or ``"*"``); thread-safe."""

    def __init__(self) -> None:
        self._rules: dict[str, FaultRule] = {}
        self._lock = threading.Lock()
        self.fired: list[tuple[str, str]] = []  # (method, kind) of every hit, for tests
        self.in_flight: dict[str, int] = {}  # calls being answered now, by method
        self.peak: dict[str, int] = {}  # the most ever answered at once, by method (a bound's test reads it)

    def set(
        self,
        method: str = ALL,
        *,
        kind: str,
        seconds: float = 0.0,
        rate: float = 1.0,
        times: int | None = None,
        seed: int = 0,
        message: str | None = None,
    ) -> None:
        """Install (or replace) the rule for ``method``; see the module docstring for the kinds."""
        if kind not in KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; known: {', '.join(KINDS)}")
        if not 0.0 <= rate <= 1.0:
            raise ValueError("rate must be between 0 and 1")
        if seconds < 0 or (times is not None and times < 1):
            raise ValueError("seconds must be >= 0 and times >= 1")
        rule = FaultRule(kind, float(seconds), float(rate), times, message, random.Random(seed))
        with self._lock:
            self._rules[method] = rule

    def clear(self, method: str | None = None) -> None:
        """Remove the rule of ``method`` (None: every rule)."""
        with self._lock:
            if method is None:
                self._rules.clear()
            else:
                self._rules.pop(method, None)

    def _take(self, method: str) -> FaultRule | None:
        """The rule that hits this call, if any (counts the hit, retires a spent rule)."""
        with self._lock:
            key = method if method in self._rules else ALL
            rule = self._rules.get(key)
            if rule is None or (rule.rate < 1.0 and rule.rng.random() >= rule.rate):
                return None
            rule.hits += 1
            if rule.times is not None and rule.hits >= rule.times:
                del self._rules[key]
            self.fired.append((method, rule.kind))
            return rule

    def wrap(self, method: str, handler: Handler, failure: Callable[[str], Mapping[str, Any]]) -> Handler:
        """``handler`` with this object's rules applied; ``failure(message)`` builds a business refusal."""

        def faulty(args: dict[str, Any]) -> Mapping[str, Any] | None:
            with self._lock:
                self.in_flight[method] = now = self.in_flight.get(method, 0) + 1
                self.peak[method] = max(self.peak.get(method, 0), now)
            try:
                return answer(args)
            finally:
                with self._lock:
                    self.in_flight[method] -= 1

        def answer(args: dict[str, Any]) -> Mapping[str, Any] | None:
            rule = self._take(method)
            if rule is None:
                return handler(args)
            message = rule.message or DEFAULT_MESSAGE
            if rule.kind == "latency":
                time.sleep(rule.seconds)
                return handler(args)
            if rule.kind == "business":
                return failure(message)
            if rule.kind == "http500":
                raise HttpError(500, rule.message or "Internal Server Error")
            if rule.kind == "fault":
                raise SoapFault(f"Server was unable to process request. ---> {message}", "Server")
            if rule.kind == "drop":
                raise DropConnection()
            result = handler(args)
            if rule.kind == "late":
                time.sleep(rule.seconds)  # applied already; the answer comes after the client's timeout
                return result
            # non_pdf: whatever bytes the method returns are replaced by an HTML error page
            if result is not None and "PdfContent" in result:
                result = dict(result, PdfContent=b"<html><body>Report server error</body></html>")
            return result

        return faulty
