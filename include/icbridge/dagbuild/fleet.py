"""The biller fleet split over DAG files: which billers a file builds, and which DAG a task needs.

Why (issue 20): one DAG file for every biller made every parse cost the whole fleet (16–30 s at
3,000 billers), made every task start pay it again (Airflow 3's task runner parses the
task's DAG file), and let one parse timeout remove every biller's DAGs at once.

* **Shards.** ``dags/billers_00.py`` … ``dags/billers_15.py`` (:data:`SHARDS` files) each
  build the billers whose file name hashes to them (CRC-32 of the biller id, mod
  :data:`SHARDS`: stable across machines, processes and releases, unlike ``hash()``). A
  parse of one file costs 1/16 of the fleet, and a file that fails (a timeout, an
  exception) removes only its own share. DAG ids are unchanged: users see no shard.
* **A task start builds one DAG.** While a task runs, Airflow's parsing context names its
  DAG (``airflow.sdk.get_parsing_context()``, as Airflow's dynamic-DAG docs recommend):
  the shard file then reads only that biller's YAML and calls only that flow's builder.
  The dag-processor has no parsing context and builds the whole shard.

Each biller file still validates alone: a broken one becomes its ``<file>__config_error``
DAG in its own shard.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable
from pathlib import Path

from airflow.sdk import DAG, get_parsing_context

from icbridge.config.biller import BillerConfig, default_billers_dir, load_billers
from icbridge.dagbuild import balance_all, balances, customer_changes, invoices, payment_export, payments
from icbridge.dagbuild.common import build_config_error_dag

__all__ = ["BUILDERS", "SHARDS", "build_shard", "dags_for_file", "shard_of"]

SHARDS = 16
"""How many DAG files share the fleet (dags/billers_NN.py, one per shard)."""

BUILDERS: dict[str, Callable[[BillerConfig, Path], DAG | None]] = {
    "invoices": invoices.build,
    "payment_export": payment_export.build,
    "balance_all": balance_all.build,
    "balances": balances.build,
    "payments": payments.build,
    "customer_changes": customer_changes.build,
}
"""Flow name (the DAG id's suffix after ``__``) -> its builder (None: the biller has no such flow)."""

CONFIG_ERROR = "config_error"


def shard_of(biller_id: str, shards: int = SHARDS) -> int:
    """The shard (0 .. shards-1) of a biller id, the same everywhere and always."""
    return zlib.crc32(biller_id.encode("utf-8")) % shards


def build_shard(shard: int, billers_dir: Path, *, dag_id: str | None = None, shards: int = SHARDS) -> dict[str, DAG]:
    """The DAGs of the billers in ``shard``, by id. With ``dag_id`` (a task is running), only
    that DAG: one biller file read, one builder called (empty when it is another shard's)."""
    if dag_id:
        biller_id, _, flow = dag_id.rpartition("__")
        if not biller_id or shard_of(biller_id, shards) != shard or (flow not in BUILDERS and flow != CONFIG_ERROR):
            return {}
        paths = [billers_dir / f"{biller_id}.yaml"]
        builders = [] if flow == CONFIG_ERROR else [BUILDERS[flow]]
    else:
        paths = [p for p in sorted(billers_dir.glob("*.yaml")) if shard_of(p.stem, shards) == shard]
        builders = list(BUILDERS.values())
    loaded = load_billers(billers_dir, paths=[p for p in paths if p.exists()])
    dags: dict[str, DAG] = {}
    for biller in loaded.billers:
        for builder in builders:
            dag = builder(biller, billers_dir)
            if dag is not None:
                dags[dag.dag_id] = dag
    for path, message in loaded.errors.items():
        dag = build_config_error_dag(path, message)
        dags[dag.dag_id] = dag
    return {k: v for k, v in dags.items() if not dag_id or k == dag_id}


def dags_for_file(file: str) -> dict[str, DAG]:
    """What ``dags/billers_NN.py`` puts in its globals: shard NN of the billers folder
    (ICBRIDGE_BILLERS_DIR, else include/billers), narrowed to the running task's DAG."""
    match = re.search(r"billers_(\d+)\.py$", file)
    if match is None:
        raise ValueError(f"{file}: a fleet DAG file is named billers_NN.py")
    return build_shard(int(match.group(1)), default_billers_dir(), dag_id=get_parsing_context().dag_id)
