"""The CIS vendor registry (icbridge.vendors): one object per vendor answers what a biller of
that CIS has, and an unknown vendor fails the biller file's validation naming the known ones."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import pytest
import yaml

from icbridge.config.biller import BillerConfig, BillerConfigError, load_biller
from icbridge.state.health import _flows as health_flows
from icbridge.vendors import FLOWS, VENDORS, CisService, CisVendor, Flow, vendor

BILLERS = Path(__file__).resolve().parents[3] / "include" / "billers"


def _biller(**changes) -> BillerConfig:
    raw = yaml.safe_load((BILLERS / "demo_aus.yaml").read_text())
    raw.update(changes)
    return BillerConfig.model_validate({k: v for k, v in raw.items() if v is not None})


def test_an_unknown_vendor_fails_the_biller_file_naming_the_known_ones(tmp_path: Path):
    raw = yaml.safe_load((BILLERS / "demo_aus.yaml").read_text())
    raw["cis"] = "harris_next"
    path = tmp_path / "b.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(BillerConfigError) as info:
        load_biller(path)
    message = str(info.value)
    assert "unknown cis 'harris_next'" in message and "b.yaml:" in message
    assert all(name in message for name in VENDORS)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("demo_aus.yaml", ["invoices", "balance_all", "balances", "payments", "customer_changes"]),
        ("demo_inhance.yaml", ["balance_all", "balances", "payments", "customer_changes"]),
        ("demo_logis.yaml", ["payment_export"]),
    ],
)
def test_a_billers_flows_are_its_sections_its_vendor_supports(name: str, expected: list[str]):
    biller = load_biller(BILLERS / name)
    assert biller.flows() == expected
    assert set(biller.flows()) <= biller.vendor().flows
    assert health_flows(biller) == expected  # every flow has its health row


def test_sync_flows_follow_the_sync_section_and_need_a_cis_service():
    assert _biller(sync={"flows": ["payments"]}).flows() == ["invoices", "balance_all", "payments"]
    assert _biller(cis_service=None, balance_all=None).flows() == ["invoices"]


def test_a_section_the_vendor_does_not_support_gives_no_flow():
    """An inHance biller with an invoices section gets no invoices DAG (AUS alone exports the
    IC Daily Export); a Logis biller cannot name a cis_service or Balance All at all."""
    raw = yaml.safe_load((BILLERS / "demo_aus.yaml").read_text())
    inhance = {**raw, "cis": "inhance"}
    assert "invoices" not in BillerConfig.model_validate(inhance).flows()
    with pytest.raises(ValueError, match="cis logis has no web services"):
        BillerConfig.model_validate({**raw, "cis": "logis", "balance_all": None})
    with pytest.raises(ValueError, match="Balance All needs an inHance or AUS CIS"):
        BillerConfig.model_validate({**{k: v for k, v in raw.items() if k != "cis_service"}, "cis": "logis"})


class _Fourth(CisVendor):
    """A vendor registered by a test: web services for RTDR only."""

    name = "fourth"
    label = "Fourth"
    flows: ClassVar[frozenset[Flow]] = frozenset({"balances"})

    def service(self, client: object) -> CisService:
        raise NotImplementedError


def test_a_new_vendor_gets_exactly_the_flows_it_declares(monkeypatch: pytest.MonkeyPatch):
    """A third Harris system never takes the AUS branch: its biller has only what its vendor
    declares, whatever sections the file has."""
    monkeypatch.setitem(VENDORS, "fourth", _Fourth())
    biller = _biller(cis="fourth", balance_all=None)  # Balance All needs a vendor that has it: refused
    assert biller.flows() == ["balances"]
    assert vendor("fourth").label == "Fourth"
    with pytest.raises(ValueError, match="fourth has no balance to reconcile"):
        biller.vendor().balance_all_lookup(biller)


def test_every_flow_is_supported_by_some_vendor_and_every_vendor_names_its_own():
    assert set(FLOWS) == {flow for v in VENDORS.values() for flow in v.flows}
    assert all(VENDORS[name].name == name for name in VENDORS)
