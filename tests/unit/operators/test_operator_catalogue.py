"""One operator family for the SOAP methods: explicit arguments, single or batch by argument,
and docs/operators.md's catalogue generated from them."""

from __future__ import annotations

import pytest

from icbridge.operators.catalogue import DOC, catalogue_markdown, inputs, operator_classes
from icbridge.operators.cis import AusGetAccountDataOperator, InhanceMakePaymentExtendedOperator
from icbridge.operators.cis_base import CisCallOperator
from icbridge.operators.invoice_cloud import InvoiceCloudListPaymentsOperator


def test_the_docs_catalogue_is_the_generated_one():
    assert catalogue_markdown() in DOC.read_text(encoding="utf-8"), (
        "docs/operators.md is out of date: run python -m icbridge.operators.catalogue --write")


@pytest.mark.parametrize("cls", operator_classes(), ids=lambda c: c.__name__)
def test_every_input_is_an_explicit_templated_argument(cls: type[CisCallOperator]):
    names = [name for name, _, _ in inputs(cls)]
    assert set(cls.fields) <= set(names), "a required input that is not an argument"
    assert set(names) <= set(cls.template_fields), "an input that is not templated"
    assert cls.__doc__ and cls.method in cls.__doc__


def test_single_or_batch_is_chosen_by_the_items_argument():
    with pytest.raises(TypeError, match="needs 'account_number'"):
        AusGetAccountDataOperator(task_id="one", conn_id="c")
    single = AusGetAccountDataOperator(task_id="one", conn_id="c", account_number="1001")
    batch = AusGetAccountDataOperator(task_id="many", conn_id="c", items=[{"account_number": "1001"}])
    assert (single.batch, batch.batch) == (False, True)
    assert (single.fail_on_business_error, batch.fail_on_business_error) == (True, False)  # rule 3 in a batch
    with pytest.raises(TypeError, match="takes no items"):
        InvoiceCloudListPaymentsOperator(task_id="list", conn_id="c", items=[])


def test_a_money_call_is_never_retried_by_airflow_whatever_it_is_given():
    op = InhanceMakePaymentExtendedOperator(task_id="p", conn_id="c", retries=5, items=[])
    assert op.retries == 0 and op.attempts == 1
