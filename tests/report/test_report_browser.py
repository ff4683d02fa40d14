"""The HTML report in a real browser: headless Chromium renders it, filters it, and runs nothing else.

Needs the Debian packages ``chromium`` and ``chromium-driver`` and the ``selenium`` package (``.ci/run``
installs them). Elsewhere the tests are skipped, unless ``APN_REQUIRE_BROWSER=1`` (set by CI) makes a
missing browser a failure. ``APN_SCREENSHOT_DIR`` keeps the screenshots.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from apn_testing import MARKUP_EXIF, MARKUP_NAME, markup_folder, save_tiny_checkpoint

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        selenium_missing = True
    else:
        selenium_missing = False
    if selenium_missing or not CHROMIUM or not CHROMEDRIVER:
        message = "headless Chromium needs the chromium and chromium-driver packages and selenium"
        if os.environ.get("APN_REQUIRE_BROWSER"):
            pytest.fail(message)
        pytest.skip(message)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    # The page is offline; so is the browser (no update checks, sync or other background traffic).
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1400,1000", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync", "--disable-default-apps",
                     "--no-first-run", "--no-pings"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


def _screenshot(driver, tmp_path: Path, name: str) -> Path:
    shot = tmp_path / name
    assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    if os.environ.get("APN_SCREENSHOT_DIR"):
        shutil.copy(shot, Path(os.environ["APN_SCREENSHOT_DIR"]) / name)
    return shot


def _thousand_records(scan_out: Path, out: Path) -> None:
    """The real scan's records, plus synthetic ones of every verdict up to 1,000 (one model, one run)."""
    records = [json.loads(line) for line in scan_out.read_text().splitlines()]
    verdicts = ("ai-generated", "real", "inconclusive", None)
    with out.open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record) + "\n")
        for index in range(1000 - len(records)):
            extra = copy.deepcopy(records[0])
            verdict = verdicts[index % 4]
            low, high = {"ai-generated": (0.55, 1.0), "real": (0.0, 0.45), "inconclusive": (0.45, 0.55),
                         None: (0, 0)}[verdict]
            extra.update(path=f"archive/{index:04d}.jpg", verdict=verdict,
                         p_ai=None if verdict is None else round(low + (high - low) * (index % 97) / 97, 6),
                         error="not an image (unrecognised format)" if verdict is None else None)
            handle.write(json.dumps(extra) + "\n")


def test_report_renders_filters_and_escapes_in_chromium(browser, run_apn, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    weights = save_tiny_checkpoint(tmp_path / "tiny.safetensors", threshold=0.5, band=(0.45, 0.55),
                                   logit_gain=30.0)
    folder = markup_folder(tmp_path / "photos")
    scan_out = tmp_path / "scan.jsonl"
    run_apn("scan", folder, "--weights", weights, "--out", scan_out)
    records = tmp_path / "thousand.jsonl"
    _thousand_records(scan_out, records)
    page = tmp_path / "report.html"
    assert run_apn("report", records, "--out", page).code == 0

    browser.get(page.as_uri())
    _screenshot(browser, tmp_path, "report-1000.png")
    cards = browser.find_elements(By.CSS_SELECTOR, "article.card")
    assert len(cards) == 48  # one page of cards, not 1,000
    assert browser.find_element(By.ID, "shown").text == "showing 1–48 of 1000"
    # The hostile file name and EXIF value are text in the page; nothing of theirs ran or loaded.
    search = browser.find_element(By.ID, "search")
    search.send_keys("<img")
    found = [c.find_element(By.CLASS_NAME, "path").text for c in
             browser.find_elements(By.CSS_SELECTOR, "article.card")]
    assert len(found) == 1 and found[0].endswith(f"/photos/{MARKUP_NAME}")
    search.clear()
    search.send_keys("exif")
    assert MARKUP_EXIF in browser.find_element(By.CSS_SELECTOR, "article.card").text
    assert browser.execute_script("return window.pwned === undefined")
    assert not browser.find_elements(By.CSS_SELECTOR, "#cards img[src='x']")
    search.clear()
    search.send_keys(" ")  # clear() fires no input event; a space then backspace does
    search.send_keys("\b")

    # Hiding every verdict but one leaves only that verdict's cards, and the count says so.
    for verdict in ("real", "inconclusive", "error"):
        browser.find_element(By.CSS_SELECTOR, f"#filters button[data-verdict='{verdict}']").click()
    shown = browser.find_elements(By.CSS_SELECTOR, "article.card")
    assert shown and {card.get_attribute("data-verdict") for card in shown} == {"ai-generated"}
    flagged = sum(1 for line in records.read_text().splitlines()
                  if json.loads(line)["verdict"] == "ai-generated")
    assert browser.find_element(By.ID, "shown").text.endswith(f"of {flagged}")
    for card in shown:
        assert "evidence, not proof" in card.text
    browser.find_element(By.CSS_SELECTOR, "#filters button[data-verdict='real']").click()
    browser.find_element(By.CSS_SELECTOR, "#pager button:last-child").click()
    assert browser.find_elements(By.CSS_SELECTOR, "article.card")

    errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert not errors, errors
    _screenshot(browser, tmp_path, "report-1000-filtered.png")
