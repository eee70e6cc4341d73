"""Review findings (branch review): answers real IIS/ASP.NET services, gateways and proxies may
send that the answer rules judged wrongly. Each test failed before its fix."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from icbridge.soap.aus import AusClient
from icbridge.soap.errors import MalformedAnswer
from icbridge.soap.inhance import InhanceClient
from tests import test_soap_hostile as soap_hostile
from tests.hostile_http import answer, envelope
from tests.test_soap_hostile import TEMPURI, _aus, _pay

hostile = soap_hostile.hostile  # the suite's fixtures
world_hostile = soap_hostile.world_hostile

FAULT = "<soap:Fault><faultcode>soap:Server</faultcode><faultstring>{}</faultstring></soap:Fault>"
ASMX_UNAUTHORIZED_ACCESS = (
    "System.Web.Services.Protocols.SoapException: Server was unable to process request. ---&gt; "
    "System.UnauthorizedAccessException: Access to the path 'D:\\iCloud\\logs\\payments.log' is denied."
)


def _inhance(server) -> InhanceClient:
    return InhanceClient.single(server.url + "/iCloud.asmx", "k", timeout=5)


# 1. duplicate elements: the last one decided a payment ------------------------------------------


@pytest.mark.parametrize("fields", [
    "<Success>false</Success><Success>true</Success>",
    "<Success>true</Success><Success>false</Success>",
])
def test_a_duplicated_success_is_an_answer_that_cannot_be_judged(hostile, fields):
    hostile.script("/iCloud.asmx", _aus("MakePaymentExtended", fields))
    with pytest.raises(MalformedAnswer, match="Success"):
        _pay(_inhance(hostile))


def test_a_duplicated_response_code_never_posts_a_refused_payment(hostile):
    hostile.script("/aus.asmx", _aus("AddPendingPayment", "<ResponseCode>3</ResponseCode><ResponseMessage>"
                                     "Invalid request</ResponseMessage><ResponseCode>0</ResponseCode>"))
    client = AusClient.single(hostile.url + "/aus.asmx", "k", timeout=5)
    with pytest.raises(MalformedAnswer, match="ResponseCode"):
        client.add_pending_payment("1001", datetime(2026, 3, 2, tzinfo=UTC), "10.00", "ACH", "g")


def test_two_results_in_one_response_cannot_be_judged(hostile):
    result = "<MakePaymentExtendedResult><Success>{}</Success></MakePaymentExtendedResult>"
    hostile.script("/iCloud.asmx", answer("200 OK", envelope(
        f'<MakePaymentExtendedResponse xmlns="{TEMPURI}">{result.format("false")}{result.format("true")}'
        "</MakePaymentExtendedResponse>")))
    with pytest.raises(MalformedAnswer):
        _pay(_inhance(hostile))
