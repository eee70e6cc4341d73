"""The DAG folder as Airflow parses it: no import errors, conventions on every DAG, and a
broken biller file shown (file and field) without taking the other billers down."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from tests.support.services import REPO


def _dagbag(monkeypatch, billers_dir: Path | None = None):
    from airflow.dag_processing.dagbag import DagBag

    if billers_dir is not None:
        monkeypatch.setenv("ICBRIDGE_BILLERS_DIR", str(billers_dir))
    return DagBag(dag_folder=str(REPO / "dags"))


def test_no_import_errors_and_conventions_on_every_dag(monkeypatch):
    bag = _dagbag(monkeypatch)
    assert bag.import_errors == {}
    assert {"demo_aus__invoices", "demo_aus_sftp__invoices"} <= set(bag.dags)
    for dag_id, dag in bag.dags.items():
        if dag_id == "icbridge__alerts":  # the fleet's one platform DAG (dagbuild/alerts.py)
            assert "alerts" in dag.tags and all(t.retries >= 1 for t in dag.tasks)
            continue
        assert dag.doc_md, dag_id
        assert any(t.startswith("biller:") for t in dag.tags), dag_id
        assert any(t.startswith("cis:") for t in dag.tags) and any(t.startswith("flow:") for t in dag.tags)
        for task in dag.tasks:
            assert task.owner == "data-engineering", (dag_id, task.task_id)
            assert task.retries >= 1, (dag_id, task.task_id)
            assert task.retry_exponential_backoff, (dag_id, task.task_id)
            assert task.on_failure_callback, (dag_id, task.task_id)
            # one message per incident: the alerts DAG mails, Airflow's own failure/retry mail never
            assert not task.email_on_failure and not task.email_on_retry, (dag_id, task.task_id)
    inv = bag.dags["demo_aus__invoices"]
    assert inv.schedule == "0 */3 * * *"
    assert inv.params["force"] is False
    assert not inv.catchup


def test_broken_biller_file_is_visible_and_others_still_load(monkeypatch, tmp_path):
    billers = tmp_path / "billers"
    shutil.copytree(REPO / "include" / "billers", billers)
    broken = (billers / "demo_aus.yaml").read_text().replace("max_invoices_per_file: 50000",
                                                               "max_invoices_per_file: lots")
    (billers / "broken_one.yaml").write_text(broken.replace("biller_id: demo_aus", "biller_id: broken_one"))
    bag = _dagbag(monkeypatch, billers)
    assert bag.import_errors == {}
    assert "demo_aus__invoices" in bag.dags and "demo_aus_sftp__invoices" in bag.dags
    error_dag = bag.dags["broken_one__config_error"]
    assert "broken_one.yaml" in error_dag.description
    assert "invoices.max_invoices_per_file" in error_dag.doc_md
    assert "config-error" in error_dag.tags


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (("timezone: America/New_York", "timezone: Mars/Olympus"), "timezone"),
        (("bid: \"123\"", "bid: \"12A\""), "bid"),
        (("protocol: ftps", "protocol: ftp"), "invoices.transfer.protocol"),
        (("owner: data-engineering", "owner: data-engineering\nweb_service_key: abc"), "web_service_key"),
    ],
)
def test_config_errors_name_the_file_and_the_field(tmp_path, change, field):
    from icbridge.config.biller import BillerConfigError, load_biller

    path = tmp_path / "demo_aus.yaml"
    path.write_text((REPO / "include" / "billers" / "demo_aus.yaml").read_text().replace(*change))
    with pytest.raises(BillerConfigError) as err:
        load_biller(path)
    assert str(path) in str(err.value) and field in str(err.value)


def test_every_config_error_is_listed_with_its_yaml_line_and_column(tmp_path):
    """A misspelt key and a missing field both show (not only the first), each with file:line:column."""
    from icbridge.config.biller import BillerConfigError, load_biller

    path = tmp_path / "demo_aus.yaml"
    text = (REPO / "include" / "billers" / "demo_aus.yaml").read_text()
    lines = text.splitlines()
    bid_line = next(i for i, line in enumerate(lines, start=1) if line.startswith("bid:"))
    text = text.replace("bid:", "bidd:", 1)  # misspelt: bid is now missing and bidd unknown
    path.write_text(text)
    with pytest.raises(BillerConfigError) as err:
        load_biller(path)
    message = str(err.value)
    assert f"{path}:{bid_line}:1: bidd: Extra inputs are not permitted" in message
    assert re.search(rf"{re.escape(str(path))}:\d+:1: bid: Field required", message)  # where the mapping starts
    path.write_text(text.replace("bidd:", "bid:", 1).replace("name:", "name: [unclosed", 1))
    with pytest.raises(BillerConfigError, match=rf"{path}:\d+:\d+: not valid YAML: "):
        load_biller(path)


def test_a_broken_biller_file_runs_red_at_once(monkeypatch, tmp_path):
    billers = tmp_path / "billers"
    billers.mkdir()
    (billers / "broken_two.yaml").write_text("biller_id: broken_two\nbid: 12A\n")
    bag = _dagbag(monkeypatch, billers)
    dag = bag.dags["broken_two__config_error"]
    # a run starts (and fails) as soon as the file is parsed: red on the home page
    assert dag.is_paused_upon_creation is False and type(dag.timetable).__name__ == "OnceTimetable"
    assert "problems" in dag.description and "bid" in dag.description and "name: Field required" in dag.doc_md


def test_a_leading_zero_integer_is_refused_not_read_as_octal(tmp_path):
    """Issue 22 item 10: YAML 1.1 reads an unquoted ``050000`` as octal 20480. Refused naming
    file:line:column and what YAML would have read; the same number without the zero loads."""
    from icbridge.config.biller import BillerConfigError, load_biller

    path = tmp_path / "demo_aus.yaml"
    text = (REPO / "include" / "billers" / "demo_aus.yaml").read_text()
    assert "\n  max_invoices_per_file: 50000\n" in text
    text = text.replace("\n  max_invoices_per_file: 50000\n", "\n  max_invoices_per_file: 050000\n", 1)
    line = text.splitlines().index("  max_invoices_per_file: 050000") + 1
    path.write_text(text)
    with pytest.raises(BillerConfigError) as err:
        load_biller(path)
    assert f"{path}:{line}:26: not valid YAML: " in str(err.value) and "octal number 20480" in str(err.value)
    path.write_text(text.replace("050000", "50000"))
    assert load_biller(path).invoices.max_invoices_per_file == 50000
