"""The mapping's worker processes: a function over tasks, in order, in this process or a pool.

What a file's tasks share (its plan and mapper, its lines or its source) is handed to the
workers once, not with each task: ``share`` sets it in the process that runs the tasks
(before a fork, or in each worker a forkserver starts, through the pool's initializer),
and a task function reads it with ``shared``. A worker that dies (killed for memory, say)
fails the file with BrokenProcessPool, never hangs it.
"""

from __future__ import annotations

import gc
import multiprocessing
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar

from icbridge.processes import workers_may_start

T = TypeVar("T")
R = TypeVar("R")

_SHARED: Any = None


def share(job: Any) -> None:
    """Set what this process's tasks share (None: nothing)."""
    global _SHARED
    _SHARED = job


def shared() -> Any:
    """What this process's tasks share, as set by share."""
    return _SHARED


def run(fn: Callable[[T], R], items: Sequence[T], workers: int) -> list[R]:
    """fn over items, in order: in forked worker processes when workers > 1 (2 cores here);
    they inherit what is shared at the fork."""
    if workers <= 1 or len(items) <= 1:
        return [fn(item) for item in items]
    ctx = multiprocessing.get_context("fork")
    # Objects that exist at the fork go to the collector's permanent generation, so a
    # worker's garbage collections do not walk (and copy-on-write) the parent's objects.
    gc.freeze()
    try:
        with ProcessPoolExecutor(min(workers, len(items)), mp_context=ctx) as pool:
            with workers_may_start():  # the workers start as the items are submitted
                results = pool.map(fn, items)
            return list(results)
    finally:
        gc.unfreeze()


@contextmanager
def in_order(
    fn: Callable[[T], R],
    tasks: Iterable[T],
    workers: int,
    initializer: Callable[..., None],
    initargs: tuple,
    preload: list[str] | None = None,
) -> Iterator[Iterator[R]]:
    """fn over tasks, the results in order as they are ready (tasks may be a generator: they
    are submitted as they come). `initializer(*initargs)` sets up what the tasks share, in
    each worker (or here). In this process when `workers` <= 1; else in a pool of `workers`:
    started by the forkserver when `preload` names the modules its workers import first
    (fresh processes holding their own task only, not the memory of the process that maps,
    which may be an Airflow task), forked otherwise (the workers inherit this process's
    memory, e.g. a file's bytes). Leaving the block early cancels the tasks not started."""
    if workers <= 1:
        initializer(*initargs)
        try:
            yield map(fn, tasks)
        finally:
            share(None)
        return
    ctx: multiprocessing.context.BaseContext
    if preload is None:
        ctx = multiprocessing.get_context("fork")
        gc.freeze()  # see run
    else:
        server = multiprocessing.get_context("forkserver")
        server.set_forkserver_preload(preload)
        ctx = server
    try:
        with ProcessPoolExecutor(workers, mp_context=ctx, initializer=initializer, initargs=initargs) as pool:
            with workers_may_start():  # the workers start as the tasks are submitted
                results = pool.map(fn, tasks)
            try:
                yield results
            finally:
                pool.shutdown(cancel_futures=True)
    finally:
        if preload is None:
            gc.unfreeze()
