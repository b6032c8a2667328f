"""Faults: writers killed with SIGKILL mid-burst and mid-evaluate, and many raters at once.

Catalogue case 24 (kill -9 between submit and acknowledgement, and during a bulk import), plus the
issue's load test: 8 concurrent rater processes x 200 ratings on SQLite and on a real PostgreSQL
server, with 0 lost and 0 duplicated. The writer in the app is `RatingStore.submit` running in the
Streamlit process; here it runs in a child process that we kill, which is the same code path without
the browser. "Acknowledged" means `submit` returned: the child then appends the token to an ack log
(fsynced) exactly as the page shows its "saved" toast only after `submit` returns.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import sqlalchemy as sa

from eval_core.rating_campaigns import CampaignSpec
from eval_core.rating_store import RatingItem, RatingStore, ratings

REPO = Path(__file__).resolve().parents[2]
MODELS = ("ckpt-a", "ckpt-b", "ckpt-c")

# A rater process: rates its queue in the page's order (next_item, submit), appends every
# acknowledged token to the ack log, and re-submits some acknowledged items (double clicks and
# replayed requests), which must be answered "already stored".
RATER = r"""
import os, random, sys
from eval_core.rating_store import RatingStore
url, campaign, rater, ack_path, seed, pause = sys.argv[1:7]
rng = random.Random(int(seed))
store = RatingStore(url)
acked, replays = [], 0
with open(ack_path, "a", encoding="utf-8") as ack:
    while (item := store.next_item(campaign, rater)) is not None:
        verdict = rng.choice(["left", "right", "tie", "both_bad"])
        if not store.submit(campaign, item.token, rater, verdict, comment=f"c{item.position}"):
            sys.exit(f"first submit of {item.token} answered 'already stored'")
        ack.write(f"{item.token}\t{verdict}\n"); ack.flush(); os.fsync(ack.fileno())
        acked.append(item.token)
        if rng.random() < 0.1:
            again = rng.choice(acked)
            if store.submit(campaign, again, rater, "tie"):
                sys.exit(f"replayed submit of {again} was stored twice")
            replays += 1
        if float(pause):
            import time; time.sleep(float(pause))
store.close()
print(replays)
"""


def _items(n: int) -> list[RatingItem]:
    return [RatingItem(f"item-{i:04d}", f"prompt {i}", {m: f"{m} answers {i}" for m in MODELS}, f"ref {i}", f"cat{i % 4}")
            for i in range(n)]


def _create(url: str, name: str, raters: tuple[str, ...], n_items: int, overlap: int) -> None:
    with RatingStore(url) as store:
        store.create_campaign(CampaignSpec(name, "set", "h", MODELS, raters, overlap=overlap), _items(n_items))


def _rater(url: str, campaign: str, rater: str, ack: Path, seed: int, pause: float = 0.0) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", RATER, url, campaign, rater, str(ack), str(seed), str(pause)],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})


def _acked(path: Path) -> dict[str, str]:
    """token -> verdict of every acknowledged rating (a torn last line was never acknowledged)."""
    if not path.exists():
        return {}
    return dict(line.split("\t") for line in path.read_text(encoding="utf-8").splitlines() if line.count("\t") == 1
                and line.split("\t")[1] in ("left", "right", "tie", "both_bad"))


def _stored(url: str, campaign: str) -> list[dict]:
    with RatingStore(url) as store:
        tokens = {(a.item_id, a.rater): a.token for a in store.assignments(campaign)}
        return [{**r, "token": tokens.get((r["item_id"], r["rater"]))} for r in store.ratings_of(campaign)]


def _integrity(db: Path) -> str:
    with sqlite3.connect(db) as conn:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]


def _wait_for_lines(path: Path, n: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if path.exists() and path.read_text(encoding="utf-8").count("\n") >= n:
            return
        if proc.poll() is not None:
            raise AssertionError(f"the writer ended before {n} ratings: {proc.communicate()}")
        time.sleep(0.01)
    raise AssertionError(f"fewer than {n} acknowledged ratings after {timeout} s")


def _check_against_acks(rows: list[dict], acks: dict[str, str]) -> None:
    by_token = Counter(r["token"] for r in rows)
    assert set(by_token.values()) <= {1}, "a rating is stored twice"
    lost = [t for t in acks if t not in by_token]
    assert not lost, f"{len(lost)} acknowledged ratings lost"
    verdicts = {r["token"]: r["verdict"] for r in rows}
    assert all(verdicts[t] == v for t, v in acks.items()), "an acknowledged verdict changed"


# --- case 24: SIGKILL ----------------------------------------------------------------------------


@pytest.mark.parametrize("kill_after", [1, 17, 60])
def test_case_24_sigkill_mid_rating_burst_loses_no_acknowledged_rating(tmp_path, kill_after):
    """kill -9 of a rater's writer between submits: every acknowledged rating is there once, the
    database passes integrity_check, and rating resumes where it stopped."""
    db = tmp_path / "results.sqlite"
    url = f"sqlite:///{db}"
    _create(url, "burst", ("ann", "bob"), 120, 1)
    ack = tmp_path / "ann.ack"
    # bob writes at the same time, so the kill also lands while another process holds the lock.
    bob = _rater(url, "burst", "bob", tmp_path / "bob.ack", 2)
    ann = _rater(url, "burst", "ann", ack, 1)
    _wait_for_lines(ack, kill_after, ann)
    ann.send_signal(signal.SIGKILL)
    assert ann.wait(timeout=30) == -signal.SIGKILL
    assert bob.wait(timeout=300) == 0, bob.communicate()
    assert _integrity(db) == "ok"
    acks = _acked(ack)
    rows = [r for r in _stored(url, "burst") if r["rater"] == "ann"]
    _check_against_acks(rows, acks)
    # At most the one rating committed after the last acknowledgement is extra; it is complete.
    assert len(acks) <= len(rows) <= len(acks) + 1
    assert all(r["verdict"] and r["model_left"] and r["model_right"] and r["comment"] for r in rows)
    # After the restart the rater carries on and ends with exactly her queue, once each.
    again = _rater(url, "burst", "ann", tmp_path / "ann-2.ack", 3)
    assert again.wait(timeout=300) == 0, again.communicate()
    final = [r for r in _stored(url, "burst") if r["rater"] == "ann"]
    assert len(final) == 60 and len({r["item_id"] for r in final}) == 60
    _check_against_acks(final, acks | _acked(tmp_path / "ann-2.ack"))
    assert _integrity(db) == "ok"


IMPORTER = r"""
import sys
from eval_core.rating_exchange import import_judgments
from eval_core.rating_store import RatingStore
url, campaign, path = sys.argv[1:4]
with RatingStore(url) as store:
    print(*import_judgments(store, campaign, path))
"""


def test_case_24_sigkill_during_bulk_import_is_all_or_nothing(tmp_path):
    """kill -9 in the middle of a judgments import: the import is one transaction, so the store holds
    none of it (never part of it), passes integrity_check, and the import then completes once."""
    db = tmp_path / "results.sqlite"
    url = f"sqlite:///{db}"
    n = 60_000
    csv_path = tmp_path / "judgments.csv"
    rng = random.Random(0)
    with csv_path.open("w", encoding="utf-8") as f:
        f.write("item_id,model_a,model_b,winner,rater,category\n")
        for i in range(n):
            f.write(f"q{i},m{i % 3},m{(i + 1) % 3},{rng.choice(['model_a', 'model_b', 'tie'])},r{i % 5},c{i % 2}\n")
    with RatingStore(url):
        pass  # an existing store, as in a workspace

    def started_inserting() -> bool:
        with sqlite3.connect(db) as conn:  # the campaign row is committed just before the big insert
            return conn.execute("SELECT count(*) FROM rating_campaigns WHERE name = 'imp'").fetchone()[0] > 0

    proc = subprocess.Popen([sys.executable, "-c", IMPORTER, url, "imp", str(csv_path)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    end = time.monotonic() + 120
    while not started_inserting():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < end
        time.sleep(0.005)
    time.sleep(0.3)
    assert proc.poll() is None, "the import finished before the kill: make the file bigger"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert _integrity(db) == "ok"
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM ratings WHERE campaign = 'imp'").fetchone()[0] == 0
    done = subprocess.run([sys.executable, "-c", IMPORTER, url, "imp", str(csv_path)], cwd=REPO, capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=600)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(n), "0"]
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*), count(DISTINCT item_id || '/' || rater) FROM ratings "
                            "WHERE campaign = 'imp'").fetchone() == (n, n)
    assert _integrity(db) == "ok"


# 429 multiple-choice examples scored in 7 chunks of 64: the kill lands after the first chunk.
EVALUATE = ["-m", "eval_core", "evaluate", "--checkpoint", "checkpoint-36", "--dataset", "general_knowledge",
            "--metric", "completion_perplexity"]
SELECTION = {"checkpoint_names": ["checkpoint-36"], "dataset_names": ["general_knowledge"],
             "metric_names": ["completion_perplexity"]}


def _nll_rows(db: Path) -> list[tuple]:
    if not db.exists():
        return []
    try:
        with sqlite3.connect(db, timeout=30) as conn:
            return conn.execute("SELECT * FROM nll_scores").fetchall()
    except sqlite3.OperationalError:  # the table is not created yet
        return []


def test_case_24_sigkill_mid_evaluate_leaves_no_half_written_result(quick_demo, tmp_path):
    """kill -9 of `python -m eval_core evaluate` while it writes: integrity_check passes, every stored
    row is whole (one transaction per chunk), and the resumed run ends with the numbers of an
    uninterrupted run, computing only what was missing."""
    from eval_core.evaluation import evaluate_workspace
    from eval_core.results_store import ResultsStore, database_url
    from eval_core.results_summary import collect_results

    ignore = shutil.ignore_patterns("optimizer.pt", "events.out.*", "results.sqlite*")
    ws, ref = tmp_path / "ws", tmp_path / "ref"
    shutil.copytree(quick_demo, ws, ignore=ignore)
    shutil.copytree(quick_demo, ref, ignore=ignore)
    db = ws / ".ftlens" / "results.sqlite"
    proc = subprocess.Popen([sys.executable, *EVALUATE, "--workspace", str(ws)], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    end = time.monotonic() + 300
    while not _nll_rows(db):
        assert proc.poll() is None, f"evaluate ended before writing: {proc.communicate()}"
        assert time.monotonic() < end
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert _integrity(db) == "ok"
    written = _nll_rows(db)
    total = 429
    assert 0 < len(written) < total, "the kill did not land mid-run"
    assert len(written) % 64 == 0, "one transaction per chunk of 64: only whole chunks are stored"
    assert all(v is not None for row in written for v in row)

    resumed = evaluate_workspace(ws, **SELECTION)
    assert resumed.cached == len(written) and resumed.computed == total - len(written)
    evaluate_workspace(ref, **SELECTION)

    def results(root: Path) -> dict:
        with ResultsStore(database_url(root)) as store:
            return {(r["checkpoint"], r["dataset"], r["metric"]): r for r in collect_results(store)["results"]}

    a, b = results(ws), results(ref)
    assert a.keys() == b.keys() and a
    for key in a:
        assert a[key]["tokens"] == b[key]["tokens"] and a[key]["nll_sum"] == pytest.approx(b[key]["nll_sum"], rel=1e-9)
    assert _integrity(db) == "ok"


# --- load: 8 rater processes x 200 ratings --------------------------------------------------------

LOAD_RATERS = tuple(f"rater{i}" for i in range(8))
PER_RATER = 200


def _load(url: str, campaign: str, tmp_path: Path) -> None:
    # 800 items, each rated by 2 of the 8 raters: 200 per rater, and every item raced by two processes.
    _create(url, campaign, LOAD_RATERS, PER_RATER * len(LOAD_RATERS) // 2, 2)
    procs = {r: _rater(url, campaign, r, tmp_path / f"{r}.ack", i) for i, r in enumerate(LOAD_RATERS)}
    replays = 0
    for r, p in procs.items():
        out, err = p.communicate(timeout=900)
        assert p.returncode == 0, f"{r}: {err[-2000:]}"
        replays += int(out.split()[-1])
    rows = _stored(url, campaign)
    acks = {t: v for r in LOAD_RATERS for t, v in _acked(tmp_path / f"{r}.ack").items()}
    per_rater = Counter(r["rater"] for r in rows)
    duplicated = len(rows) - len({(r["item_id"], r["rater"]) for r in rows})
    lost = sum(t not in {r["token"] for r in rows} for t in acks)
    print(f"{url.split(':')[0]}: {len(LOAD_RATERS)} processes x {PER_RATER} ratings, {replays} replays: "
          f"{len(rows)} stored, {lost} lost, {duplicated} duplicated")
    assert (lost, duplicated) == (0, 0)
    assert len(acks) == len(rows) == PER_RATER * len(LOAD_RATERS)
    assert all(per_rater[r] == PER_RATER for r in LOAD_RATERS)
    _check_against_acks(rows, acks)
    assert replays > 0


def test_load_8_rater_processes_x_200_on_sqlite(tmp_path):
    """8 concurrent rater processes x 200 ratings each (plus replays) on SQLite: 0 lost, 0 duplicated."""
    db = tmp_path / "results.sqlite"
    _load(f"sqlite:///{db}", "load", tmp_path)
    assert _integrity(db) == "ok"


def test_load_8_rater_processes_x_200_on_postgres(postgres_url, tmp_path):
    """The same load on the real PostgreSQL server the tests start: 0 lost, 0 duplicated."""
    campaign = f"load-{os.getpid()}-{time.time_ns()}"  # the session's server is shared between tests
    _load(postgres_url, campaign, tmp_path)
    with RatingStore(postgres_url) as store, store.engine.connect() as conn:
        n = conn.execute(sa.select(sa.func.count()).select_from(ratings).where(ratings.c.campaign == campaign)).scalar()
    assert n == PER_RATER * len(LOAD_RATERS)


def test_ack_log_reader_ignores_a_torn_last_line(tmp_path):
    """The ack log is the test's ground truth: a line cut by the kill was never acknowledged."""
    p = tmp_path / "a.ack"
    p.write_text("t1\tleft\nt2\ttie\nt3\tri", encoding="utf-8")
    assert _acked(p) == {"t1": "left", "t2": "tie"}
    assert json.dumps(_acked(tmp_path / "none.ack")) == "{}"


def test_case_24_sigkill_of_the_streamlit_server_mid_rating_loses_no_acknowledged_rating(quick_demo, tmp_path):
    """The real app in a real browser: alice rates, each rating acknowledged by the page ("Saved."),
    then the Streamlit server is killed with SIGKILL while her next submit is in flight. Every
    acknowledged rating is stored once with its verdict, integrity_check passes, and after a restart
    the page counts exactly the stored ratings and lets her go on."""
    from playwright.sync_api import expect, sync_playwright

    from tests.browser.test_smoke import ARGS, CHROMIUM, _rate_one, free_port, open_rate_page

    assert Path(CHROMIUM).exists(), "install Debian's chromium (bash scripts/install.sh --test does)"
    ws = tmp_path / "ws"
    shutil.copytree(quick_demo, ws, ignore=shutil.ignore_patterns("optimizer.pt", "events.out.*"))
    db = ws / ".ftlens" / "results.sqlite"

    def serve() -> tuple[subprocess.Popen, str]:
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless=true", f"--server.port={port}",
             "--server.fileWatcherType=none", "--", "--workspace", str(ws)],
            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return proc, f"http://127.0.0.1:{port}"

    def when_up_open_rate_page(browser, url: str):  # noqa: ANN001, ANN202
        import urllib.request

        end = time.monotonic() + 60
        while True:
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=1).read() == b"ok":
                    break
            except OSError:
                assert time.monotonic() < end, "streamlit did not start"
                time.sleep(0.2)
        return open_rate_page(browser, url, "alice")

    verdicts = [("A is better", "left"), ("B is better", "right"), ("Tie", "tie"), ("A is better", "left")]
    proc, url = serve()
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
            page = when_up_open_rate_page(browser, url)
            expect(page.get_by_text("alice: 0 of 24 rated")).to_be_visible(timeout=30_000)
            for label, _ in verdicts:  # each one acknowledged by the page before the next
                _rate_one(page, label)
            expect(page.get_by_text(f"alice: {len(verdicts)} of 24 rated")).to_be_visible()
            form = page.locator('[data-testid="stForm"]')
            form.get_by_text("B is better", exact=True).click()
            form.get_by_role("button", name="Submit").click()  # in flight: not waited for
            proc.send_signal(signal.SIGKILL)
            assert proc.wait(timeout=30) == -signal.SIGKILL
            assert _integrity(db) == "ok"
            with RatingStore(f"sqlite:///{db}") as store:
                rows = [r for r in store.ratings_of("demo") if r["rater"] == "alice"]
            assert len({r["item_id"] for r in rows}) == len(rows)  # none twice
            assert [r["verdict"] for r in rows][: len(verdicts)] == [v for _, v in verdicts]  # every acknowledged one
            assert len(verdicts) <= len(rows) <= len(verdicts) + 1  # plus, at most, the one in flight

            proc, url = serve()  # restart: the page counts what is stored and rating goes on
            page = when_up_open_rate_page(browser, url)
            expect(page.get_by_text(f"alice: {len(rows)} of 24 rated")).to_be_visible(timeout=30_000)
            _rate_one(page, "Tie")
            expect(page.get_by_text(f"alice: {len(rows) + 1} of 24 rated")).to_be_visible()
            browser.close()
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert _integrity(db) == "ok"
