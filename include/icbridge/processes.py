"""Worker processes started from any process the project runs in: an Airflow task (whose
__main__ is the `airflow` CLI), a Celery task (daemonic, billiard's key), a script.

Used by the mapping's range workers (icbridge.mapping.workers) and the IC simulator's
checker processes (icbsim.invoice_cloud). No Airflow imports.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from importlib.machinery import ModuleSpec
from multiprocessing import forkserver
from multiprocessing import process as _process
from typing import Any

__all__ = ["workers_may_start"]

_MP_PROCESS: Any = _process  # AuthenticationString is not in the typeshed stubs


def _authentication_string(key: bytes) -> bytes:
    return _MP_PROCESS.AuthenticationString(key)


def _forget_inherited_forkserver() -> None:
    """In a process just forked: a parent's running forkserver is not this process's child,
    yet multiprocessing (3.11) keeps its handle and then fails with ChildProcessError when
    this process starts workers. Forget it (closing this copy of its keep-alive pipe), so
    this process starts its own forkserver when it needs one."""
    server: Any = forkserver._forkserver  # noqa: SLF001 - the module's singleton (private: typed Any)
    if server._forkserver_pid is None:  # noqa: SLF001
        return
    alive = server._forkserver_alive_fd  # noqa: SLF001
    server._forkserver_pid = server._forkserver_address = server._forkserver_alive_fd = None  # noqa: SLF001
    if alive is not None:
        with suppress(OSError):
            os.close(alive)


os.register_at_fork(after_in_child=_forget_inherited_forkserver)


@contextmanager
def workers_may_start() -> Iterator[None]:
    """While a pool's workers start, two rules of multiprocessing are set aside:

    - A worker the forkserver starts imports the starting process's __main__ (as spawn does)
      unless that is a package's __main__. The workers need only the project's modules, and an Airflow
      task's __main__ is the `airflow` CLI, which would bring all of Airflow into each of
      them (~1 s and ~100 MB a worker); a script's could even map again. So __main__ is
      presented as a package's (multiprocessing then skips it).
    - Celery runs a task in a daemonic process, and multiprocessing refuses a daemonic
      process children ("daemonic processes are not allowed to have children"), so that
      none outlives it. These cannot: the pool is shut down before map_aus returns, and the
      forkserver exits with the process that started it. So the process is presented as not
      daemonic (tests/e2e/test_celery_executor.py maps a file with workers under Celery). Its
      authentication key, which Celery's billiard gives a type that refuses to be sent to
      a forkserver, is presented as multiprocessing's own (the same bytes)."""
    # one at a time (threads): each restores what it found, so two that overlap would leave it changed
    with _STARTING, _set_aside():
        yield


_STARTING = threading.RLock()


@contextmanager
def _set_aside() -> Iterator[None]:
    main = sys.modules.get("__main__")
    saved_spec = main.__dict__.get("__spec__") if main is not None else None
    current: Any = multiprocessing.current_process()  # its _config is private: typed Any
    config = current._config  # noqa: SLF001 - where multiprocessing keeps the flag and the key
    saved = {key: config[key] for key in ("daemon", "authkey") if key in config}
    if main is not None:
        main.__spec__ = ModuleSpec("__main__", None)
    config["daemon"] = False
    if "authkey" in config:  # multiprocessing's AuthenticationString of the same key (not through a setter:
        config["authkey"] = _authentication_string(bytes(config["authkey"]))  # billiard's would wrap it again)
    try:
        yield
    finally:
        if main is not None:
            main.__spec__ = saved_spec
        for key in ("daemon", "authkey"):
            if key in saved:
                config[key] = saved[key]
            else:
                config.pop(key, None)
