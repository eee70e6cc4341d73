"""The Balance All pages in a real browser: Airflow's api-server (our plugin from plugins/), a
stored run, and headless Debian chromium driven by selenium through /usr/bin/chromedriver.

Logs in through Airflow's own login page (simple auth manager, the generated admin password),
opens the pages from the Airflow UI's navigation and directly, checks the table and the
charts, downloads the CSV and reads it back, and saves screenshots in test-artifacts/ (CI
uploads that folder). Skips on a machine without chromium/chromedriver/selenium, fails
instead when CI is set (scripts/setup.sh installs them there).
"""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import requests

from icbsim.local_airflow import Airflow, airflow_env, free_port, read_admin_password, start_airflow
from tests.support.services import ON_CI, REPO
from tests.support.web import ITEMS, seed_runs

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
ARTIFACTS = REPO / "test-artifacts"
STARTUP_TIMEOUT = 120
WAIT = 30


def _require_browser() -> None:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium (pip)")
    if not missing:
        return
    message = f"missing {', '.join(missing)} (scripts/setup.sh installs them as root in CI)"
    if ON_CI:
        pytest.fail(f"{message}, and CI is set: CI must run this test")
    pytest.skip(message)


class _NoSims:
    """airflow_env() adds the simulators' connections; this test needs none."""

    def env(self) -> dict[str, str]:
        return {}


@pytest.fixture(scope="module")
def airflow_api(tmp_path_factory):
    """`airflow api-server` (fresh SQLite metadata DB, this repo's plugins/) and a seeded state DB."""
    _require_browser()
    home = tmp_path_factory.mktemp("browser")
    airflow_home = home / "airflow"
    port = free_port()
    state_url = f"sqlite:///{home / 'state.db'}"
    env, _ = airflow_env(home, airflow_home, port, _NoSims(), state_url)  # type: ignore[arg-type]
    env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"] = "admin:admin"
    airflow_home.mkdir(parents=True)
    subprocess.run([str(Path(sys.executable).parent / "airflow"), "db", "migrate"], env=env, cwd=airflow_home,
                   check=True, capture_output=True, timeout=300)
    from icbridge.state.reconcile import ReconcileStore

    store = ReconcileStore(state_url)
    run_id = seed_runs(store)
    store.dispose()
    server: Airflow = start_airflow(env, airflow_home, port, command=("api-server",), log_name="api-server.log")
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        session = requests.Session()
        session.trust_env = False
        while True:
            if server.process.poll() is not None:
                pytest.fail(f"api-server exited: {server.log_tail()}")
            try:
                if session.get(f"{server.url}/api/v2/version", timeout=2).status_code in (200, 401, 403):
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"api-server not up in {STARTUP_TIMEOUT} s: {server.log_tail()}")
            time.sleep(0.5)
        password = read_admin_password(airflow_home, deadline)
        yield server, password, run_id
    finally:
        server.stop(grace=20)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    _require_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    downloads = tmp_path_factory.mktemp("downloads")
    profile = Path(tempfile.mkdtemp(prefix="icb-chromium-"))
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1400,1000", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.add_experimental_option("prefs", {
        "download.default_directory": str(downloads),
        "download.prompt_for_download": False,
        "safebrowsing.enabled": False,
    })
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
    driver.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    driver.downloads = downloads  # type: ignore[attr-defined]
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _shot(driver, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    driver.save_screenshot(str(path))
    return path


def _login(driver, url: str, password: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(driver, WAIT)
    user_box = wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, "input[name='username']")))
    user_box.send_keys("admin")
    driver.find_element(By.CSS_SELECTOR, "input[type='password']").send_keys(password)
    wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, "button[type='submit']"))).click()


@pytest.mark.slow
@pytest.mark.timeout(STARTUP_TIMEOUT + 240)
def test_analyst_logs_in_and_reads_the_report(airflow_api, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    server, password, run_id = airflow_api
    wait = WebDriverWait(browser, WAIT)

    # 1. Anonymous: the report page sends the browser to Airflow's login, which brings it back.
    browser.get(f"{server.url}/icbridge/balance-all/")
    wait.until(ec.url_contains("/auth/login"))
    _login(browser, browser.current_url, password)
    wait.until(ec.url_contains("/icbridge/balance-all/"))
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "table.runs")))
    assert "demo_inhance" in browser.page_source and "2026-W45" in browser.page_source
    _shot(browser, "balance_all_runs.png")

    # 2. The run page: summary, two charts, the item table, paging, sort.
    browser.find_element(By.LINK_TEXT, f"#{run_id}").click()
    table = wait.until(ec.presence_of_element_located((By.ID, "items")))
    assert len(table.find_elements(By.CSS_SELECTOR, "tbody tr")) == 100
    charts = browser.find_elements(By.CSS_SELECTOR, "figure svg.icb-chart")
    assert len(charts) == 2 and all(c.size["width"] > 300 and c.size["height"] > 100 for c in charts)
    assert browser.find_elements(By.CSS_SELECTOR, "#chart-differences rect.bar")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#chart-rate rect.bar")) == 4
    assert "page 1 of 3" in browser.page_source
    _shot(browser, "balance_all_run.png")
    # compact rows, and no sideways scroll at 1280 px (issue 15)
    browser.set_window_size(1280, 1000)
    width = browser.execute_script("return document.documentElement.clientWidth")
    assert browser.execute_script("return document.documentElement.scrollWidth") <= width
    assert browser.execute_script("return document.getElementById('items').scrollWidth") <= width
    heights = [r.size["height"] for r in table.find_elements(By.CSS_SELECTOR, "tbody tr")]
    assert max(heights) < 60, max(heights)  # before/after JSON is behind a "details" toggle
    _shot(browser, "balance_all_run_1280.png")
    browser.set_window_size(1400, 1000)
    browser.find_element(By.PARTIAL_LINK_TEXT, "Missing in the CIS (").click()
    wait.until(ec.url_contains("outcome=missing_in_cis"))
    outcomes = {td.text for td in browser.find_elements(By.CSS_SELECTOR, "#items tbody tr td:nth-child(3)")}
    assert outcomes == {"Missing in the CIS"}

    # 3. The CSV download (current filter) is a file the analyst can open.
    browser.find_element(By.ID, "download-csv").click()
    deadline = time.monotonic() + WAIT
    files: list[Path] = []
    while time.monotonic() < deadline:
        files = [p for p in browser.downloads.glob("*.csv")]
        if files and not list(browser.downloads.glob("*.crdownload")):
            break
        time.sleep(0.2)
    assert files, "no CSV downloaded"
    rows = list(csv.DictReader(files[0].open(encoding="utf-8")))
    assert rows and {r["outcome"] for r in rows} == {"missing_in_cis"}
    assert len(rows) == sum(1 for i in range(40, ITEMS + 40) if i % 10 == 1)
    assert all(r["message"] == "Account not found" for r in rows)

    # 4. The same pages from the Airflow UI's navigation (external view, framed by the UI).
    browser.get(f"{server.url}/plugin/balance-all")
    frame = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "iframe")))
    browser.switch_to.frame(frame)
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "table.runs")))
    browser.switch_to.default_content()
    _shot(browser, "balance_all_in_airflow_ui.png")


@pytest.mark.slow
@pytest.mark.timeout(STARTUP_TIMEOUT + 180)
def test_a_page_on_another_origin_cannot_run_biller_check(airflow_api, browser):
    """Issue 21 item 2, in a real browser logged in to Airflow: a page served from another
    origin (the same host, another port: the browser sends the SameSite=Lax cookie with it)
    auto-submits a POST to Biller check and loads the check's URL as an image. Neither runs the
    check; the page's own form, in the same browser, does."""
    import http.server
    import threading

    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    server, password, _ = airflow_api
    wait = WebDriverWait(browser, WAIT)
    check_url = f"{server.url}/icbridge/billers/demo_aus/check"
    browser.get(check_url)
    if "/auth/login" in browser.current_url:
        _login(browser, browser.current_url, password)
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "form button[type='submit']")))
    assert "ready to unpause" not in browser.page_source and "fix the failed" not in browser.page_source

    evil = (f'<html><body><img src="{check_url}"><form id="f" method="post" action="{check_url}">'
            '<input type="hidden" name="token" value="1.forged"></form>'
            '<script>document.getElementById("f").submit()</script></body></html>').encode()

    class Evil(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(evil)))
            self.end_headers()
            self.wfile.write(evil)

        def log_message(self, *args):
            pass

    other = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Evil)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    try:
        browser.get(f"http://127.0.0.1:{other.server_address[1]}/")
        wait.until(lambda d: d.current_url.startswith(check_url))  # the forged POST landed on the check
        page = browser.page_source
        assert "refused: a request from another" in page, page[:2000]
        assert "ready to unpause" not in page and "fix the failed" not in page
        _shot(browser, "biller_check_cross_origin_refused.png")
    finally:
        other.shutdown()
    browser.get(check_url)  # the page's own form runs it
    wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, "form button[type='submit']"))).click()
    wait.until(lambda d: "ready to unpause" in d.page_source or "fix the failed" in d.page_source)
    _shot(browser, "biller_check_own_form.png")


@pytest.mark.slow
@pytest.mark.timeout(STARTUP_TIMEOUT + 120)
def test_the_health_page_fits_1280_px_and_says_what_needs_attention(airflow_api, browser):
    """Issue 23: the Integration health page at the Airflow frame's width: no sideways scroll, the
    counts by status on top, every demo biller's flows (Balance All and the payment export too)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    server, password, _ = airflow_api
    wait = WebDriverWait(browser, WAIT)
    browser.set_window_size(1280, 1000)
    browser.get(f"{server.url}/icbridge/health/")
    if "/auth/login" in browser.current_url:
        _login(browser, browser.current_url, password)
        wait.until(ec.url_contains("/icbridge/health/"))
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "table.health")))
    assert "need attention" in browser.find_element(By.CSS_SELECTOR, "p.health-counts").text
    flows = {(r.get_attribute("data-biller"), r.get_attribute("data-flow"))
             for r in browser.find_elements(By.CSS_SELECTOR, "tr.health-row")}
    assert ("demo_aus", "balance_all") in flows and ("demo_logis", "payment_export") in flows
    width = browser.execute_script("return document.documentElement.clientWidth")
    assert browser.execute_script("return document.documentElement.scrollWidth") <= width
    table = browser.find_element(By.CSS_SELECTOR, "table.health")
    assert browser.execute_script("return arguments[0].scrollWidth <= arguments[0].clientWidth", table)
    _shot(browser, "health_1280.png")
    browser.set_window_size(1400, 1000)


@pytest.mark.slow
@pytest.mark.timeout(STARTUP_TIMEOUT + 120)
def test_the_balance_all_index_fits_1280_px_with_money_and_weeks_as_read(airflow_api, browser):
    """Issue 24: the runs index at the Airflow frame's width: no sideways scroll of the page or
    its tables; money as $, weeks as "week ending"."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    server, password, _ = airflow_api
    wait = WebDriverWait(browser, WAIT)
    browser.set_window_size(1280, 1000)
    browser.get(f"{server.url}/icbridge/balance-all/")
    if "/auth/login" in browser.current_url:
        _login(browser, browser.current_url, password)
        wait.until(ec.url_contains("/icbridge/balance-all/"))
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "table.runs")))
    assert "week ending 11/08/2026" in browser.page_source and "$" in browser.page_source
    # this week against last week: the latest weekly run (2026-W44, 2 mismatches) against 2026-W43 (5)
    weeks = browser.find_element(By.CSS_SELECTOR, "#weeks tbody tr")
    cells = [td.text for td in weeks.find_elements(By.CSS_SELECTOR, "td")]
    assert cells[2:4] == ["2", "-3"] and cells[8:11] == ["0", "2", "3"], cells
    assert len(weeks.find_elements(By.CSS_SELECTOR, "svg.icb-trend circle.point")) == 3  # one a weekly run
    width = browser.execute_script("return document.documentElement.clientWidth")
    assert browser.execute_script("return document.documentElement.scrollWidth") <= width
    for table in browser.find_elements(By.CSS_SELECTOR, "table.runs"):
        assert browser.execute_script("return arguments[0].scrollWidth <= arguments[0].clientWidth", table)
    _shot(browser, "balance_all_index_1280.png")

    # the latest weekly run's page: its marks, what was resolved, no sideways scroll either
    weeks.find_element(By.PARTIAL_LINK_TEXT, "#").click()
    wait.until(ec.presence_of_element_located((By.ID, "resolved-items")))
    marks = {td.text for td in browser.find_elements(By.CSS_SELECTOR, "#items tbody tr td:nth-child(4)")}
    assert marks == {"still open since " + _first_day()}, marks
    assert len(browser.find_elements(By.CSS_SELECTOR, "#resolved-items tbody tr")) == 3
    headers = {th.get_attribute("title") for th in browser.find_elements(By.CSS_SELECTOR, "#items th[title]")}
    assert "cis_future_balance" in headers and "ic_block_cc" not in headers  # inHance version 2 columns only
    assert browser.execute_script("return document.documentElement.scrollWidth") <= width
    assert browser.execute_script("return document.getElementById('items').scrollWidth") <= width
    browser.execute_script("document.getElementById('changes').scrollIntoView()")
    _shot(browser, "balance_all_run_changes_1280.png")
    browser.set_window_size(1400, 1000)


def _first_day() -> str:
    """The day (MM/DD/YYYY, demo_inhance's America/New_York) the seeded runs started: today."""
    from datetime import datetime
    from zoneinfo import ZoneInfo

    return f"{datetime.now(ZoneInfo('America/New_York')):%m/%d/%Y}"
