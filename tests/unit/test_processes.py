"""icbridge.processes.workers_may_start: what it sets aside is restored, also when two
threads start workers at once (the IC simulator's checkers and a mapping in one process)."""

from __future__ import annotations

import multiprocessing
import sys
import threading

from icbridge.processes import workers_may_start


def test_overlapping_starts_leave_the_process_as_it_was():
    main = sys.modules["__main__"]
    config = multiprocessing.current_process()._config  # noqa: SLF001
    before = (main.__dict__.get("__spec__"), "daemon" in config, config.get("daemon"))
    a_inside, a_may_leave, b_done = threading.Event(), threading.Event(), threading.Event()
    seen_by_b: list[object] = []

    def a() -> None:
        with workers_may_start():
            a_inside.set()
            a_may_leave.wait(5)

    def b() -> None:
        a_inside.wait(5)
        with workers_may_start():
            seen_by_b.append(main.__spec__)
        b_done.set()

    ta, tb = threading.Thread(target=a), threading.Thread(target=b)
    ta.start()
    tb.start()
    assert not b_done.wait(0.3), "a second start waits for the first one to finish"
    a_may_leave.set()
    ta.join(5)
    tb.join(5)
    assert b_done.is_set() and seen_by_b and seen_by_b[0].name == "__main__"
    assert (main.__dict__.get("__spec__"), "daemon" in config, config.get("daemon")) == before
