"""One real-browser smoke test of the main flow: Debian's Chromium driven by Playwright.

Starts `streamlit run app.py -- --workspace <quick demo>` on a free localhost port, opens the
Overview and checks the demo's checkpoints are listed, opens Training curves and sees the chart
with the best step labelled, then switches workspace in the sidebar. A second test opens the
Metrics page of an evaluated demo, its A-vs-B view, and checks that an output holding HTML is
shown as literal text (and never runs). A third opens the Forgetting page from the Overview
recommendation and changes the threshold there. A fourth has alice and bob rate at once in two
browser sessions (no checkpoint name in either page), then opens the ranking.
The test fails (it does not skip) when /usr/bin/chromium is missing: `.ci/run` installs it.
"""

from __future__ import annotations

import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(workspace: Path, tmp_path: Path):
    """`streamlit run app.py -- --workspace WORKSPACE` on a free port; yields its URL."""
    port = free_port()
    log = open(tmp_path / "streamlit.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless=true",
         "--server.address=127.0.0.1", f"--server.port={port}", "--server.fileWatcherType=none",
         "--browser.gatherUsageStats=false", "--", "--workspace", str(workspace)],
        cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=1).read() == b"ok":
                break
        except OSError:
            time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail(f"streamlit did not start: {(tmp_path / 'streamlit.log').read_text()[-2000:]}")
    yield url
    proc.terminate()
    proc.wait(timeout=20)
    log.close()


@pytest.fixture
def server(quick_demo, tmp_path):
    yield from start_server(quick_demo, tmp_path)


def wait_idle(page) -> None:
    page.wait_for_selector('[data-test-script-state="notRunning"]', timeout=60_000)


def test_overview_lists_demo_checkpoints_in_a_real_browser(server, quick_demo, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    assert Path(CHROMIUM).exists(), "install Debian's chromium (bash scripts/install.sh --test does)"
    with sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=CHROMIUM, headless=True, args=ARGS
        )
        page = ctx.pages[0] if ctx.pages else ctx.new_page()
        page.goto(server)
        expect(page.get_by_role("heading", name="Demo: Brightleaf customer-support fine-tune")).to_be_visible(timeout=60_000)
        wait_idle(page)
        table = page.locator('[data-testid="stTable"]')
        for step in (6, 12, 18, 24, 30, 36):
            expect(table.get_by_text(f"checkpoint-{step}", exact=True)).to_be_visible()
        expect(page.get_by_text("support_test").first).to_be_attached()
        expect(page.locator(".js-plotly-plot .main-svg").first).to_be_visible(timeout=30_000)
        page.screenshot(path=str(tmp_path / "overview.png"), full_page=True)

        # A widget in the page and in the sidebar: the sidebar must survive the rerun.
        page.get_by_role("button", name="Refresh").click()
        wait_idle(page)
        expect(page.get_by_role("textbox", name="Workspace folder")).to_have_value(str(quick_demo))
        expect(table.get_by_text("checkpoint-36", exact=True)).to_be_visible()
        expect(page.get_by_text("Page not found")).to_have_count(0)

        # Training curves: the chart draws, with the best step labelled on it.
        page.get_by_role("link", name="Training curves").click()
        expect(page.get_by_role("heading", name="Training curves")).to_be_visible(timeout=30_000)
        wait_idle(page)
        plot = page.locator(".js-plotly-plot").first
        expect(plot.locator(".main-svg").first).to_be_visible(timeout=30_000)
        expect(plot.get_by_text("best: step 36")).to_have_count(1)
        page.screenshot(path=str(tmp_path / "curves.png"), full_page=True)
        page.get_by_role("link", name="Overview").click()
        expect(table.get_by_text("checkpoint-36", exact=True)).to_be_visible(timeout=30_000)

        box = page.get_by_role("textbox", name="Workspace folder")
        box.fill(str(tmp_path / "does-not-exist"))
        box.press("Enter")
        expect(page.get_by_text("workspace folder does not exist")).to_be_visible(timeout=30_000)
        expect(table).to_have_count(0)
        ctx.close()


HTML = "<b>x</b><script>alert(1)</script>"


@pytest.fixture
def metrics_server(evaluated_demo, tmp_path):
    """The evaluated demo with the output that A vs B (bleu, all examples) draws first replaced by HTML."""
    from eval_core.metric_tables import compare, load_dataset_results

    ws = tmp_path / "ws"
    shutil.copytree(evaluated_demo, ws)
    (results,) = load_dataset_results(ws)
    first = sorted(compare(results, "base", "checkpoint-36", "bleu").examples, key=lambda e: -abs(e.value_b - e.value_a))[0]
    with sqlite3.connect(ws / ".ftlens" / "results.sqlite") as db:
        db.execute("UPDATE generations SET text = ? WHERE checkpoint_fp = ? AND example_id = ?",
                   (HTML, results.checkpoint("checkpoint-36").fingerprint, first.example.id))
    yield from start_server(ws, tmp_path)


def test_metrics_page_a_vs_b_shows_outputs_as_literal_text(metrics_server, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    assert Path(CHROMIUM).exists(), "install Debian's chromium (bash scripts/install.sh --test does)"
    with sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=CHROMIUM, headless=True, args=ARGS
        )
        page = ctx.pages[0] if ctx.pages else ctx.new_page()
        dialogs: list[str] = []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.goto(metrics_server)
        wait_idle(page)
        page.get_by_role("link", name="Metrics").click()
        expect(page.get_by_role("heading", name="Metrics")).to_be_visible(timeout=30_000)
        wait_idle(page)
        panel = page.get_by_role("tabpanel").first
        expect(panel.locator('[data-testid="stDataFrame"]').first).to_be_visible(timeout=30_000)
        expect(panel.get_by_text("★ best checkpoint of the metric")).to_be_visible()

        page.get_by_role("tab", name="A vs B").click()
        ab = page.get_by_role("tabpanel", name="A vs B")
        expect(ab.get_by_text("p-value")).to_be_visible(timeout=30_000)
        expect(ab.get_by_text(re.compile(r"^\d+ of 61 examples: B scores higher than A"))).to_be_visible()
        ab.locator('[data-testid="stRadio"]').get_by_text("All", exact=True).click()
        wait_idle(page)
        expect(ab.get_by_text(re.compile(r"^61 of 61 examples: all examples"))).to_be_visible(timeout=30_000)
        expect(ab.locator('[data-testid="stDataFrame"]')).to_be_visible()
        expect(ab.locator('[data-testid="stCode"]').first).to_be_visible()
        expect(ab.get_by_text(HTML, exact=True)).to_be_visible()  # literal text, not markup
        expect(page.locator("[data-testid='stMain'] b", has_text="x")).to_have_count(0)
        page.screenshot(path=str(tmp_path / "metrics_a_vs_b.png"), full_page=True)
        assert dialogs == []  # the script never ran
        ctx.close()


@pytest.fixture
def forgetting_server(probed_demo, tmp_path):
    ws = tmp_path / "ws"
    shutil.copytree(probed_demo, ws)
    yield from start_server(ws, tmp_path)


def test_forgetting_page_from_the_overview_recommendation(forgetting_server, tmp_path):
    """Overview names the recommendation; its link opens the Forgetting page with both charts; a
    lower threshold there changes the recommendation, and the Overview follows."""
    from playwright.sync_api import expect, sync_playwright

    assert Path(CHROMIUM).exists(), "install Debian's chromium (bash scripts/install.sh --test does)"
    with sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=CHROMIUM, headless=True, args=ARGS
        )
        page = ctx.pages[0] if ctx.pages else ctx.new_page()
        page.goto(forgetting_server)
        wait_idle(page)
        expect(page.get_by_role("heading", name="Which checkpoint to ship")).to_be_visible(timeout=60_000)
        expect(page.get_by_text(re.compile(r"^(Recommended checkpoint|No checkpoint recommended): "))).to_be_visible(timeout=30_000)
        page.get_by_role("link", name="Why: the Forgetting page").click()
        expect(page.get_by_role("heading", name="Forgetting", exact=True)).to_be_visible(timeout=30_000)
        wait_idle(page)
        plots = page.locator(".js-plotly-plot")
        expect(plots).to_have_count(2, timeout=30_000)
        expect(plots.nth(0).get_by_text("general retention").first).to_be_attached()
        expect(plots.nth(1).get_by_text("Pareto frontier")).to_be_attached()
        expect(page.get_by_text(re.compile(r"paired bootstrap 95% intervals, 1000 resamples, seed 12345"))).to_be_visible()
        expect(page.locator('[data-testid="stDataFrame"]').first).to_be_visible()
        page.screenshot(path=str(tmp_path / "forgetting.png"), full_page=True)

        threshold = page.get_by_role("spinbutton", name="Retention threshold")
        threshold.fill("0.01")
        threshold.press("Enter")
        wait_idle(page)
        expect(page.get_by_text(re.compile(r"^Recommended: checkpoint-36: highest domain gain"))).to_be_visible(timeout=30_000)
        page.get_by_role("link", name="Overview").click()
        expect(page.get_by_text(re.compile(r"^Recommended checkpoint: checkpoint-36: highest domain gain"))).to_be_visible(timeout=30_000)
        ctx.close()


def open_rate_page(browser, url: str, rater: str):  # noqa: ANN001, ANN201 - playwright Browser and Page
    """A new browser session on the Rate outputs page, as `rater`."""
    from playwright.sync_api import expect

    page = browser.new_context().new_page()
    page.goto(url)
    wait_idle(page)
    page.get_by_role("link", name="Rate outputs").click()
    expect(page.get_by_role("heading", name="Rate outputs")).to_be_visible(timeout=60_000)
    wait_idle(page)
    page.get_by_role("combobox", name="Your name").click()
    page.get_by_role("option", name=rater, exact=True).click()
    wait_idle(page)
    return page


def _rate_one(page, verdict: str) -> None:
    from playwright.sync_api import expect

    form = page.locator('[data-testid="stForm"]')
    form.get_by_text(verdict, exact=True).click()
    form.get_by_role("button", name="Submit").click()
    expect(page.get_by_text("Saved.")).to_be_visible(timeout=30_000)
    wait_idle(page)


def test_two_raters_rate_at_once_blind_and_the_ranking_shows(quick_demo, tmp_path):
    """alice and bob rate in two browsers at the same time; neither page names a checkpoint; both
    ratings are stored once; the results page ranks the checkpoints."""
    from playwright.sync_api import expect, sync_playwright

    from eval_core.rating_setup import open_rating_store

    assert Path(CHROMIUM).exists(), "install Debian's chromium (bash scripts/install.sh --test does)"
    ws = tmp_path / "ws"
    shutil.copytree(quick_demo, ws, ignore=shutil.ignore_patterns("optimizer.pt", "events.out.*"))
    server = start_server(ws, tmp_path)
    url = next(server)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
            pages = {}
            for rater in ("alice", "bob"):  # two browser contexts: two separate sessions, as two people
                page = open_rate_page(browser, url, rater)
                expect(page.get_by_text(f"{rater}: 0 of 24 rated")).to_be_visible(timeout=30_000)
                wait_idle(page)
                pages[rater] = page
            for page in pages.values():
                html = page.content()
                assert "checkpoint" not in html.lower()  # blind: no checkpoint name anywhere in the page
            _rate_one(pages["alice"], "A is better")
            _rate_one(pages["bob"], "B is better")
            _rate_one(pages["alice"], "Tie")
            expect(pages["alice"].get_by_text("alice: 2 of 24 rated")).to_be_visible()
            expect(pages["bob"].get_by_text("bob: 1 of 24 rated")).to_be_visible()
            assert "checkpoint" not in pages["alice"].content().lower()
            pages["alice"].screenshot(path=str(tmp_path / "rating.png"), full_page=True)

            results = pages["bob"]
            results.get_by_role("link", name="Rating results").click()
            expect(results.get_by_role("heading", name="Rating results")).to_be_visible(timeout=30_000)
            wait_idle(results)
            expect(results.get_by_text(re.compile(r"^3 judgments"))).to_be_visible(timeout=60_000)
            expect(results.locator(".js-plotly-plot").first).to_be_visible(timeout=30_000)
            expect(results.get_by_role("heading", name="Agreement and position bias")).to_be_visible()
            results.screenshot(path=str(tmp_path / "rating_results.png"), full_page=True)
            browser.close()
    finally:
        next(server, None)
    store = open_rating_store(ws)
    try:
        rows = store.ratings_of("demo")
    finally:
        store.close()
    assert sorted((r["rater"], r["verdict"]) for r in rows) == [("alice", "left"), ("alice", "tie"), ("bob", "right")]


def test_html_report_renders_offline_without_console_errors(probed_demo, tmp_path):
    """The HTML report opens from disk with every network request refused: charts draw, no console
    error, nothing fetched. The screenshot is kept in test-artifacts/report_html.png."""
    from playwright.sync_api import expect, sync_playwright

    from eval_core.report_html import to_html
    from eval_core.report_model import build_report

    ws = tmp_path / "ws"
    shutil.copytree(probed_demo, ws)
    page_file = tmp_path / "report.html"
    page_file.write_text(to_html(build_report(ws, n_resamples=50)), encoding="utf-8")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        context = browser.new_context()
        requested: list[str] = []

        def refuse(route):  # noqa: ANN001
            if not route.request.url.startswith("file:"):
                requested.append(route.request.url)
                return route.abort()
            return route.continue_()

        context.route("**/*", refuse)
        page = context.new_page()
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(page_file.as_uri())
        expect(page.get_by_role("heading", name="Forgetting", exact=True)).to_be_visible(timeout=30_000)
        expect(page.locator(".js-plotly-plot .main-svg").first).to_be_visible(timeout=30_000)
        assert page.locator(".js-plotly-plot").count() >= 2
        artifacts = REPO / "test-artifacts"
        artifacts.mkdir(exist_ok=True)
        page.screenshot(path=str(artifacts / "report_html.png"), full_page=True)
        browser.close()
    assert errors == [] and requested == []
