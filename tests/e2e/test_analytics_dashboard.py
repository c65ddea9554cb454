"""The dashboard in a real browser against a real stack: Debian's headless Chromium, driven by
Playwright, loads `/dashboard` from the API, which runs the named queries through the worker's
query port into chDB. The page must render every panel, fetch nothing from the network, and show
exactly the numbers the same named queries return.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from connectors.analytics_queries import DASHBOARD_QUERIES, render
from examples.generator import generate
from infra.screenshot import CHROMIUM, capture_dashboard, launch_chromium

pytestmark = pytest.mark.e2e
playwright_api = pytest.importorskip("playwright.sync_api")


def _settled(stack, namespace: str, accepted: int) -> bool:
    """Every accepted event is stored and the journeys have sent and recorded something."""
    mine = f"subscriber_id LIKE '%{namespace}%'"
    events = int(stack.sql(f"SELECT count() FROM events WHERE {mine}")[0][0])
    delivered = int(stack.sql(f"SELECT count() FROM deliveries WHERE {mine} AND kind = 'accepted'")[0][0])
    snapshots = int(stack.sql("SELECT count() FROM reputation_snapshots")[0][0])
    return events == accepted and delivered > 0 and snapshots > 0


def _panel_results(stack) -> dict[str, list[list]]:
    return {name: stack.sql(render(name)) for name in DASHBOARD_QUERIES}


def _stable_results(stack, timeout: float = 120) -> dict[str, list[list]]:
    """The panel queries' results once they stopped changing for three reads in a row (sends settle
    after journeys' waits and SMTP retries, whatever the sender's policies decide)."""
    deadline = time.monotonic() + timeout
    reads = [_panel_results(stack)]
    while time.monotonic() < deadline:
        time.sleep(2)
        reads.append(_panel_results(stack))
        if len(reads) >= 3 and reads[-1] == reads[-2] == reads[-3]:
            return reads[-1]
    raise AssertionError("the dashboard queries never settled")


def test_dashboard_renders_the_named_query_results_in_headless_chromium(running_stack, tmp_path: Path):
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make install` (infra/scripts/bootstrap.sh installs chromium)")
    stack = running_stack
    namespace = stack.settings.topic_prefix + "-dash"
    events, _expectation = generate(60, seed=5, namespace=namespace)
    accepted = 0
    for start in range(0, len(events), 100):
        response = stack.post_events(events[start : start + 100])
        assert response.status_code == 202, response.text
        accepted += response.json()["accepted"]
    deadline = time.monotonic() + 120
    while not _settled(stack, namespace, accepted) and time.monotonic() < deadline:
        time.sleep(1)
    assert _settled(stack, namespace, accepted), "the stack never caught up"
    expected = _stable_results(stack)
    assert expected["journey_funnel"] and expected["sends_over_time"] and expected["reputation_latest"]

    url = f"{stack.api}/dashboard"
    requested: list[str] = []
    console_errors: list[str] = []
    with playwright_api.sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("request", lambda request: requested.append(request.url))
            page.on("console", lambda message: console_errors.append(message.text) if message.type == "error" else None)
            page.goto(url)
            page.wait_for_selector("body[data-refreshes]", timeout=30_000)
            assert page.title() == "Tidings · analytics"
            for name in DASHBOARD_QUERIES:
                panel = page.locator(f"#panel-{name}")
                assert panel.get_attribute("data-loaded") == "true", name
                assert panel.locator(".chart svg, .chart .cards").count() == 1, f"{name} drew no chart"
                cells = page.eval_on_selector_all(
                    f"table[data-query='{name}'] tbody tr",
                    "rows => rows.map(r => [...r.cells].map(c => [c.dataset.value, c.textContent]))",
                )
                shown_values = [[json.loads(value) for value, _ in row] for row in cells]
                assert shown_values == expected[name], f"{name}: page shows {shown_values}, query gives {expected[name]}"
                for row, expected_row in zip(cells, expected[name]):
                    for (_, text), value in zip(row, expected_row):
                        if isinstance(value, int):
                            assert text.replace(",", "") == str(value), (name, text, value)
            # The funnel chart's labels carry the same numbers as the table.
            for journey_id, entered, *_ in expected["journey_funnel"]:
                label = page.locator(f"text[data-journey='{journey_id}'][data-stage='entered']").text_content()
                assert label.startswith(f"{entered:,} "), label
            status = page.locator("#status").text_content()
            assert status.startswith("updated"), status
            refreshes = int(page.get_attribute("body", "data-refreshes"))
            page.wait_for_function(f"Number(document.body.dataset.refreshes) > {refreshes}", timeout=15_000)
        finally:
            browser.close()
    assert requested and all(u.startswith(stack.api + "/dashboard") for u in requested), requested
    assert console_errors == []

    png = capture_dashboard(url, tmp_path / "dashboard.png")
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
