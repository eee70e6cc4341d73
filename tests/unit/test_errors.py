"""One error hierarchy (icbridge.errors): every error icbridge raises by design has a layer
base and says whether a retry may help; the operators turn it into Airflow's exception in one
place (operators.common.final_errors)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest
from airflow.sdk.exceptions import AirflowException, AirflowFailException

import icbridge
from icbridge.errors import IcbridgeError
from icbridge.layouts.aus import FileRejected, IncompleteFile
from icbridge.operators.common import final_errors
from icbridge.soap.errors import CredentialsRefused, NotSent
from icbridge.state.db import InDoubt

# not errors of a layer: the web app's "log in first", and one flow's private carrier of a cause
OUTSIDE = {"icbridge.web.auth.NotAuthenticated", "icbridge.flows.balances._Step"}


def _exception_classes():
    for info in pkgutil.walk_packages(icbridge.__path__, "icbridge."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, BaseException) and cls.__module__ == info.name:
                yield f"{info.name}.{cls.__name__}", cls


def test_every_error_icbridge_defines_has_a_layer_base():
    loose = [name for name, cls in _exception_classes() if not issubclass(cls, IcbridgeError) and name not in OUTSIDE]
    assert loose == []
    layers = {cls.layer for _, cls in _exception_classes() if issubclass(cls, IcbridgeError)}
    assert {"config", "file", "transfer", "soap", "state", "flow"} <= layers


class _Op:
    @final_errors
    def execute(self, context):
        raise context


@pytest.mark.parametrize(
    ("error", "airflow"),
    [
        (IncompleteFile("a.txt", "trailer", "no trailer yet"), AirflowException),  # may still be written: retried
        (FileRejected("a.txt", "BID", "another biller's"), AirflowFailException),
        (InDoubt("part 2 may be in IC"), AirflowFailException),
        (NotSent("connection refused"), AirflowException),
        (CredentialsRefused("invoice_cloud", "UploadInvoiceFile", "key refused"), AirflowFailException),
    ],
)
def test_the_operators_map_an_error_by_its_retry(error, airflow):
    with pytest.raises(airflow) as info:
        _Op().execute(error)
    assert type(info.value) is airflow and info.value.__cause__ is error


def test_airflows_own_exceptions_and_bugs_pass_through():
    for raised in (AirflowFailException("as is"), KeyError("a bug")):
        with pytest.raises(type(raised)) as info:
            _Op().execute(raised)
        assert info.value is raised
