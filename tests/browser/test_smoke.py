"""One real-browser smoke test of the main flow: Debian's Chromium driven by Playwright.

Starts `streamlit run app.py -- --workspace <quick demo>` on a free localhost port, opens the
Overview and checks the demo's checkpoints are listed, opens Training curves and sees the chart
with the best step labelled, then switches workspace in the sidebar.
The test fails (it does not skip) when /usr/bin/chromium is missing: `.ci/run` installs it.
"""

from __future__ import annotations

import socket
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


@pytest.fixture
def server(quick_demo, tmp_path):
    port = free_port()
    log = open(tmp_path / "streamlit.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless=true",
         "--server.address=127.0.0.1", f"--server.port={port}", "--server.fileWatcherType=none",
         "--browser.gatherUsageStats=false", "--", "--workspace", str(quick_demo)],
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
