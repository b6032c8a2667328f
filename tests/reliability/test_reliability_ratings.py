"""Reliability catalogue section 3, "Annotation integrity": cases 21-23 and 25-30 (24, the kill -9
test, lives with the lead's crash tests).

Every store here is a real SQLite file in tmp_path or the session's real PostgreSQL server
(`postgres_url`); campaign names are unique per test so PostgreSQL runs never see each other's rows.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import multiprocessing
import os
import queue
import shutil
import sqlite3
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy import event

from eval_core import results_store, sqlite_files
from eval_core.cli import main
from eval_core.errors import EvalCoreError
from eval_core.rating_campaigns import CampaignSpec, assign
from eval_core.rating_exchange import export_text
from eval_core.rating_store import RatingItem, RatingStore, judgments_and_scores, ratings
from eval_core.results_store import ENV_DATABASE_URL, STORE_SCHEMA_VERSION, database_url
from eval_core.sqlite_files import NETWORK_FILESYSTEMS, filesystem_type, parse_mountinfo

MODELS = ("ckpt-a", "ckpt-b")
APP = str(Path(__file__).resolve().parents[2] / "app.py")


def _items(n: int, prompt: str = "prompt") -> list[RatingItem]:
    return [RatingItem(f"item-{i:03d}", f"{prompt} {i}", {m: f"{m} answers {i}" for m in MODELS}, f"ref {i}", "cat")
            for i in range(n)]


def _campaign(store: RatingStore, raters: tuple[str, ...], n_items: int, overlap: int | None = None,
              prompt: str = "prompt", name: str | None = None, dataset: str = "support") -> CampaignSpec:
    spec = CampaignSpec(name or f"c-{uuid.uuid4().hex[:12]}", dataset, "genhash", MODELS, raters,
                        overlap=overlap or len(raters))
    store.create_campaign(spec, _items(n_items, prompt))
    return spec


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request, tmp_path) -> str:
    if request.param == "postgres":
        return request.getfixturevalue("postgres_url")
    return f"sqlite:///{tmp_path / 'results.sqlite'}"


def _count(store: RatingStore, campaign: str) -> int:
    with store.engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(ratings).where(ratings.c.campaign == campaign)).scalar()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- workers for threads and spawned processes (module level, so spawn can import them) ----------


def _rater_worker(url: str, pair: str, load: str, rater: str, barrier, out) -> None:  # noqa: ANN001
    """Rate the shared `pair` item at the barrier (a race), then the whole `load` queue."""
    store = RatingStore(url)
    try:
        (pair_a,) = store.assignments(pair, rater)
        tokens = [a.token for a in store.assignments(load, rater)]
        barrier.wait(timeout=120)
        acked = [store.submit(pair, pair_a.token, rater, "left")]
        acked += [store.submit(load, t, rater, ("left", "right", "tie")[i % 3]) for i, t in enumerate(tokens)]
        out.put((rater, acked))
    except BaseException as exc:  # reported to the test, not lost in a child
        out.put((rater, repr(exc)))
    finally:
        store.close()


def _hold_write_lock(path: str, ready, release, hold_s: float, released) -> None:  # noqa: ANN001
    """Another process: take SQLite's write lock (BEGIN IMMEDIATE), write, hold it, then commit."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=60)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO store_meta (key, value) VALUES ('lock_holder', 'was here')")
        ready.set()
        if hold_s:
            time.sleep(hold_s)
        else:
            release.wait(120)
        conn.execute("COMMIT")
        released.set()
    finally:
        conn.close()


def _open_as_nobody(url: str, out) -> None:  # noqa: ANN001
    """In a forked child: drop root, so a read-only folder really is read-only, and open the store."""
    os.setgid(65534)
    os.setuid(65534)
    try:
        RatingStore(url).close()
        out.send(("opened", None, None))
    except EvalCoreError as exc:
        out.send(("EvalCoreError", exc.message, exc.path))
    except BaseException as exc:  # noqa: BLE001 - anything else is the failure this test looks for
        out.send((type(exc).__name__, str(exc), None))


# --- 21 --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("workers", ["threads", "processes"])
def test_case_21_concurrent_raters_same_item_and_load(db_url, workers):
    """Two raters submitting one item at the same moment are both stored once; 4 raters x 25 items give 100 rows."""
    n_raters, n_items = 4, 25
    raters = tuple(f"r{i}" for i in range(n_raters))
    store = RatingStore(db_url)
    try:
        pair = _campaign(store, raters, 1)  # every rater has the same single item
        load = _campaign(store, raters, n_items)  # overlap = all raters: every item is rated by all 4
    finally:
        store.close()
    if workers == "threads":
        barrier, out = threading.Barrier(n_raters), queue.Queue()
        runners = [threading.Thread(target=_rater_worker, args=(db_url, pair.name, load.name, r, barrier, out)) for r in raters]
    else:
        ctx = multiprocessing.get_context("spawn")
        barrier, out = ctx.Barrier(n_raters), ctx.Queue()
        runners = [ctx.Process(target=_rater_worker, args=(db_url, pair.name, load.name, r, barrier, out)) for r in raters]
    for w in runners:
        w.start()
    results = dict(out.get(timeout=300) for _ in runners)
    for w in runners:
        w.join(timeout=60)
    assert all(isinstance(v, list) for v in results.values()), results
    assert all(all(v) for v in results.values())  # every submit acknowledged as stored now
    store = RatingStore(db_url)
    try:
        pair_rows = store.ratings_of(pair.name)
        load_rows = store.ratings_of(load.name)
        assert sorted(r["rater"] for r in pair_rows) == list(raters) and _count(store, pair.name) == n_raters
        assert _count(store, load.name) == len(load_rows) == n_raters * n_items
        assert set(Counter((r["item_id"], r["rater"]) for r in load_rows).values()) == {1}
    finally:
        store.close()


# --- 22 --------------------------------------------------------------------------------------------


def test_case_22_double_submit_resubmit_replay_store_one_row(db_url):
    """Double click, resubmit with another verdict, racing tabs and replayed imports all leave one row; the
    first rating stands and later submits return False (the page says "already saved")."""
    store = RatingStore(db_url)
    try:
        spec = _campaign(store, ("ann",), 3)
        first = store.next_item(spec.name, "ann")
        assert store.submit(spec.name, first.token, "ann", "left", {"left": {"tone": 4}}) is True
        assert store.submit(spec.name, first.token, "ann", "left", {"left": {"tone": 4}}) is False  # double click
        assert store.submit(spec.name, first.token, "ann", "right", comment="changed my mind") is False  # resubmit
        (row,) = store.ratings_of(spec.name)
        assert (row["verdict"], row["scores"], row["comment"]) == ("left", {"left": {"tone": 4}}, "")

        second = store.next_item(spec.name, "ann")  # four tabs racing on one item
        barrier, answers = threading.Barrier(4), []

        def click() -> None:
            barrier.wait(timeout=60)
            answers.append(store.submit(spec.name, second.token, "ann", "tie"))

        tabs = [threading.Thread(target=click) for _ in range(4)]
        for t in tabs:
            t.start()
        for t in tabs:
            t.join(timeout=120)
        assert sorted(answers) == [False, False, False, True]

        replay = {k: v for k, v in store.ratings_of(spec.name)[0].items()}
        replay["scores"] = json.dumps(replay["scores"])
        assert store.import_ratings([replay, replay]) == 0  # a replayed request: nothing new
        with pytest.raises(sa.exc.IntegrityError), store.engine.begin() as conn:  # the key, not only the code, refuses
            conn.execute(ratings.insert().values(**replay))
        assert _count(store, spec.name) == 2

        assert store.undo_last(spec.name, "ann") is not None  # undo, then rate again: still one row per item
        again = store.next_item(spec.name, "ann")
        assert store.submit(spec.name, again.token, "ann", "both_bad") is True
        assert _count(store, spec.name) == 2
        assert set(Counter(r["item_id"] for r in store.ratings_of(spec.name)).values()) == {1}
    finally:
        store.close()


# --- 23 --------------------------------------------------------------------------------------------


def _winner_model(row: dict) -> str | None:
    return {"left": row["model_left"], "right": row["model_right"]}.get(row["verdict"])


def test_case_23_blind_verdict_maps_to_real_models_and_order_is_persisted(tmp_path):
    """"A is better" stores the model whose output was shown as A, whatever the random order; the order is
    stored, survives reopening, and is not re-drawn for a submitted item."""
    url = f"sqlite:///{tmp_path / 'results.sqlite'}"
    store = RatingStore(url)
    try:
        spec = _campaign(store, ("ann", "bob"), 20)
        plan = store.assignments(spec.name)
        assert {a.left for a in plan} == set(MODELS)  # both orders occur: the randomisation is real
        items = store.items(spec.name)
        by_token = {a.token: a for a in plan}
        for rater in spec.raters:
            while (nxt := store.next_item(spec.name, rater)) is not None:
                assert store.submit(spec.name, nxt.token, rater, "left")
                item_id = by_token[nxt.token].item_id
                (row,) = [r for r in store.ratings_of(spec.name) if (r["item_id"], r["rater"]) == (item_id, rater)]
                assert items[item_id].outputs[_winner_model(row)] == nxt.left_text  # the text shown as A won
        judgments, _ = judgments_and_scores(store.ratings_of(spec.name))
        by_key = {(a.item_id, a.rater): a for a in plan}
        assert all(j.winner == "model_a" and j.model_a == by_key[(j.item_id, j.rater)].left for j in judgments)
    finally:
        store.close()
    reopened = RatingStore(url)
    try:
        assert reopened.assignments(spec.name) == plan  # the left/right order is stored, not recomputed
        assert reopened.campaign(spec.name).seed == spec.seed
        assert assign(replace(spec, seed=spec.seed + 1), list(items)) != plan  # another seed would give another order
    finally:
        reopened.close()


def test_case_23_page_rerun_does_not_rerandomise_the_pair(tmp_path, monkeypatch):
    """Rerunning and reloading the rating page shows the same A/B texts, and the submitted verdict maps to the
    model shown as A."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    ws = tmp_path / "ws"
    (ws / ".ftlens").mkdir(parents=True)
    store = RatingStore(database_url(ws))
    try:
        spec = _campaign(store, ("alice",), 4, name="blind")
        before = store.assignments("blind")
    finally:
        store.close()
    monkeypatch.setenv("FTLENS_WORKSPACE", str(ws))
    monkeypatch.setenv("FTLENS_DEMO_DIR", str(tmp_path / "no_demo_here"))
    monkeypatch.delenv("FTLENS_DATABASE_URL", raising=False)
    st.cache_data.clear()
    st.cache_resource.clear()

    def shown(at) -> tuple[str, str, str]:  # noqa: ANN001
        token = next(r.key for r in at.radio if r.key.endswith("_verdict")).split("_")[1]
        return token, at.code[1].value, at.code[2].value

    def load_page():  # noqa: ANN202 - a fresh browser session: the page loaded again
        at = AppTest.from_file(APP, default_timeout=60).run()
        at.switch_page("pages/rating.py").run()
        at.selectbox(key=f"rating_rater_{spec.name}").set_value("alice").run()
        assert not at.exception, at.exception
        return at

    at = load_page()
    first = shown(at)
    assert shown(at.run()) == first  # a rerun
    assert shown(load_page()) == first  # a reload
    at.radio(key=f"rate_{first[0]}_verdict").set_value("left")
    at.button[0].click().run()
    assert at.success[0].value == "Saved."
    assert shown(load_page())[0] != first[0]  # the next item; the rated one is not offered again
    store = RatingStore(database_url(ws))
    try:
        (row,) = store.ratings_of("blind")
        assert store.items("blind")[row["item_id"]].outputs[_winner_model(row)] == first[1]
        assert store.assignments("blind") == before  # nothing re-drawn by the page runs
    finally:
        store.close()


# --- 25 --------------------------------------------------------------------------------------------


def test_case_25_writer_waits_for_a_held_lock_or_says_retry(tmp_path):
    """A 3 s write lock held by another process: the submit waits and succeeds; with a shorter busy timeout it
    fails with a retryable EvalCoreError and stores nothing, and the retry succeeds."""
    path = tmp_path / "results.sqlite"
    url = f"sqlite:///{path}"
    store = RatingStore(url)
    ctx = multiprocessing.get_context("fork")  # the holder needs only sqlite3: no re-import as spawn would do
    try:
        spec = _campaign(store, ("ann",), 3)
        ready, release, released = ctx.Event(), ctx.Event(), ctx.Event()
        holder = ctx.Process(target=_hold_write_lock, args=(str(path), ready, release, 3.0, released))
        holder.start()
        assert ready.wait(120)
        token = store.next_item(spec.name, "ann").token
        assert store.submit(spec.name, token, "ann", "left") is True
        assert released.is_set()  # it could only commit after the other process let go of the lock
        holder.join(60)
        assert holder.exitcode == 0 and _count(store, spec.name) == 1
    finally:
        store.close()

    impatient = RatingStore(url, busy_timeout_s=0.2)
    try:
        ready, release, released = ctx.Event(), ctx.Event(), ctx.Event()
        holder = ctx.Process(target=_hold_write_lock, args=(str(path), ready, release, 0, released))
        with sqlite3.connect(path) as conn:
            conn.execute("DELETE FROM store_meta WHERE key = 'lock_holder'")
        conn.close()
        holder.start()
        assert ready.wait(120)
        token = impatient.next_item(spec.name, "ann").token
        with pytest.raises(EvalCoreError, match="busy.*Nothing was saved; try again") as err:
            impatient.submit(spec.name, token, "ann", "right")
        assert err.value.path == str(path.resolve())
        release.set()
        holder.join(60)
        assert _count(impatient, spec.name) == 1  # the failed submit stored nothing
        assert impatient.submit(spec.name, token, "ann", "right") is True  # the rater's retry
    finally:
        impatient.close()


def test_case_25_every_write_transaction_begins_immediate(tmp_path):
    """Every statement that writes runs inside BEGIN IMMEDIATE; reads use a plain deferred BEGIN; pragmas are
    WAL, synchronous=FULL and a 30 s busy timeout."""
    store = RatingStore(f"sqlite:///{tmp_path / 'results.sqlite'}")
    log: list[tuple[int, str]] = []

    @event.listens_for(store.engine, "connect")
    def _trace(dbapi_conn, _record):  # noqa: ANN001
        dbapi_conn.set_trace_callback(lambda sql, cid=id(dbapi_conn): log.append((cid, sql.strip())))

    store.engine.dispose()  # new connections, traced from their first statement
    try:
        spec = _campaign(store, ("ann", "bob"), 4)
        a = store.next_item(spec.name, "ann")
        store.submit(spec.name, a.token, "ann", "left")
        store.skip(spec.name, store.next_item(spec.name, "ann").token, "ann")
        store.undo_last(spec.name, "ann")
        store.import_ratings([{**store.ratings_of(spec.name)[0], "rater": "bob", "scores": "{}"}] if store.ratings_of(spec.name)
                             else [])
        store.add_analysis("x", "k", {}, "d", "{}")
        store.ratings_of(spec.name)
        with store.engine.connect() as conn:
            pragmas = [conn.exec_driver_sql(f"PRAGMA {p}").scalar() for p in ("journal_mode", "synchronous", "busy_timeout")]
    finally:
        store.close()
    assert pragmas == ["wal", 2, 30000]  # synchronous 2 = FULL
    open_tx: dict[int, str | None] = {}
    writes = reads = 0
    for cid, sql in log:
        head = sql.split(None, 1)[0].upper() if sql else ""
        if sql.upper().startswith("BEGIN"):
            assert open_tx.get(cid) is None
            open_tx[cid] = sql.upper()
            reads += sql.upper() == "BEGIN"
        elif head in ("COMMIT", "ROLLBACK"):
            open_tx[cid] = None
        elif head in ("INSERT", "UPDATE", "DELETE", "REPLACE", "CREATE", "DROP"):
            assert open_tx.get(cid) == "BEGIN IMMEDIATE", sql
            writes += 1
    assert writes >= 8 and reads >= 3  # the trace saw the work


# --- 26 --------------------------------------------------------------------------------------------

MOUNTINFO = r"""22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard
40 27 0:50 / /mnt/team\040share rw,relatime shared:7 - nfs4 fileserver:/export rw,vers=4.2
41 27 0:51 / /mnt/win rw master:3 - cifs //srv/share rw
42 27 0:52 / /home/me/remote rw - fuse.sshfs me@host:/data rw
43 27 0:53 / /mnt/c rw,noatime - 9p drvfs rw
not a mountinfo line
"""


def test_case_26_network_fs_readonly_dir_and_full_disk(tmp_path, monkeypatch):
    """WAL-on-NFS/SMB/sshfs/9p is refused naming the file; a read-only folder gives a clear error; a full disk
    makes submit raise a clear EvalCoreError and earlier ratings stay intact."""
    mounts = parse_mountinfo(MOUNTINFO)
    assert mounts[2:] == [("/mnt/team share", "nfs4"), ("/mnt/win", "cifs"), ("/home/me/remote", "fuse.sshfs"), ("/mnt/c", "9p")]
    assert filesystem_type(tmp_path) not in NETWORK_FILESYSTEMS  # this machine's tmp is local

    db = tmp_path / "nfs" / "results.sqlite"
    for fs in ("nfs", "nfs4", "cifs", "smb3", "smbfs", "fuse.sshfs", "9p"):
        monkeypatch.setattr(sqlite_files, "filesystem_type", lambda _p, fs=fs: fs)
        with pytest.raises(EvalCoreError, match=f"network filesystem \\({fs}\\).*WAL") as err:
            RatingStore(f"sqlite:///{db}")
        assert err.value.path == str(db) and not db.exists()
    monkeypatch.undo()

    base = Path(tempfile.mkdtemp(prefix="ftlens-ro-"))  # a folder 'nobody' can reach (tmp_path's parents are 0700)
    try:
        os.chmod(base, 0o755)
        existing = base / "existing"
        existing.mkdir()
        RatingStore(f"sqlite:///{existing / 'results.sqlite'}").close()
        for folder in (base / "empty", existing):
            folder.mkdir(exist_ok=True)
            os.chmod(folder, 0o555)
            url = f"sqlite:///{folder / 'results.sqlite'}"
            if os.geteuid() == 0:  # root writes anywhere: open it as 'nobody' in a child
                parent, child = multiprocessing.Pipe()
                proc = multiprocessing.get_context("fork").Process(target=_open_as_nobody, args=(url, child))
                proc.start()
                kind, message, where = parent.recv()
                proc.join(30)
            else:
                try:
                    RatingStore(url).close()
                    kind, message, where = "opened", None, None
                except EvalCoreError as exc:
                    kind, message, where = "EvalCoreError", exc.message, exc.path
            assert kind == "EvalCoreError" and "read-only" in message and where == str(folder), (kind, message)
    finally:
        for folder in base.iterdir():
            os.chmod(folder, 0o755)
        shutil.rmtree(base)

    url = f"sqlite:///{tmp_path / 'full.sqlite'}"
    store = RatingStore(url)
    try:
        spec = _campaign(store, ("ann",), 40)
        acked = []
        for _ in range(3):
            nxt = store.next_item(spec.name, "ann")
            assert store.submit(spec.name, nxt.token, "ann", "left")
            acked.append(nxt.token)
        with store.engine.connect() as conn:
            pages = conn.exec_driver_sql("PRAGMA page_count").scalar()

        @event.listens_for(store.engine, "connect")
        def _small_disk(dbapi_conn, _record):  # noqa: ANN001 - a disk with no room beyond the pages in use
            dbapi_conn.execute(f"PRAGMA max_page_count = {pages}")

        store.engine.dispose()
        with pytest.raises(EvalCoreError, match="disk holding the database is full") as err:
            while (nxt := store.next_item(spec.name, "ann")) is not None:
                store.submit(spec.name, nxt.token, "ann", "right", comment="x" * 15_000)
                acked.append(nxt.token)
        assert err.value.path == str((tmp_path / "full.sqlite").resolve())
    finally:
        store.close()
    store = RatingStore(url)
    try:
        rows = store.ratings_of(spec.name)
        assert len(rows) == len(acked) >= 3 and [r["verdict"] for r in rows][:3] == ["left"] * 3
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
    finally:
        store.close()


# --- 27 --------------------------------------------------------------------------------------------


def _damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "text":
        path.write_text("item_id,rater,verdict\nx,ann,left\n" * 50)
    elif how == "zip":
        path.write_bytes(b"PK\x03\x04\x14\x00\x00\x00\x08\x00" + bytes(range(256)) * 8)
    elif how == "truncated_header":
        path.write_bytes(data[:60])
    elif how == "truncated_half":
        path.write_bytes(data[: len(data) // 2])
    elif how == "corrupted_pages":
        page = int.from_bytes(data[16:18], "big")
        path.write_bytes(data[:page] + bytes((b * 7 + 13) % 256 for b in data[page:]))


@pytest.mark.parametrize("how", ["text", "zip", "truncated_header", "truncated_half", "corrupted_pages"])
def test_case_27_corrupt_or_foreign_file_is_refused_unchanged(tmp_path, how):
    """A damaged, truncated or non-SQLite results.sqlite gives an EvalCoreError naming the file; the file's bytes
    are unchanged."""
    path = tmp_path / "results.sqlite"
    url = f"sqlite:///{path}"
    store = RatingStore(url)
    try:
        spec = _campaign(store, ("ann", "bob"), 60)
        for rater in spec.raters:
            for a in store.assignments(spec.name, rater):
                store.submit(spec.name, a.token, rater, "tie", comment="a comment " * 20)
    finally:
        store.close()
    assert not Path(f"{path}-wal").exists()  # checkpointed into the main file: it is the whole database
    _damage(path, how)
    before = _sha256(path)
    with pytest.raises(EvalCoreError) as err:
        store = RatingStore(url)
        try:  # a damage SQLite notices only on reading is reported by the read
            store.campaigns()
            for c in store.campaigns():
                store.ratings_of(c.name)
                store.assignments(c.name)
            store.read(results_store.analyses)
        finally:
            store.close()
    assert err.value.path == str(path.resolve())
    assert any(w in err.value.message for w in ("not a SQLite database", "truncated", "damaged")), err.value.message
    assert _sha256(path) == before


# --- 28 --------------------------------------------------------------------------------------------


def test_case_28_reimported_items_and_removed_raters_keep_linkage(db_url, tmp_path, monkeypatch, capsys):
    """Ratings keep the item text they were given; a campaign over re-imported items with changed text under
    the same ids gets its own snapshot, the changed ids are flagged, and nothing is re-linked; removing a
    rater keeps their ratings."""
    store = RatingStore(db_url)
    try:
        dataset = f"support-{uuid.uuid4().hex[:8]}"
        old = _campaign(store, ("ann", "bob"), 4, dataset=dataset)
        for rater in old.raters:
            for a in store.assignments(old.name, rater):
                store.submit(old.name, a.token, rater, "left")
        rated_texts = {i: (it.prompt, it.outputs) for i, it in store.items(old.name).items()}
        with pytest.raises(EvalCoreError, match="exists"):  # the same campaign cannot be re-created over new text
            store.create_campaign(old, _items(4, prompt="EDITED"))
        edited = [replace(it, prompt=f"EDITED {it.prompt}") if it.item_id in ("item-001", "item-003") else it
                  for it in _items(4)]
        new = CampaignSpec(f"{old.name}-v2", dataset, "genhash", MODELS, old.raters)
        store.create_campaign(new, edited)

        assert {i: (it.prompt, it.outputs) for i, it in store.items(old.name).items()} == rated_texts
        assert store.items(new.name)["item-001"].prompt == "EDITED prompt 1"
        assert store.text_changes(new.name) == ["item-001", "item-003"] == store.text_changes(old.name)
        assert len(store.ratings_of(old.name)) == 8 and store.ratings_of(new.name) == []  # not re-linked
        # `ratings summary` says so on stderr before its numbers.
        ws = tmp_path / "ws"
        ws.mkdir()
        (ws / "ftlens.toml").write_text("", encoding="utf-8")
        monkeypatch.setenv(ENV_DATABASE_URL, db_url)
        assert main(["ratings", "summary", "--workspace", str(ws), "--campaign", old.name, "--resamples", "20"]) == 0
        err = capsys.readouterr().err
        assert "warning: 2 items" in err and "item-001, item-003" in err
        assert all(p.done == 0 for p in store.progress(new.name))

        store.update_campaign(replace(old, raters=("ann",), overlap=1))  # bob leaves the campaign
        rows = store.ratings_of(old.name)
        assert Counter(r["rater"] for r in rows) == {"ann": 4, "bob": 4}
        assert [p.rater for p in store.progress(old.name)] == ["ann"]
        judgments, _ = judgments_and_scores(rows)
        assert len(judgments) == 8
        exported = csv.DictReader(io.StringIO(export_text(store, old.name, "csv")))
        assert Counter(r["rater"] for r in exported) == {"ann": 4, "bob": 4}
    finally:
        store.close()


# --- 29 --------------------------------------------------------------------------------------------


def _db_rows(store: RatingStore, campaign: str) -> list[tuple]:
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(ratings).where(ratings.c.campaign == campaign)).all()
    return sorted((r.item_id, r.rater, r.model_left, r.model_right, r.verdict, json.loads(r.scores), r.correction) for r in rows)


def _checksum(rows: list[tuple]) -> str:
    return hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()


def test_case_29_export_equals_db_after_concurrent_writes_and_takes_no_write_lock(db_url):
    """CSV/JSON/JSONL exports after concurrent submits match the database (count and checksum), and a rater
    can submit while an export's read transaction is open."""
    raters = ("r0", "r1", "r2", "r3")
    store = RatingStore(db_url)
    try:
        spec = _campaign(store, raters, 12, overlap=2)

        def rate(rater: str) -> None:
            s = RatingStore(db_url)
            try:
                for i, a in enumerate(s.assignments(spec.name, rater)):
                    s.submit(spec.name, a.token, rater, ("left", "right", "tie")[i % 3], {"left": {"tone": 1 + i % 5}},
                             correction=f"better answer {i}" if i % 4 == 0 else "")
            finally:
                s.close()

        threads = [threading.Thread(target=rate, args=(r,)) for r in raters]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
        db = _db_rows(store, spec.name)
        assert len(db) == _count(store, spec.name) == 24

        parsed = list(csv.DictReader(io.StringIO(export_text(store, spec.name, "csv"))))
        from_csv = sorted((r["item_id"], r["rater"], r["model_a"], r["model_b"],
                           {"model_a": "left", "model_b": "right"}.get(r["winner"], r["winner"]),
                           {k: v for k, v in (("left", json.loads(r["scores_a"])), ("right", json.loads(r["scores_b"]))) if v},
                           r["correction"]) for r in parsed)
        from_json = sorted((r["item_id"], r["rater"], r["model_a"], r["model_b"],
                            {"model_a": "left", "model_b": "right"}.get(r["winner"], r["winner"]),
                            {k: v for k, v in (("left", r["scores_a"]), ("right", r["scores_b"])) if v}, r["correction"])
                           for r in json.loads(export_text(store, spec.name, "json")))
        assert len(from_csv) == len(from_json) == len(db)
        assert _checksum(from_csv) == _checksum(from_json) == _checksum(db)
        jsonl = [json.loads(line) for line in export_text(store, spec.name, "jsonl").splitlines()]
        assert sorted(r["response"] for r in jsonl if r["source"] == "correction") == sorted(c for *_, c in db if c)

        # A rater submits while the export's read transaction is open: the export holds no write lock.
        impatient = RatingStore(db_url, busy_timeout_s=0)
        extra = RatingStore(db_url)
        late = _campaign(extra, ("late",), 1)
        token = extra.next_item(late.name, "late").token
        extra.close()
        done = []

        def rater_submits_mid_export(conn, _cursor, statement, *_args) -> None:  # noqa: ANN001
            if not done and "FROM ratings" in statement and conn.in_transaction():
                done.append(impatient.submit(late.name, token, "late", "left"))

        event.listen(store.engine, "after_cursor_execute", rater_submits_mid_export)
        try:
            exported = export_text(store, spec.name, "csv")
        finally:
            event.remove(store.engine, "after_cursor_execute", rater_submits_mid_export)
            impatient.close()
        assert done == [True] and _count(store, late.name) == 1
        assert len(list(csv.DictReader(io.StringIO(exported)))) == 24
    finally:
        store.close()


# --- 30 --------------------------------------------------------------------------------------------

TABLES = ("store_meta", "analyses", "rating_campaigns", "rating_items", "rating_assignments", "ratings", "rating_skips")


def _table_counts(path: Path) -> dict[str, int | None]:
    with sqlite3.connect(path) as conn:
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        out = {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] if t in names else None for t in TABLES}
    conn.close()
    return out


@pytest.mark.parametrize("older", ["missing_new_tables", "unversioned", "newer_version"])
def test_case_30_reopening_older_schema_keeps_every_row(tmp_path, older):
    """Opening a database of an older layout (missing tables, no schema_version) adds what is missing and keeps
    every row; a newer schema_version is refused naming the file, and the file is untouched."""
    path = tmp_path / "results.sqlite"
    url = f"sqlite:///{path}"
    store = RatingStore(url)
    try:
        spec = _campaign(store, ("ann", "bob"), 10)
        for a in store.assignments(spec.name):
            store.submit(spec.name, a.token, a.rater, "right")
        store.add_analysis("forgetting", "k1", {"p": 1}, "digest", "{}")
    finally:
        store.close()
    with sqlite3.connect(path) as conn:
        if older == "missing_new_tables":
            conn.execute("DROP TABLE analyses")
            conn.execute("DROP TABLE rating_skips")
        elif older == "unversioned":
            conn.execute("DELETE FROM store_meta WHERE key = 'schema_version'")
        else:
            conn.execute("UPDATE store_meta SET value = '99' WHERE key = 'schema_version'")
            conn.execute("DROP TABLE analyses")
    conn.close()
    before = _table_counts(path)
    digest = _sha256(path)
    if older == "newer_version":
        with pytest.raises(EvalCoreError, match="schema version 99, newer.*left unchanged") as err:
            RatingStore(url)
        assert err.value.path == str(path.resolve())
        assert _sha256(path) == digest and _table_counts(path) == before
        return
    RatingStore(url).close()
    after = _table_counts(path)
    assert after["ratings"] == before["ratings"] == 20 and after["rating_items"] == before["rating_items"] == 10
    assert all(after[t] == before[t] for t in TABLES if before[t] is not None and t != "store_meta")
    assert all(after[t] is not None for t in TABLES)  # the missing tables are back
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT value FROM store_meta WHERE key = 'schema_version'").fetchone()[0] == str(STORE_SCHEMA_VERSION)
    conn.close()
    store = RatingStore(url)
    try:
        assert len(store.ratings_of(spec.name)) == 20
        assert len(store.assignments(spec.name)) == 20
    finally:
        store.close()
