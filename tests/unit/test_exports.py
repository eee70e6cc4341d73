"""rejects.csv (map-aus and the invoices DAG's artifacts) never carries a live formula."""

from __future__ import annotations

import csv
import io

from icbridge.exports import rejects_csv, safe_text
from icbridge.mapping.aus_to_bif import Reject


def test_rejects_csv_neutralises_text_that_starts_like_a_formula():
    rejects = [Reject([3, 4], "=HYPERLINK(\"http://x\")", "@SUM(1)", "-bad date"),
               Reject([9], "00123", "B-1", "missing AmountDue")]
    rows = list(csv.reader(io.StringIO(rejects_csv(rejects), newline="")))
    assert rows == [["lines", "account", "bill_number", "reason"],
                    ["3 4", "'=HYPERLINK(\"http://x\")", "'@SUM(1)", "'-bad date"],
                    ["9", "00123", "B-1", "missing AmountDue"]]


def test_safe_text_only_touches_formula_starts():
    assert [safe_text(t) for t in ("=1", "+1", "-1", "@a", "\ta", "\ra", "a=1", "", "12")] == [
        "'=1", "'+1", "'-1", "'@a", "'\ta", "'\ra", "a=1", "", "12"]
