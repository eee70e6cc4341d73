"""What the biller operators share: the biller file, the run's artifacts folder, flag params,
the biller's CIS client.

Why here: every DAG kind (invoices, payment_export, balance_all, the sync flows, the per-method
CIS operators) resolves these the same way; one place keeps them the same.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from icbridge.config.biller import BillerConfig, default_billers_dir, load_biller
from icbridge.errors import IcbridgeError
from icbridge.soap.errors import CredentialsRefused
from icbridge.state.executions import Execution

__all__ = ["BillerOperator", "artifacts_root", "final_errors", "load_biller_file", "param_flag",
           "run_artifacts", "run_flag", "task_execution"]


def artifacts_root() -> Path:
    """ICBRIDGE_ARTIFACTS_DIR, else $AIRFLOW_HOME/icbridge/artifacts."""
    configured = os.environ.get("ICBRIDGE_ARTIFACTS_DIR")
    if configured:
        return Path(configured)
    return Path(os.environ.get("AIRFLOW_HOME", "~/airflow")).expanduser() / "icbridge" / "artifacts"


def run_artifacts(dag_id: str, run_id: str) -> Path:
    """``<artifacts root>/<dag>/<run>``; the run id made safe as a folder name (``:``/``+`` -> ``_``)."""
    return artifacts_root() / dag_id / str(run_id).replace(":", "_").replace("+", "_")


def final_errors(execute: Callable[..., Any]) -> Callable[..., Any]:
    """Decorator for ``execute``: the one place icbridge's errors (icbridge.errors) become
    Airflow's. One whose ``retry`` is true raises AirflowException (Airflow retries the task);
    any other AirflowFailException (no retry: a person or a fix must come first). A refusal
    of our credentials names what to fix. Airflow's own exceptions and errors of the code
    itself pass through unchanged (the latter take Airflow's default: retried)."""

    @functools.wraps(execute)
    def wrapper(self: Any, context: Any) -> Any:
        try:
            return execute(self, context)
        except AirflowException:
            raise
        except CredentialsRefused as exc:
            raise AirflowFailException(f"{exc} — fix the connection's credentials (login / password); no retry "
                                       "can fix this") from exc
        except IcbridgeError as exc:
            raise airflow_error(exc) from exc

    return wrapper


def airflow_error(exc: IcbridgeError) -> AirflowException:
    """The Airflow exception of one of icbridge's errors: retried when ``exc.retry``, else final."""
    if exc.retry:
        return AirflowException(f"{exc} — will retry")
    return AirflowFailException(str(exc))


@contextlib.contextmanager
def task_execution(context: Any, engine: Any) -> Iterator[Execution]:
    """This task execution registered in the state DB with a live lease (icbridge.state.executions):
    its ``token`` (``<run_id>#try<n>#<hex>``, new for every execution, even of one try) is what
    the ledgers record as the owner of a row they mark ``sending``."""
    ti = context.get("ti")
    with Execution(engine, dag_id=getattr(ti, "dag_id", None), task_id=getattr(ti, "task_id", None),
                   run_id=str(context["run_id"]), try_number=getattr(ti, "try_number", None)) as execution:
        yield execution


def run_flag(context: Any, name: str, explicit: bool | str | None, default: bool = False) -> bool:
    """A boolean run parameter: the operator's own value when it was given one, else this run's
    ``DagRun.conf[name]``, else ``default`` (the DAG's declared Param default).

    Why not ``context["params"]``: Airflow 3.3.2's ``process_params`` resolves the run's conf
    onto the task's *shared* Param objects, so in a process that runs several runs of one DAG
    object (``dag.test``, an in-process harness) a later run inherited an earlier run's value
    (tests/integration/dags/test_payment_export.py::test_no_run_inherits_another_runs_params). A DagRun's conf
    is its own."""
    if explicit is not None:
        return param_flag(explicit)
    dag_run = context.get("dag_run")
    conf = (getattr(dag_run, "conf", None) or {}) if dag_run is not None else {}
    return param_flag(conf[name]) if name in conf else default


def param_flag(value: Any) -> bool:
    """A boolean DAG param as the operator receives it: a bool, or its rendered text ("true", "1", "yes")."""
    return value is True or str(value).strip().lower() in ("true", "1", "yes")


def load_biller_file(biller_id: str, billers_dir: str | None) -> BillerConfig:
    """The biller's validated YAML, from ``billers_dir`` or the default billers folder."""
    folder = Path(billers_dir) if billers_dir else default_billers_dir()
    return load_biller(folder / f"{biller_id}.yaml")


class BillerOperator(BaseOperator):
    """Base: resolves the biller's configuration at run time (YAML, validated)."""

    template_fields: Collection[str] = ("biller_id",)

    def __init__(self, *, biller_id: str, billers_dir: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.biller_id = biller_id
        self.billers_dir = billers_dir

    def biller(self) -> BillerConfig:
        return load_biller_file(self.biller_id, self.billers_dir)


@contextlib.contextmanager
def recorded_outcome(biller_id: str, flow: str, run_id: str | None) -> Iterator[None]:
    """Record this task's outcome as the flow's last run (icb_watermarks: the health page's
    ``failed``, and so its alert, until a later run succeeds) for a flow with no watermark of
    its own (invoices, balance_all); the error itself propagates."""
    from icbridge.hooks.state import state_db_url
    from icbridge.state.watermarks import Watermarks

    marks = Watermarks(state_db_url())
    try:
        yield
    except Exception as exc:
        marks.record_run(biller_id, flow, run_id=run_id, ok=False, message=f"{type(exc).__name__}: {exc}")
        raise
    else:
        marks.record_run(biller_id, flow, run_id=run_id, ok=True, message=None)
    finally:
        marks.dispose()
