"""The fleet over several DAG files (icbridge.dagbuild.fleet), parsed by Airflow's own DagBag:
the dag-processor sees every biller's DAGs once, each in its shard's file; a task start reads
one biller file and builds one DAG; every task ends before the broker's visibility timeout."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from icbridge.dagbuild.fleet import SHARDS, build_shard, shard_of

REPO = Path(__file__).resolve().parents[3]
DEMO = REPO / "include" / "billers"


def _fleet(folder: Path, n: int) -> list[str]:
    """``n`` billers made from the demo files (AUS, inHance, Logis in turn), plus one broken file."""
    kinds = ["demo_aus", "demo_inhance", "demo_logis"]
    ids = []
    for i in range(n):
        kind = kinds[i % 3]
        biller_id = f"fleet_{i:03d}"
        text = (DEMO / f"{kind}.yaml").read_text().replace(f"biller_id: {kind}", f"biller_id: {biller_id}")
        (folder / f"{biller_id}.yaml").write_text(text)
        ids.append(biller_id)
    (folder / "fleet_broken.yaml").write_text("biller_id: fleet_broken\nbid: [\n")
    return ids


def _bag(path: Path, monkeypatch: pytest.MonkeyPatch, dag_id: str | None = None):
    from airflow.dag_processing.dagbag import DagBag

    if dag_id:
        monkeypatch.setenv("_AIRFLOW_PARSING_CONTEXT_DAG_ID", dag_id)
    else:
        monkeypatch.delenv("_AIRFLOW_PARSING_CONTEXT_DAG_ID", raising=False)
    return DagBag(dag_folder=str(path))


def test_every_biller_is_built_once_in_its_shards_file(tmp_path, monkeypatch):
    billers = tmp_path / "billers"
    billers.mkdir()
    ids = _fleet(billers, 30)
    monkeypatch.setenv("ICBRIDGE_BILLERS_DIR", str(billers))
    bag = _bag(REPO / "dags", monkeypatch)
    assert bag.import_errors == {}
    assert len(list((REPO / "dags").glob("billers_*.py"))) == SHARDS
    expected: set[str] = set()
    for shard in range(SHARDS):
        expected |= set(build_shard(shard, billers))
    assert set(bag.dags) == expected | {"icbridge__alerts"}  # and the fleet's one alerts DAG
    assert "fleet_broken__config_error" in bag.dags
    for biller_id in ids:
        own = [d for d in bag.dags.values() if d.dag_id.startswith(f"{biller_id}__")]
        assert own, biller_id
        for dag in own:  # the file of its shard, whatever the biller
            assert Path(dag.fileloc).name == f"billers_{shard_of(biller_id):02d}.py"
    assert len({shard_of(i) for i in ids}) > SHARDS // 2  # spread, not one file


def test_a_task_start_reads_one_biller_file_and_builds_one_dag(tmp_path, monkeypatch):
    """With the parsing context of a running task, the shard file builds that DAG only, and reads
    no other biller file: every other file of the shard is unreadable here, and nothing fails."""
    billers = tmp_path / "billers"
    billers.mkdir()
    ids = _fleet(billers, 60)
    target = ids[1]  # an inHance biller: balances, payments, customer changes, balance all
    shard = shard_of(target)
    others = [b for b in ids if b != target and shard_of(b) == shard]
    assert others
    for other in others:
        (billers / f"{other}.yaml").chmod(0)
    if os.geteuid() == 0:  # root reads a 000 file anyway: make the others invalid instead
        for other in others:
            (billers / f"{other}.yaml").write_text("not: [valid\n")
    monkeypatch.setenv("ICBRIDGE_BILLERS_DIR", str(billers))
    shard_file = REPO / "dags" / f"billers_{shard:02d}.py"
    bag = _bag(shard_file, monkeypatch, dag_id=f"{target}__payments")
    assert list(bag.dags) == [f"{target}__payments"] and bag.import_errors == {}
    whole = _bag(shard_file, monkeypatch)  # the dag-processor: the others' files are read (and broken)
    assert {f"{o}__config_error" for o in others} <= set(whole.dags)
    elsewhere = REPO / "dags" / f"billers_{(shard + 1) % SHARDS:02d}.py"
    assert _bag(elsewhere, monkeypatch, dag_id=f"{target}__payments").dags == {}


def test_every_task_of_every_flow_ends_before_the_visibility_timeout(tmp_path):
    """Issue 20 item 4: Celery on Redis hands a task still running after the visibility timeout
    to a second worker; every task a biller can have has a shorter execution_timeout."""
    compose = yaml.safe_load((REPO / "docker-compose.yaml").read_text())
    env = compose["x-airflow-common"]["environment"]
    visibility = timedelta(seconds=int(env["AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT"]))
    billers = tmp_path / "billers"
    billers.mkdir()
    for path in DEMO.glob("*.yaml"):
        (billers / path.name).write_text(path.read_text())
    (billers / "broken.yaml").write_text("biller_id: broken\n")
    dags = {}
    for shard in range(SHARDS):
        dags.update(build_shard(shard, billers))
    flows = {dag_id.rpartition("__")[2] for dag_id in dags}
    assert flows == {"invoices", "payment_export", "balance_all", "balances", "payments", "customer_changes",
                     "config_error"}
    for dag in dags.values():
        for task in dag.tasks:
            assert task.execution_timeout is not None, f"{dag.dag_id}.{task.task_id}"
            assert task.execution_timeout < visibility, f"{dag.dag_id}.{task.task_id}: {task.execution_timeout}"


def test_a_biller_files_roles_become_its_dags_access_control(tmp_path, monkeypatch):
    """Issue 21 item 1: a biller file names the FAB roles that may read (and edit) its DAGs; every
    DAG of the biller carries them as access_control, and Airflow's DagBag takes them."""
    billers = tmp_path / "billers"
    billers.mkdir()
    text = (DEMO / "demo_inhance.yaml").read_text().replace("biller_id: demo_inhance", "biller_id: acl_one")
    (billers / "acl_one.yaml").write_text(text + "access_roles: [analysts_one]\nedit_roles: [ops_one]\n")
    (billers / "acl_none.yaml").write_text(text.replace("biller_id: acl_one", "biller_id: acl_none"))
    monkeypatch.setenv("ICBRIDGE_BILLERS_DIR", str(billers))
    bag = _bag(REPO / "dags", monkeypatch)
    assert bag.import_errors == {}
    ours = [d for d in bag.dags.values() if d.dag_id.startswith("acl_one__")]
    assert len(ours) == 4
    for dag in ours:
        assert dag.access_control == {"analysts_one": {"DAGs": {"can_read"}},
                                      "ops_one": {"DAGs": {"can_read", "can_edit"}}}, dag.access_control
    assert all(not d.access_control for d in bag.dags.values() if d.dag_id.startswith("acl_none__"))


@pytest.mark.usefixtures("airflow_db")
def test_endpoint_pools_are_taken_by_every_calling_task_and_created_once(tmp_path, monkeypatch, capsys):
    """Issue 20 item 3: with ICBRIDGE_ENDPOINT_POOLS on, each task that calls a shared endpoint
    takes its pool (billers naming one endpoint share it) with a slot per call in flight; the
    init step's `pools --create-missing` creates missing pools and keeps an existing size."""
    from airflow.models.pool import Pool

    from icbridge.cli import main

    billers = tmp_path / "billers"
    billers.mkdir()
    for biller_id in ("ep_one", "ep_two"):
        text = (DEMO / "demo_inhance.yaml").read_text().replace("demo_inhance", biller_id)
        shared = text.replace("  conn_id: ep_", "  endpoint: hosted\n  conn_id: ep_", 1)  # one hosted endpoint
        (billers / f"{biller_id}.yaml").write_text(shared)
    aus = (DEMO / "demo_aus.yaml").read_text().replace("demo_aus", "ep_aus")
    (billers / "ep_aus.yaml").write_text(aus)
    monkeypatch.setenv("ICBRIDGE_BILLERS_DIR", str(billers))
    monkeypatch.setenv("ICBRIDGE_ENDPOINT_POOLS", "true")
    bag = _bag(REPO / "dags", monkeypatch)
    pools = {f"{d.dag_id}.{t.task_id}": (t.pool, t.pool_slots) for d in bag.dags.values() for t in d.tasks}
    assert pools["ep_one__payments.payments"] == pools["ep_two__payments.payments"] == ("icb_cis_hosted", 8)
    assert pools["ep_aus__invoices.upload_file"] == ("icb_invoice_cloud", 2)
    assert pools["ep_aus__invoices.find_files"][0] == "default_pool"  # no endpoint call in flight
    monkeypatch.delenv("ICBRIDGE_ENDPOINT_POOLS")
    off = _bag(REPO / "dags", monkeypatch)
    assert {t.pool for d in off.dags.values() for t in d.tasks} == {"default_pool"}  # the demo, a laptop
    assert main(["pools", "--billers-dir", str(billers), "--create-missing"]) == 0
    assert Pool.get_pool("icb_cis_hosted").slots == 8
    Pool.create_or_update_pool("icb_cis_hosted", 20, "ops' size", False)
    capsys.readouterr()
    assert main(["pools", "--billers-dir", str(billers), "--create-missing"]) == 0
    assert "pool icb_cis_hosted exists: kept as it is" in capsys.readouterr().out
    assert Pool.get_pool("icb_cis_hosted").slots == 20


@pytest.mark.usefixtures("airflow_db")
def test_biller_check_fails_while_one_of_its_pools_is_missing(tmp_path, monkeypatch):
    """A new biller's pool must exist before its tasks can run: the onboarding preflight says so."""
    from airflow.models.pool import Pool

    from icbridge.preflight import check_biller

    text = (DEMO / "demo_inhance.yaml").read_text().replace("demo_inhance", "ep_new")
    path = tmp_path / "ep_new.yaml"
    path.write_text(text)
    monkeypatch.setenv("ICBRIDGE_ENDPOINT_POOLS", "true")
    checks = {c.name: c for c in check_biller(path)}
    pool = checks["Airflow pool icb_cis_ep_new_cis"]
    assert not pool.ok and "--create-missing" in pool.detail
    Pool.create_or_update_pool("icb_cis_ep_new_cis", 8, "test", False)
    assert {c.name: c for c in check_biller(path)}["Airflow pool icb_cis_ep_new_cis"].ok
    monkeypatch.delenv("ICBRIDGE_ENDPOINT_POOLS")
    assert not any(name.startswith("Airflow pool") for name in {c.name for c in check_biller(path)})
