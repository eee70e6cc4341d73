"""One DAG file for every biller: reads include/billers/*.yaml and builds each biller's DAGs.

Parse-time work is reading and validating the YAML only (no network, no DB). Each flow's
builder lives in icbridge.dagbuild.<flow> and returns None for a biller without that flow.
A broken biller file does not take the others down: it becomes a `<file>__config_error` DAG
whose description and docs name the file and the field, and whose only task fails with the
error.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from airflow.sdk import DAG

from icbridge.config.biller import BillerConfig, default_billers_dir, load_billers
from icbridge.dagbuild import balance_all, balances, customer_changes, invoices, payment_export, payments
from icbridge.dagbuild.common import build_config_error_dag

BUILDERS: list[Callable[[BillerConfig, Path], DAG | None]] = [
    invoices.build,
    payment_export.build,
    balance_all.build,
    balances.build,
    payments.build,
    customer_changes.build,
]


def build_all(billers_dir: Path) -> dict[str, DAG]:
    loaded = load_billers(billers_dir)
    dags: dict[str, DAG] = {}
    for biller in loaded.billers:
        for builder in BUILDERS:
            dag = builder(biller, billers_dir)
            if dag is not None:
                dags[dag.dag_id] = dag
    for path, message in loaded.errors.items():
        dag = build_config_error_dag(path, message)
        dags[dag.dag_id] = dag
    return dags


globals().update(build_all(default_billers_dir()))
