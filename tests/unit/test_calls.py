"""The bounded call runner: in-flight bound, rate limit, retry judgement, lazy input."""

from __future__ import annotations

import threading
import time

import pytest
import requests

from icbridge.calls import CallPolicy, RateLimiter, call_all, is_transport_error, never


class Probe:
    """A call that records how many run at once."""

    def __init__(self, seconds: float = 0.02) -> None:
        self.seconds = seconds
        self.now = self.peak = 0
        self.lock = threading.Lock()

    def __call__(self, item: int) -> int:
        with self.lock:
            self.now += 1
            self.peak = max(self.peak, self.now)
        time.sleep(self.seconds)
        with self.lock:
            self.now -= 1
        return item * 2


def test_every_item_once_with_its_result_and_never_more_in_flight_than_the_bound():
    probe = Probe()
    outcomes = list(call_all(range(60), probe, CallPolicy(in_flight=5, per_second=0)))
    assert sorted(o.item for o in outcomes) == list(range(60))
    assert all(o.ok and o.result == o.item * 2 and o.attempts == 1 for o in outcomes)
    assert probe.peak == 5


def test_input_is_consumed_lazily():
    consumed = []

    def items():
        for i in range(10_000):
            consumed.append(i)
            yield i

    runner = call_all(items(), lambda i: i, CallPolicy(in_flight=4, per_second=0))
    next(runner)
    assert len(consumed) <= 4 * 2 + 1
    runner.close()


def test_rate_limit_spaces_starts():
    starts: list[float] = []
    lock = threading.Lock()

    def call(item: int) -> int:
        with lock:
            starts.append(time.monotonic())
        return item

    list(call_all(range(30), call, CallPolicy(in_flight=4, per_second=100)))
    starts.sort()
    # burst of in_flight, then one start per 10 ms: 26 intervals at least
    assert starts[-1] - starts[0] >= 0.9 * (30 - 4) / 100


def test_rate_limiter_without_rate_never_waits():
    limiter = RateLimiter(0)
    begin = time.monotonic()
    for _ in range(1000):
        limiter.acquire()
    assert time.monotonic() - begin < 1


def test_retryable_errors_are_retried_with_backoff_then_reported():
    calls: dict[int, int] = {}
    waits: list[float] = []

    def flaky(item: int) -> str:
        calls[item] = calls.get(item, 0) + 1
        if item == 1 and calls[item] < 3:
            raise requests.ConnectTimeout("slow CIS")
        if item == 2:
            raise requests.ConnectionError("CIS down")
        return "ok"

    policy = CallPolicy(in_flight=2, per_second=0, attempts=3, backoff_seconds=0.5, max_backoff_seconds=0.75)
    outcomes = {o.item: o for o in call_all([0, 1, 2], flaky, policy, sleep=waits.append)}
    assert outcomes[0].ok and outcomes[0].attempts == 1
    assert outcomes[1].ok and outcomes[1].attempts == 3
    assert not outcomes[2].ok and isinstance(outcomes[2].error, requests.ConnectionError)
    assert outcomes[2].attempts == 3
    assert sorted(waits) == [0.5, 0.5, 0.75, 0.75]


def test_a_non_retryable_error_is_reported_at_once():
    calls = []

    def refuse(item: int) -> None:
        calls.append(item)
        raise ValueError("bad account")

    [outcome] = call_all([7], refuse, CallPolicy(attempts=5, per_second=0))
    assert calls == [7] and outcome.attempts == 1 and isinstance(outcome.error, ValueError)


def test_money_calls_are_never_retried_even_on_timeouts():
    calls = []

    def pay(item: int) -> None:
        calls.append(item)
        raise requests.ReadTimeout("no answer")

    [outcome] = call_all([1], pay, CallPolicy(attempts=5, per_second=0), never)
    assert calls == [1] and outcome.attempts == 1 and isinstance(outcome.error, requests.ReadTimeout)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (requests.ReadTimeout(), True),
        (requests.ConnectionError(), True),
        (ValueError(), False),
        (KeyError(), False),
    ],
)
def test_is_transport_error(error, expected):
    assert is_transport_error(error) is expected


def test_policy_rejects_nonsense():
    with pytest.raises(ValueError):
        CallPolicy(in_flight=0)
    with pytest.raises(ValueError):
        CallPolicy(attempts=0)


def test_no_queued_call_starts_once_the_consumer_has_left():
    """Review finding: a payments run stopped after its first answer (an error, a timeout) must
    not go on to claim and send the calls still queued, whose answers nobody would record."""
    started: list[int] = []
    lock = threading.Lock()

    def call(item: int) -> int:
        with lock:
            started.append(item)
        time.sleep(0.05)
        return item

    outcomes = call_all(range(20), call, CallPolicy(in_flight=2, per_second=0))
    next(outcomes)
    outcomes.close()  # the consumer leaves (GeneratorExit), as a loop left by an exception does
    assert len(started) <= 4, started  # at most those already running (and any starting then), never all 20
