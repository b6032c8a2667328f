"""Team mode end to end in a real browser (Debian's Chromium via Playwright), against PostgreSQL.

A local OIDC provider (`oidc-provider-mock`) stands in for the team's identity provider. alice
signs in with `st.login` through it, bob with an invite link; they rate the demo campaign at the
same time in two browser sessions; the admin (signed in by an admin invite) sees the ranking with
the model names; bob gets "Not allowed" on the results page. Every rating lands in PostgreSQL once.
A second test starts the app on 0.0.0.0 for a workspace without team mode: it refuses to serve.
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.browser.test_smoke import ARGS, CHROMIUM, REPO, _rate_one, free_port, wait_idle

ALICE = {"sub": "alice", "email": "alice@example.org", "email_verified": True, "name": "Alice"}


def _wait_http(url: str, what: str, log: Path, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.2)
    proc.kill()
    pytest.fail(f"{what} did not start: {log.read_text()[-2000:]}")


def _streamlit(workspace: Path, tmp_path: Path, *, address: str = "127.0.0.1", port: int | None = None,
               env: dict | None = None, home: Path | None = None):
    """`streamlit run app.py` on `address`; `home` holds .streamlit/secrets.toml when given."""
    import os

    port = port or free_port()
    log_path = tmp_path / f"streamlit-{port}.log"
    log = open(log_path, "w")  # noqa: SIM115
    proc_env = {**os.environ, **(env or {})}
    if home is not None:
        proc_env["HOME"] = str(home)  # Streamlit reads ~/.streamlit/secrets.toml
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless=true", f"--server.address={address}",
         f"--server.port={port}", "--server.fileWatcherType=none", "--browser.gatherUsageStats=false",
         "--", "--workspace", str(workspace)],
        cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=proc_env)
    _wait_http(f"http://127.0.0.1:{port}/_stcore/health", "streamlit", log_path, proc)
    return proc, f"http://127.0.0.1:{port}", log


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture
def oidc_provider(tmp_path):
    """A local OpenID Connect provider on a free port that knows alice."""
    port = free_port()
    log_path = tmp_path / "oidc.log"
    log = open(log_path, "w")  # noqa: SIM115
    exe = Path(sys.executable).parent / "oidc-provider-mock"
    proc = subprocess.Popen([str(exe), "--port", str(port), "--user-claims", json.dumps(ALICE)],
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    _wait_http(f"{url}/.well-known/openid-configuration", "oidc-provider-mock", log_path, proc)
    yield url
    _stop(proc)
    log.close()


@pytest.fixture
def team_demo(quick_demo, tmp_path, fresh_postgres_db):
    """A copy of the quick demo in team mode whose store is a fresh PostgreSQL database holding the
    demo campaign (copied from the demo's SQLite store)."""
    from eval_core.rating_setup import open_rating_store
    from eval_core.rating_store import RatingStore

    ws = tmp_path / "ws"
    shutil.copytree(quick_demo, ws, ignore=shutil.ignore_patterns("optimizer.pt", "events.out.*"))
    with (ws / "ftlens.toml").open("a", encoding="utf-8") as f:
        f.write('\n[team]\nadmins = []\nraters = { "alice@example.org" = "alice" }\n')
    with open_rating_store(ws) as src:
        spec, items = src.campaign("demo"), list(src.items("demo").values())
    dst = RatingStore(fresh_postgres_db)
    try:
        dst.create_campaign(spec, items)
    finally:
        dst.close()
    return ws, fresh_postgres_db, spec


def _ranking_seen(page, n: int) -> None:
    from playwright.sync_api import expect

    page.get_by_role("link", name="Rating results").click()
    expect(page.get_by_role("heading", name="Rating results")).to_be_visible(timeout=60_000)
    wait_idle(page)


def test_two_raters_sign_in_by_oidc_and_invite_rate_on_postgres_and_the_admin_sees_the_ranking(
        team_demo, oidc_provider, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    from eval_core.rating_store import RatingStore
    from eval_core.team_store import TeamStore

    assert Path(CHROMIUM).exists(), "install Debian's chromium (bash scripts/install.sh --test does)"
    ws, pg_url, spec = team_demo
    with TeamStore(pg_url) as team:
        bob_link = team.create_invite("bob", "rater", "test")
        admin_link = team.create_invite("lead", "admin", "test")
    port = free_port()
    home = tmp_path / "home"
    (home / ".streamlit").mkdir(parents=True)
    (home / ".streamlit" / "secrets.toml").write_text(
        f'[auth]\nredirect_uri = "http://127.0.0.1:{port}/oauth2callback"\ncookie_secret = "{secrets.token_hex(32)}"\n'
        f'client_id = "ftlens"\nclient_secret = "not-a-secret"\n'
        f'server_metadata_url = "{oidc_provider}/.well-known/openid-configuration"\n')
    proc, url, log = _streamlit(ws, tmp_path, port=port, env={"FTLENS_DATABASE_URL": pg_url}, home=home)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
            alice = browser.new_context().new_page()
            alice.goto(url)
            expect(alice.get_by_role("heading", name="Sign in")).to_be_visible(timeout=60_000)
            alice.get_by_role("button", name="Log in").click()
            alice.wait_for_url(re.compile(r"/oauth2/authorize"), timeout=30_000)
            alice.fill('input[name="sub"]', "alice")
            alice.get_by_role("button", name="Authorize", exact=True).click()
            expect(alice.get_by_role("heading", name="Rate outputs")).to_be_visible(timeout=60_000)
            expect(alice.get_by_text("Rating as alice")).to_be_visible(timeout=30_000)
            wait_idle(alice)

            bob = browser.new_context().new_page()
            bob.goto(f"{url}/?invite={bob_link}")
            expect(bob.get_by_role("heading", name="Rate outputs")).to_be_visible(timeout=60_000)
            expect(bob.get_by_text("Rating as bob")).to_be_visible(timeout=30_000)
            wait_idle(bob)
            assert "invite=" not in bob.url and "signin=" in bob.url  # a used invite leaves the address bar
            for page in (alice, bob):  # blind: no model name, no picker of rater names
                html = page.content().lower()
                assert not any(m.lower() in html for m in spec.models) and "your name" not in html

            for verdict_a, verdict_b in (("A is better", "B is better"), ("Tie", "A is better")):
                _rate_one(alice, verdict_a)  # the two sessions interleave: concurrent raters
                _rate_one(bob, verdict_b)
            expect(alice.get_by_text(re.compile(r"alice: 2 of \d+ rated"))).to_be_visible()
            expect(bob.get_by_text(re.compile(r"bob: 2 of \d+ rated"))).to_be_visible()

            bob.goto(f"{url}/rankings?signin={bob.url.split('signin=')[1].split('&')[0]}")
            expect(bob.get_by_text(re.compile("^Not allowed"))).to_be_visible(timeout=60_000)
            assert not any(m.lower() in bob.content().lower() for m in spec.models)

            admin = browser.new_context().new_page()
            admin.goto(f"{url}/?invite={admin_link}")
            wait_idle(admin)
            _ranking_seen(admin, 4)
            expect(admin.get_by_text(re.compile(r"^4 judgments"))).to_be_visible(timeout=60_000)
            expect(admin.locator(".js-plotly-plot").first).to_be_visible(timeout=30_000)
            assert any(m in admin.content() for m in spec.models)  # the admin sees model identities
            admin.screenshot(path=str(tmp_path / "team_admin_ranking.png"), full_page=True)
            browser.close()
    finally:
        _stop(proc)
        log.close()
    store = RatingStore(pg_url)
    try:
        rows = store.ratings_of("demo")
    finally:
        store.close()
    assert sorted((r["rater"], r["verdict"]) for r in rows) == [
        ("alice", "left"), ("alice", "tie"), ("bob", "left"), ("bob", "right")]


def test_without_team_mode_the_app_refuses_to_serve_other_machines(tmp_path):
    from playwright.sync_api import expect, sync_playwright

    ws = tmp_path / "plain"
    ws.mkdir()
    (ws / "ftlens.toml").write_text('name = "private results"\n', encoding="utf-8")
    proc, url, log = _streamlit(ws, tmp_path, address="0.0.0.0")
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
            page = browser.new_context().new_page()
            page.goto(url)
            expect(page.get_by_text(re.compile("This dashboard listens on 0.0.0.0"))).to_be_visible(timeout=60_000)
            wait_idle(page)
            assert "private results" not in page.content()
            page.goto(f"{url}/rankings")
            expect(page.get_by_text(re.compile("This dashboard listens on 0.0.0.0"))).to_be_visible(timeout=60_000)
            browser.close()
    finally:
        _stop(proc)
        log.close()
