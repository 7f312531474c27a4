"""The report in a real headless browser (slow): Chromium, driven by
playwright, loads the page offline; the SVG has one node per op, the console
has no errors, and a screenshot lands in experiments/results/report.png."""

from __future__ import annotations

import shutil

import pytest

import raspsynth
from tests.conftest import REPO

pytestmark = pytest.mark.slow


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("no Chromium on PATH (Debian: apt-get install chromium)")


def test_report_loads_in_chromium_with_one_node_per_op(tmp_path, shared_examples):
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install 'raspsynth[browser]'")
    path = next(p for p in shared_examples if p.stem == "sort_unique")
    result = raspsynth.synthesize(raspsynth.load_model(str(path)).permuted(seed=0), budget_s=30)
    page_file = tmp_path / "report.html"
    page_file.write_text(result.to_html(), encoding="utf-8")
    screenshot = REPO / "experiments" / "results" / "report.png"
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=_chromium(), args=["--no-sandbox"])
        context = browser.new_context(offline=True, viewport={"width": 1100, "height": 900})
        page = context.new_page()
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("requestfailed", lambda r: errors.append(f"request failed: {r.url}"))
        page.goto(page_file.as_uri(), wait_until="load")
        nodes = page.eval_on_selector_all("svg g.op", "gs => gs.map(g => g.dataset.name)")
        box = page.locator("svg").first.bounding_box()
        page.locator(f"#sec-op-{result.ir.ops[0].name}").scroll_into_view_if_needed()
        page.screenshot(path=str(screenshot), full_page=True)
        browser.close()
    assert sorted(nodes) == sorted(op.name for op in result.ir.ops)
    assert box is not None and box["width"] > 300 and box["height"] > 150  # the graph is drawn
    assert errors == []
    assert screenshot.stat().st_size > 10_000
