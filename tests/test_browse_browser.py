"""`zos browse` in a real browser: Debian's chromium, headless, driven by Selenium through
Debian's chromedriver (never a downloaded browser or driver).

Skipped, saying why, where the two Debian packages are missing; `.ci/run` installs them and
sets ZOS_REQUIRE_BROWSER=1, under which a missing browser fails instead.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.browse_world import BrowseServer, make_store

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
# No background traffic of the browser's own: only the page under test is fetched.
FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--disable-default-apps", "--disable-extensions",
         "--window-size=1280,1600")


def _missing() -> str | None:
    absent = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if absent:
        return (f"{', '.join(absent)} missing: install Debian's browser with "
                "`apt-get install chromium chromium-driver` (.ci/run does)")
    return None


@pytest.fixture
def browser(tmp_path):
    why = _missing()
    if why:
        if os.environ.get("ZOS_REQUIRE_BROWSER") == "1":
            pytest.fail(why)
        pytest.skip(why)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    # The driver is given: Selenium Manager (which could download one) never runs.
    service = Service(executable_path=str(CHROMEDRIVER), log_output=str(tmp_path / "driver.log"))
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(tmp_path / "chromium-profile", ignore_errors=True)


def _requested(driver) -> list[str]:
    """Every URL the browser asked for since the last call (its DevTools network log)."""
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def test_a_person_reads_names_insights_and_a_chart_in_a_browser(browser, tmp_path):
    from selenium.webdriver.common.by import By

    store = make_store(tmp_path / "store")
    with BrowseServer(store) as server:
        origin = urlsplit(server.url).netloc
        seen: list[str] = []

        # The front page: people by name, an insight.
        browser.get(server.url)
        people = browser.find_element(By.XPATH, "//h2[text()='People']/following-sibling::table")
        assert "Alice (Test Guild)" in people.text and "Bob (Test Guild)" in people.text
        body = browser.find_element(By.TAG_NAME, "body").text
        assert store.public_insight[:60] in body
        assert "dave" not in body.lower() and "<chat_1>" in body
        seen += _requested(browser)

        # A canned query, reached from the front page's list of views.
        browser.find_element(By.LINK_TEXT, "Top salience").click()
        assert browser.find_element(By.TAG_NAME, "h1").text == "Top salience"
        table = browser.find_element(By.CSS_SELECTOR, "table.rows-and-columns").text
        assert "Alice ↔ Bob (Test Guild)" in table and "server:1001:" not in table
        seen += _requested(browser)

        # A person's page, by clicking a name: the insight and the chart are there to see.
        browser.find_element(By.LINK_TEXT, "Alice (Test Guild)").click()
        assert browser.find_element(By.TAG_NAME, "h1").text == "Alice (Test Guild)"
        assert store.public_insight[:60] in browser.find_element(By.TAG_NAME, "body").text
        chart = browser.find_element(By.CSS_SELECTOR, "svg.zos-chart")
        assert chart.is_displayed()
        assert chart.size["width"] > 300 and chart.size["height"] > 100
        assert len(chart.find_elements(By.TAG_NAME, "circle")) >= 2
        assert chart.get_attribute("aria-label") == "Balance over time: Alice (Test Guild)"
        browser.save_screenshot(str(tmp_path / "person.png"))
        seen += _requested(browser)

    assert (tmp_path / "person.png").stat().st_size > 10_000
    # Nothing came over the network from anywhere but zos browse itself (data: URIs are
    # inline; chrome:// pages are the browser's own, such as its blank new tab).
    fetched = [u for u in seen if urlsplit(u).scheme not in ("data", "chrome", "about")]
    assert any(u.endswith("/-/static/app.css") or "/-/static/app.css?" in u for u in fetched)
    assert [u for u in fetched if urlsplit(u).netloc != origin] == []
