"""The HTML report in a real browser: headless Chromium (tests/browser.py) opens the file with no network.

Checked: the charts rendered (SVG elements with a non-zero size, lines drawn), no console error or uncaught
exception, sorting a table by clicking its header reorders the rows, filtering hides rows; a full-page PNG is
saved (``CRM_SYNC_UPDATE_SCREENSHOT=1`` also writes ``docs/reconciliation-report.png``; so does
``python -m localdev.report_screenshot``). Skips only when chromium is not installed (fails under CI).
"""

from __future__ import annotations

import os
from datetime import date

import pytest

from browser import Chromium, assert_not_blank, require_chromium
from localdev.report_screenshot import SCREENSHOT, build_demo_report

DAY_TO = date(2026, 11, 24)


@pytest.fixture
def report(db, tmp_path):
    return build_demo_report(db, tmp_path / "report", day_to=DAY_TO)


def column(browser: Chromium, table: str, index: int) -> list[str]:
    return browser.evaluate(
        f"Array.from(document.querySelectorAll('#{table} tbody tr'))"
        f".filter(r => r.style.display !== 'none').map(r => r.cells[{index}].textContent.trim())"
    )


def test_report_renders_sorts_and_filters_in_chromium(report, tmp_path):
    require_chromium()
    with Chromium(tmp_path / "chromium", size=(1280, 900)) as browser:
        browser.navigate(f"file://{report['html']}")
        browser.settle(0.5)
        charts = browser.evaluate(
            "Array.from(document.querySelectorAll('svg.chart')).map(s => { const b = s.getBoundingClientRect(); "
            "return {w: b.width, h: b.height, lines: s.querySelectorAll('polyline').length, "
            "lineLength: Array.from(s.querySelectorAll('polyline')).reduce((n, p) => n + p.getTotalLength(), 0)}; })"
        )
        assert len(charts) == 2
        for c in charts:
            assert c["w"] > 300 and c["h"] > 150 and c["lines"] >= 6 and c["lineLength"] > 1000, c
        assert (
            browser.evaluate("document.getElementById('headline-success-rate').textContent")
            == f"{report['headline']['success_rate']:.1%}"
        )

        # Sorting: the discrepancy table by check-in id, ascending then descending.
        header = "#disc-table thead th:nth-child(4)"
        before = column(browser, "disc-table", 3)
        browser.evaluate(f"document.querySelector('{header}').click()")
        ascending = column(browser, "disc-table", 3)
        numbers = [int(v) for v in ascending if v]
        assert ascending != before and numbers == sorted(numbers) and len(ascending) == len(before)
        assert browser.evaluate(f"document.querySelector('{header}').getAttribute('aria-sort')") == "ascending"
        browser.evaluate(f"document.querySelector('{header}').click()")
        numbers = [int(v) for v in column(browser, "disc-table", 3) if v]
        assert numbers == sorted(numbers, reverse=True)
        # Sorting the health table by success rate puts the worst first.
        browser.evaluate("document.querySelector('#integration-table thead th:nth-child(4)').click()")
        rates = [float(v.rstrip("%")) for v in column(browser, "integration-table", 3)]
        assert rates == sorted(rates) and rates[0] < rates[-1]

        # Filtering by class, then by text.
        total = len(column(browser, "disc-table", 0))
        choose = (
            "(() => {{ const e = document.getElementById('{}'); e.value = '{}'; e.dispatchEvent(new Event('{}')); }})()"
        )
        browser.evaluate(choose.format("disc-class", "missing_in_crm", "change"))
        classes = column(browser, "disc-table", 0)
        assert classes and set(classes) == {"missing_in_crm"} and len(classes) < total
        assert (
            browser.evaluate("document.getElementById('disc-count').textContent") == f"{len(classes)} of {total} rows"
        )
        browser.evaluate(choose.format("disc-class", "", "change"))
        browser.evaluate(choose.format("disc-filter", "Lone Star", "input"))
        assert set(column(browser, "disc-table", 1)) == {"Lone Star Electric"}
        browser.evaluate(choose.format("disc-filter", "", "input"))
        assert len(column(browser, "disc-table", 0)) == total

        browser.settle(0.3)
        assert browser.errors == []
        png = browser.screenshot(full_page=True)
    assert_not_blank(png)
    (tmp_path / "reconciliation-report.png").write_bytes(png)
    if os.environ.get("CRM_SYNC_UPDATE_SCREENSHOT"):
        SCREENSHOT.write_bytes(png)


def test_console_errors_are_caught(tmp_path):
    """The error collection itself works: a page with a broken script is reported."""
    require_chromium()
    page = tmp_path / "broken.html"
    page.write_text("<html><body><script>console.error('boom'); undefinedFunction();</script></body></html>")
    with Chromium(tmp_path / "chromium") as browser:
        browser.navigate(page.as_uri())
        browser.settle(0.3)
    assert any("boom" in e for e in browser.errors) and any("undefinedFunction" in e for e in browser.errors)


def test_committed_report_screenshot_is_a_real_picture():
    assert SCREENSHOT.exists(), "docs/reconciliation-report.png: run python -m localdev.report_screenshot"
    assert SCREENSHOT.stat().st_size > 50_000
    assert_not_blank(SCREENSHOT.read_bytes())
