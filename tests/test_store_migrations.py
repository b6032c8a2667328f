"""Versioned migrations of the workspace's database (eval_core.store_migrations), on SQLite and on a
real PostgreSQL server: a version-1 database (written here as the version-1 code wrote it) is
upgraded in place with every row kept, whichever store opens it; a new one starts at the latest
version; a newer one is refused and left unchanged; processes opening it at once migrate it once.
"""

from __future__ import annotations

import doctest
import hashlib
import multiprocessing
from pathlib import Path

import pytest
import sqlalchemy as sa

from eval_core import store_migrations
from eval_core.errors import EvalCoreError
from eval_core.rating_store import RatingStore, rating_metadata, ratings
from eval_core.results_store import STORE_SCHEMA_VERSION, ResultsStore, checkpoints, metadata
from eval_core.store_migrations import MIGRATIONS, SCHEMA_VERSION, history, store_meta
from eval_core.version import __version__

V1_CHECKPOINTS = [
    {"fingerprint": f"fp{i}", "run": "run-a", "name": f"checkpoint-{i}", "step": i, "path": f"/ws/run-a/checkpoint-{i}",
     "kind": "full"} for i in range(3)
]
V1_RATINGS = [
    {"campaign": "c1", "item_id": f"item-{i}", "rater": rater, "model_left": "a", "model_right": "b", "verdict": "left",
     "scores": "{}", "comment": "Grüße, ok", "correction": "", "category": None, "source": "app", "created_at": 1.5 + i}
    for i in range(4) for rater in ("ann", "bob")
]
TEAM_TABLES = {"team_invites", "team_sessions"}


def _write_old_database(url: str, version: int = 1) -> None:
    """A database as the version-1 code left it: WAL on SQLite, the results and rating tables,
    `store_meta.schema_version`, no migration history, no team tables, and some rows."""
    engine = sa.create_engine(url)
    try:
        if engine.dialect.name == "sqlite":
            with engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA journal_mode = WAL")
        with engine.begin() as conn:
            # Version 2 only added tables, so today's definitions of these are version 1's.
            metadata.create_all(conn)
            rating_metadata.create_all(conn)
            store_meta.create(conn)
            conn.execute(store_meta.insert().values(key="schema_version", value=str(version)))
            conn.execute(checkpoints.insert(), V1_CHECKPOINTS)
            conn.execute(ratings.insert(), V1_RATINGS)
    finally:
        engine.dispose()


def _snapshot(url: str) -> dict[str, list[tuple]]:
    """{table: its rows, sorted}, of every table in the database."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            meta = sa.MetaData()
            meta.reflect(conn)
            return {name: sorted(tuple(r) for r in conn.execute(sa.select(t))) for name, t in meta.tables.items()}
    finally:
        engine.dispose()


def _sha256(url: str) -> str | None:
    """The SQLite file's digest (None on PostgreSQL)."""
    if not url.startswith("sqlite"):
        return None
    return hashlib.sha256(Path(url.removeprefix("sqlite:///")).read_bytes()).hexdigest()


def _history(url: str) -> list[dict]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return history(conn)
    finally:
        engine.dispose()


def test_the_schema_version_is_the_last_migration_and_versions_count_up_from_one():
    assert [m.version for m in MIGRATIONS] == list(range(1, len(MIGRATIONS) + 1))
    assert STORE_SCHEMA_VERSION == SCHEMA_VERSION == MIGRATIONS[-1].version == 2
    assert MIGRATIONS[-1].description == "team access: team_invites and team_sessions"


def test_docstring_examples_run():
    assert doctest.testmod(store_migrations).failed == 0


@pytest.mark.parametrize("opener", [ResultsStore, RatingStore], ids=["results-store", "rating-store"])
def test_a_version_1_database_is_upgraded_with_every_row_intact(store_url, opener):
    _write_old_database(store_url)
    before = _snapshot(store_url)
    assert not TEAM_TABLES & set(before) and "store_migrations" not in before
    opener(store_url).close()
    after = _snapshot(store_url)
    assert all(after[t] == rows for t, rows in before.items() if t != "store_meta")  # every old row, unchanged
    assert after["checkpoints"] == sorted(tuple(r.values()) for r in V1_CHECKPOINTS) and len(after["ratings"]) == 8
    assert after["store_meta"] == [("schema_version", "2")]
    assert TEAM_TABLES <= set(after) and after["team_invites"] == after["team_sessions"] == []
    (v2,) = _history(store_url)  # version 1 was written before the history existed
    assert (v2["version"], v2["description"], v2["app_version"]) == (2, MIGRATIONS[1].description, __version__)
    assert v2["applied_at"] > 0

    # Reopening (by either store) applies nothing and changes nothing.
    RatingStore(store_url).close()
    ResultsStore(store_url).close()
    assert _snapshot(store_url) == after
    store = RatingStore(store_url)
    try:
        assert len(store.ratings_of("c1")) == 8 and {r["comment"] for r in store.ratings_of("c1")} == {"Grüße, ok"}
    finally:
        store.close()


def test_a_new_database_starts_at_the_latest_version_in_one_step(store_url):
    ResultsStore(store_url).close()
    tables = _snapshot(store_url)
    assert tables["store_meta"] == [("schema_version", str(SCHEMA_VERSION))]
    assert TEAM_TABLES <= set(tables) and "checkpoints" in tables and "ratings" not in tables
    assert [(h["version"], h["description"]) for h in _history(store_url)] == [(m.version, m.description) for m in MIGRATIONS]
    # A RatingStore opening it later adds its own tables and no migration.
    RatingStore(store_url).close()
    assert "ratings" in _snapshot(store_url) and len(_history(store_url)) == len(MIGRATIONS)


def test_a_database_without_a_recorded_version_is_brought_to_the_latest(store_url):
    _write_old_database(store_url)
    engine = sa.create_engine(store_url)
    with engine.begin() as conn:
        conn.execute(store_meta.delete())
    engine.dispose()
    RatingStore(store_url).close()
    after = _snapshot(store_url)
    assert after["store_meta"] == [("schema_version", "2")] and len(after["ratings"]) == 8
    assert [h["version"] for h in _history(store_url)] == [1, 2]


@pytest.mark.parametrize("value", ["99", "two"])
def test_a_newer_or_unreadable_database_is_refused_and_left_unchanged(store_url, value):
    _write_old_database(store_url)
    engine = sa.create_engine(store_url)
    with engine.begin() as conn:
        conn.execute(store_meta.update().values(value=value))
    engine.dispose()
    before, digest = _snapshot(store_url), _sha256(store_url)
    message = "schema version 99, newer than this Fine-Tune Lens reads \\(2\\); it was left unchanged. Upgrade" \
        if value == "99" else "schema_version is 'two', not a whole number; it was left unchanged"
    for opener in (ResultsStore, RatingStore):
        with pytest.raises(EvalCoreError, match=message) as err:
            opener(store_url)
        if store_url.startswith("sqlite"):
            assert err.value.path == str(Path(store_url.removeprefix("sqlite:///")).resolve())
        else:
            assert err.value.field == "database.url"
    assert _sha256(store_url) == digest  # byte-identical on SQLite
    assert _snapshot(store_url) == before  # no table or row added, changed or removed
    assert not TEAM_TABLES & set(before) and "store_migrations" not in before


def _open_at_once(url: str, opener: str, barrier) -> None:  # noqa: ANN001 - a multiprocessing barrier
    store_class = {"results": ResultsStore, "rating": RatingStore}[opener]
    barrier.wait(timeout=120)
    store_class(url).close()


def test_processes_opening_a_version_1_database_at_once_migrate_it_once(store_url):
    _write_old_database(store_url)
    ctx = multiprocessing.get_context("spawn")
    openers = ["results", "rating", "results", "rating"]  # the dashboard and evaluation jobs, say
    barrier = ctx.Barrier(len(openers))
    procs = [ctx.Process(target=_open_at_once, args=(store_url, o, barrier)) for o in openers]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
    assert [p.exitcode for p in procs] == [0] * len(procs)
    assert [h["version"] for h in _history(store_url)] == [2]
    after = _snapshot(store_url)
    assert after["store_meta"] == [("schema_version", "2")] and len(after["ratings"]) == 8
    assert after["checkpoints"] == sorted(tuple(r.values()) for r in V1_CHECKPOINTS)
