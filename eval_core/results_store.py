"""The results store: every computed number and generation, keyed so nothing is computed twice.

One database per workspace: SQLite at `<workspace>/.ftlens/results.sqlite` by default, or any
SQLAlchemy URL (PostgreSQL for a team) from `ftlens.toml` `[database] url`, overridden by the
environment variable `FTLENS_DATABASE_URL`.

Keys: (checkpoint fingerprint, dataset name, example id, example hash, metric, config hash). The
example hash covers the example's own text, so adding examples to a dataset computes only the new
ones, and an edited example is computed again. A row is written once (inserts ignore an existing
key), and each batch of results is one transaction, so a killed run leaves only whole batches behind
and the next run computes just what is missing.
SQLite runs in WAL mode with a busy timeout and `synchronous=FULL` (an acknowledged rating survives a
power loss, not only an application crash). Write transactions start with BEGIN IMMEDIATE so a
read-then-write cannot lose an update to a concurrent writer; reads start a deferred transaction, so
a long read (an export) never blocks a rater's write. The store refuses a SQLite file on a network
filesystem (WAL needs shared memory that NFS/SMB cannot give), a file that is not SQLite, and a
read-only folder, each with a message naming the file; database failures later (busy, disk full,
damaged file) are `EvalCoreError`s too, and never change the file.

The schema version and the migrations that bring an older database up to date are in
eval_core.store_migrations (docs/results-schema.md).
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import event

from eval_core.errors import EvalCoreError, WorkspaceError
from eval_core.sqlite_files import check_sqlite_file
from eval_core.store_migrations import SCHEMA_VERSION, upgrade

STORE_SCHEMA_VERSION = SCHEMA_VERSION  # the store's schema version: that of its last migration
ENV_DATABASE_URL = "FTLENS_DATABASE_URL"
DEFAULT_BUSY_TIMEOUT_S = 30.0  # a writer waits this long for another's write lock before telling the user to retry
READ_ONLY = "ftlens_read_only"  # execution option: this connection only reads (deferred BEGIN, no write lock)

metadata = sa.MetaData()  # the results tables (version 1); store_meta and the migration history: store_migrations
checkpoints = sa.Table(
    "checkpoints", metadata,
    sa.Column("fingerprint", sa.String(80), primary_key=True),
    sa.Column("run", sa.String(255)), sa.Column("name", sa.String(255), nullable=False),
    sa.Column("step", sa.Integer), sa.Column("path", sa.Text, nullable=False), sa.Column("kind", sa.String(16)),
)
datasets = sa.Table(
    "datasets", metadata,
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("fingerprint", sa.String(80), nullable=False), sa.Column("path", sa.Text, nullable=False),
    sa.Column("kind", sa.String(16)), sa.Column("rows", sa.Integer),
    # The ids of the dataset as last evaluated: results of removed examples are not reported.
    sa.Column("example_ids", sa.Text, nullable=False),
)
protocols = sa.Table(
    "protocols", metadata,
    sa.Column("config_hash", sa.String(64), primary_key=True),
    sa.Column("metric", sa.String(64), nullable=False), sa.Column("protocol", sa.Text, nullable=False),
)
nll_scores = sa.Table(
    "nll_scores", metadata,
    sa.Column("checkpoint_fp", sa.String(80), primary_key=True),
    sa.Column("dataset", sa.String(255), primary_key=True),
    sa.Column("example_id", sa.String(255), primary_key=True),
    sa.Column("example_hash", sa.String(64), primary_key=True),
    sa.Column("metric", sa.String(64), primary_key=True),
    sa.Column("config_hash", sa.String(64), primary_key=True),
    sa.Column("nll_sum", sa.Float(precision=53), nullable=False),
    sa.Column("token_count", sa.Integer, nullable=False),
    sa.Column("byte_count", sa.Integer, nullable=False),
    sa.Column("word_count", sa.Integer, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)
generations = sa.Table(
    "generations", metadata,
    sa.Column("checkpoint_fp", sa.String(80), primary_key=True),
    sa.Column("dataset", sa.String(255), primary_key=True),
    sa.Column("example_id", sa.String(255), primary_key=True),
    sa.Column("example_hash", sa.String(64), primary_key=True),
    sa.Column("config_hash", sa.String(64), primary_key=True),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("new_tokens", sa.Integer, nullable=False),
    sa.Column("finish_reason", sa.String(16), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)
text_scores = sa.Table(
    "text_scores", metadata,
    sa.Column("checkpoint_fp", sa.String(80), primary_key=True),
    sa.Column("dataset", sa.String(255), primary_key=True),
    sa.Column("example_id", sa.String(255), primary_key=True),
    sa.Column("example_hash", sa.String(64), primary_key=True),
    sa.Column("metric", sa.String(64), primary_key=True),
    # Covers the generation settings that produced the output and the metric's own options.
    sa.Column("config_hash", sa.String(64), primary_key=True),
    sa.Column("value", sa.Float(precision=53), nullable=False),
    sa.Column("stats", sa.Text, nullable=False),  # JSON list: the metric's sufficient statistics
    sa.Column("created_at", sa.Float, nullable=False),
)
analyses = sa.Table(
    "analyses", metadata,
    # A derived record (e.g. the forgetting analysis) computed from stored rows, keyed by what it
    # read: `key_hash` covers the analysis, its parameters, its code version and an `inputs_digest`
    # of the rows it used, so a changed row or parameter is a new key and a cached record is never stale.
    sa.Column("analysis", sa.String(64), primary_key=True),
    sa.Column("key_hash", sa.String(64), primary_key=True),
    sa.Column("params", sa.Text, nullable=False),  # JSON
    sa.Column("inputs_digest", sa.String(64), nullable=False),
    sa.Column("record", sa.Text, nullable=False),  # JSON: the analysis's versioned record
    sa.Column("created_at", sa.Float, nullable=False),
)


def newest_per_example(rows: Iterable[dict], *, by_config: bool = True) -> list[dict]:
    """One row per (checkpoint, dataset, example id, metric[, config hash]): the newest.

    An edited example keeps its id but gets a new example hash, so its older rows stay in the store;
    every reader reports the newest one. `by_config=False` also lets a newer configuration's row
    replace an older configuration's.
    """
    best: dict[tuple, dict] = {}
    for r in rows:
        key = (r["checkpoint_fp"], r["dataset"], r["example_id"], r.get("metric"), r["config_hash"] if by_config else None)
        if key not in best or r["created_at"] >= best[key]["created_at"]:
            best[key] = r
    return list(best.values())


def database_url(root: Path, configured: str | None = None) -> str:
    """The store's URL: FTLENS_DATABASE_URL, else the workspace config, else SQLite in .ftlens/.

    Raises WorkspaceError for the SQLite default when `root` has no ftlens.toml and no `.ftlens/`
    (discovery makes one where it finds runs or a base model): a wrong folder gets no database.
    """
    url = os.environ.get(ENV_DATABASE_URL) or configured
    if url:
        return url
    root = Path(root)
    path = (root / ".ftlens" / "results.sqlite").resolve()
    if not (path.is_file() or (root / ".ftlens").is_dir() or (root / "ftlens.toml").is_file()):
        raise WorkspaceError(
            "not a Fine-Tune Lens workspace (no ftlens.toml, no .ftlens/ folder, no runs found), so no "
            "results database is made here; check the folder, or open it once with `python -m eval_core "
            "workspace --workspace DIR` if it holds runs",
            path=root,
            field="workspace",
        )
    return f"sqlite:///{path}"


# Query keys whose values are secrets (libpq takes `?password=`, `?sslpassword=`, tokens, keys).
_SECRET_KEY = re.compile(r"pass|pwd|secret|token|key", re.IGNORECASE)


def redact(url: str) -> str:
    """The URL without its password or secret query values, for display and logs.

    Not SQLAlchemy's parser: it ends a password at its first '@' (`u:p@ss@host` showed `ss`).

    Example:
        >>> redact("postgresql+psycopg://ann:s3cret@db:5432/ftlens?sslpassword=x")
        'postgresql+psycopg://ann:***@db:5432/ftlens?sslpassword=***'
    """
    scheme, sep, rest = url.strip().partition("://")
    if not sep or not scheme or "@" in scheme or ":" in scheme:
        return "<unparseable database URL>"
    main, q, query = rest.partition("?")
    if "@" in main:
        userinfo, _, host = main.rpartition("@")
        user, colon, _ = userinfo.partition(":")
        main = f"{user}{':***' if colon else ''}@{host}"
    if q:
        pairs = [p.partition("=") for p in query.split("&")]
        query = "&".join(k + eq + ("***" if eq and _SECRET_KEY.search(k) else v) for k, eq, v in pairs)
    return f"{scheme}://{main}{q}{query}"


def _sqlite_setup(engine: sa.Engine, busy_timeout_s: float) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):  # noqa: ANN001
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
        cur.execute("PRAGMA journal_mode = WAL")
        # FULL: a commit is on disk before the rating is acknowledged, even across an OS crash or power loss
        # (NORMAL in WAL mode may roll back the last commits then).
        cur.execute("PRAGMA synchronous = FULL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):  # noqa: ANN001
        # IMMEDIATE takes the write lock up front (waiting up to busy_timeout): a deferred transaction that
        # reads and then writes can fail with SQLITE_BUSY at once, whatever the timeout.
        conn.exec_driver_sql("BEGIN" if conn.get_execution_options().get(READ_ONLY) else "BEGIN IMMEDIATE")


class ResultsStore:
    """A handle on the results database.

    Example:
        >>> store = ResultsStore("sqlite:////tmp/ws/.ftlens/results.sqlite")  # doctest: +SKIP
        >>> store.existing_keys("nll_scores", ckpt_fp, "support_test", "perplexity", cfg_hash)
        set()
    """

    metadatas: tuple[sa.MetaData, ...] = (metadata,)  # the tables this store creates (subclasses add theirs)

    def __init__(self, url: str, *, busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S) -> None:
        self.url = url
        self.path: Path | None = None  # the SQLite file, named in every error about it
        try:
            parsed = sa.engine.make_url(url)
            if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
                self.path = Path(parsed.database).resolve()
                self.path.parent.mkdir(parents=True, exist_ok=True)
                check_sqlite_file(self.path)
            self.engine = sa.create_engine(url, future=True)
        except (sa.exc.ArgumentError, ImportError, OSError, ValueError) as exc:
            # SQLAlchemy quotes the whole URL when it cannot parse it: never echo its password.
            detail = str(exc).replace(url, redact(url))
            raise EvalCoreError(f"cannot open the results database {redact(url)}: {detail}", field="database.url") from None
        if self.engine.dialect.name == "sqlite":
            _sqlite_setup(self.engine, busy_timeout_s)
        try:
            self._migrate()
        except BaseException:
            self.engine.dispose()
            raise

    def _db_error(self, exc: sa.exc.DBAPIError) -> EvalCoreError:
        """An `EvalCoreError` saying what a database failure means for the user and what to do."""
        text = str(exc.orig).strip()
        low = text.lower()
        where = {"path": self.path} if self.path else {"field": "database.url"}
        if "locked" in low or "busy" in low:
            msg = f"the database is busy: another process holds its write lock ({text}). Nothing was saved; try again"
        elif "full" in low:
            msg = (f"the disk holding the database is full ({text}). Nothing was saved and earlier data is intact; "
                   "free some space, then try again")
        elif "readonly" in low or "read-only" in low or "unable to open" in low:
            msg = f"cannot write the database ({text}); make its folder writable or set [database] url elsewhere"
        elif "malformed" in low or "not a database" in low or "corrupt" in low:
            msg = (f"the database file is damaged ({text}); it was left as it is. Move it away (keep a copy: "
                   "`sqlite3 FILE .recover` may rescue its rows) or restore a backup, then evaluate again")
        else:
            msg = f"the results database {redact(self.url)} failed: {text}"
        return EvalCoreError(msg, **where)

    @contextmanager
    def _writing(self) -> Iterator[sa.Connection]:
        """A write transaction (BEGIN IMMEDIATE on SQLite); database failures become `EvalCoreError`s."""
        try:
            with self.engine.begin() as conn:
                yield conn
        except sa.exc.DBAPIError as exc:
            raise self._db_error(exc) from exc

    @contextmanager
    def _reading(self) -> Iterator[sa.Connection]:
        """A read-only connection: its deferred transaction takes no write lock, so writers go on."""
        try:
            with self.engine.connect() as conn:
                yield conn.execution_options(**{READ_ONLY: True})
        except sa.exc.DBAPIError as exc:
            raise self._db_error(exc) from exc

    def _migrate(self) -> None:
        """Apply pending migrations and create this store's missing tables, in one write transaction."""
        with self._writing() as conn:
            upgrade(conn, self.metadatas, where={"path": self.path} if self.path else {"field": "database.url"})

    def _insert_ignore(self, table: sa.Table):
        if self.engine.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        return insert(table).on_conflict_do_nothing()

    def upsert_reference(self, table: sa.Table, rows: Iterable[dict]) -> None:
        """Register checkpoints / datasets / protocols (first write wins; they are content-keyed)."""
        rows = list(rows)
        if rows:
            with self._writing() as conn:
                conn.execute(self._insert_ignore(table), rows)

    def existing_keys(self, table_name: str, checkpoint_fp: str, dataset: str, metric: str, config_hash: str) -> set[tuple[str, str]]:
        """(example id, example hash) pairs already stored for one cell."""
        table = {"nll_scores": nll_scores, "generations": generations, "text_scores": text_scores}[table_name]
        cond = [table.c.checkpoint_fp == checkpoint_fp, table.c.dataset == dataset, table.c.config_hash == config_hash]
        if table is not generations:
            cond.append(table.c.metric == metric)
        with self._reading() as conn:
            return {(r[0], r[1]) for r in conn.execute(sa.select(table.c.example_id, table.c.example_hash).where(*cond))}

    def set_dataset(self, row: dict) -> None:
        """Record a dataset as evaluated now (replacing its previous description)."""
        with self._writing() as conn:
            conn.execute(datasets.delete().where(datasets.c.name == row["name"]))
            conn.execute(datasets.insert().values(**row))

    def add_nll(self, rows: Sequence[dict]) -> None:
        """Write one batch of per-example NLL statistics atomically."""
        now = time.time()
        if rows:
            with self._writing() as conn:
                conn.execute(self._insert_ignore(nll_scores), [{**r, "created_at": now} for r in rows])

    def add_generations(self, rows: Sequence[dict]) -> None:
        """Write one batch of generations atomically."""
        now = time.time()
        if rows:
            with self._writing() as conn:
                conn.execute(self._insert_ignore(generations), [{**r, "created_at": now} for r in rows])

    def add_text_scores(self, rows: Sequence[dict]) -> None:
        """Write one batch of per-example text-metric values and statistics atomically."""
        now = time.time()
        if rows:
            with self._writing() as conn:
                conn.execute(self._insert_ignore(text_scores), [{**r, "created_at": now} for r in rows])

    def add_analysis(self, analysis: str, key_hash: str, params: dict, inputs_digest: str, record: str) -> None:
        """Store one derived record (first write wins: the same key always holds the same record)."""
        row = {"analysis": analysis, "key_hash": key_hash, "params": json.dumps(params, sort_keys=True),
               "inputs_digest": inputs_digest, "record": record, "created_at": time.time()}
        with self._writing() as conn:
            conn.execute(self._insert_ignore(analyses), [row])

    def analysis(self, analysis: str, key_hash: str) -> str | None:
        """The stored record of this analysis and key, or None."""
        t = analyses
        with self._reading() as conn:
            row = conn.execute(sa.select(t.c.record).where(t.c.analysis == analysis, t.c.key_hash == key_hash)).first()
        return None if row is None else row[0]

    def generations_of(self, checkpoint_fp: str, dataset: str, config_hash: str) -> dict[tuple[str, str], str]:
        """{(example id, example hash): output text} of one generation cell."""
        t = generations
        with self._reading() as conn:
            rows = conn.execute(sa.select(t.c.example_id, t.c.example_hash, t.c.text).where(
                t.c.checkpoint_fp == checkpoint_fp, t.c.dataset == dataset, t.c.config_hash == config_hash))
            return {(r[0], r[1]): r[2] for r in rows}

    def read(self, table: sa.Table) -> list[dict]:
        """Every row of `table`, as dicts."""
        with self._reading() as conn:
            return [dict(r._mapping) for r in conn.execute(sa.select(table))]

    def protocols(self) -> dict[str, dict]:
        """{config hash: the protocol's metric and settings}."""
        return {r["config_hash"]: {"metric": r["metric"], **json.loads(r["protocol"])} for r in self.read(protocols)}

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self):  # noqa: ANN204 - the store itself (a subclass's type)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
