"""The results store: every computed number and generation, keyed so nothing is computed twice.

One database per workspace: SQLite at `<workspace>/.ftlens/results.sqlite` by default, or any
SQLAlchemy URL (PostgreSQL for a team) from `ftlens.toml` `[database] url`, overridden by the
environment variable `FTLENS_DATABASE_URL`.

Keys: (checkpoint fingerprint, dataset name, example id, example hash, metric, config hash). The
example hash covers the example's own text, so adding examples to a dataset computes only the new
ones, and an edited example is computed again. A row is written once (inserts ignore an existing
key), and each batch of results is one transaction, so a killed run leaves only whole batches behind
and the next run computes just what is missing.
SQLite runs in WAL mode with a busy timeout, and write transactions start with BEGIN IMMEDIATE so a
read-then-write cannot lose an update to a concurrent writer.

Schema version 1 (docs/results-schema.md).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import event

from eval_core.errors import EvalCoreError

STORE_SCHEMA_VERSION = 1
ENV_DATABASE_URL = "FTLENS_DATABASE_URL"

metadata = sa.MetaData()
store_meta = sa.Table("store_meta", metadata, sa.Column("key", sa.String(64), primary_key=True),
                      sa.Column("value", sa.Text, nullable=False))
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
    """The store's URL: FTLENS_DATABASE_URL, else the workspace config, else SQLite in .ftlens/."""
    url = os.environ.get(ENV_DATABASE_URL) or configured
    if url:
        return url
    return f"sqlite:///{(Path(root) / '.ftlens' / 'results.sqlite').resolve()}"


def redact(url: str) -> str:
    """The URL without its password, for display and logs."""
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return "<unparseable database URL>"


def _sqlite_setup(engine: sa.Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):  # noqa: ANN001
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA busy_timeout = 30000")
        cur.execute("PRAGMA journal_mode = WAL")
        cur.execute("PRAGMA synchronous = NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):  # noqa: ANN001
        conn.exec_driver_sql("BEGIN IMMEDIATE")


class ResultsStore:
    """A handle on the results database.

    Example:
        >>> store = ResultsStore("sqlite:////tmp/ws/.ftlens/results.sqlite")  # doctest: +SKIP
        >>> store.existing_keys("nll_scores", ckpt_fp, "support_test", "perplexity", cfg_hash)
        set()
    """

    def __init__(self, url: str) -> None:
        self.url = url
        try:
            if url.startswith("sqlite:///"):
                Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
            self.engine = sa.create_engine(url, future=True)
        except (sa.exc.ArgumentError, ImportError, OSError) as exc:
            raise EvalCoreError(f"cannot open the results database {redact(url)}: {exc}", field="database.url") from exc
        if self.engine.dialect.name == "sqlite":
            _sqlite_setup(self.engine)
        self._migrate()

    def _migrate(self) -> None:
        try:
            with self.engine.begin() as conn:
                metadata.create_all(conn)
                row = conn.execute(sa.select(store_meta.c.value).where(store_meta.c.key == "schema_version")).first()
                if row is None:
                    conn.execute(store_meta.insert().values(key="schema_version", value=str(STORE_SCHEMA_VERSION)))
                elif int(row[0]) > STORE_SCHEMA_VERSION:
                    raise EvalCoreError(
                        f"the results database {redact(self.url)} has schema version {row[0]}, newer than "
                        f"this Fine-Tune Lens reads ({STORE_SCHEMA_VERSION}); upgrade Fine-Tune Lens"
                    )
        except sa.exc.DatabaseError as exc:
            raise EvalCoreError(
                f"the results database {redact(self.url)} cannot be used: {exc.orig}. If it is not a "
                "database (or is corrupt), move it away and evaluate again.",
                field="database.url",
            ) from exc

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
            with self.engine.begin() as conn:
                conn.execute(self._insert_ignore(table), rows)

    def existing_keys(self, table_name: str, checkpoint_fp: str, dataset: str, metric: str, config_hash: str) -> set[tuple[str, str]]:
        """(example id, example hash) pairs already stored for one cell."""
        table = {"nll_scores": nll_scores, "generations": generations, "text_scores": text_scores}[table_name]
        cond = [table.c.checkpoint_fp == checkpoint_fp, table.c.dataset == dataset, table.c.config_hash == config_hash]
        if table is not generations:
            cond.append(table.c.metric == metric)
        with self.engine.connect() as conn:
            return {(r[0], r[1]) for r in conn.execute(sa.select(table.c.example_id, table.c.example_hash).where(*cond))}

    def set_dataset(self, row: dict) -> None:
        """Record a dataset as evaluated now (replacing its previous description)."""
        with self.engine.begin() as conn:
            conn.execute(datasets.delete().where(datasets.c.name == row["name"]))
            conn.execute(datasets.insert().values(**row))

    def add_nll(self, rows: Sequence[dict]) -> None:
        """Write one batch of per-example NLL statistics atomically."""
        now = time.time()
        if rows:
            with self.engine.begin() as conn:
                conn.execute(self._insert_ignore(nll_scores), [{**r, "created_at": now} for r in rows])

    def add_generations(self, rows: Sequence[dict]) -> None:
        """Write one batch of generations atomically."""
        now = time.time()
        if rows:
            with self.engine.begin() as conn:
                conn.execute(self._insert_ignore(generations), [{**r, "created_at": now} for r in rows])

    def add_text_scores(self, rows: Sequence[dict]) -> None:
        """Write one batch of per-example text-metric values and statistics atomically."""
        now = time.time()
        if rows:
            with self.engine.begin() as conn:
                conn.execute(self._insert_ignore(text_scores), [{**r, "created_at": now} for r in rows])

    def add_analysis(self, analysis: str, key_hash: str, params: dict, inputs_digest: str, record: str) -> None:
        """Store one derived record (first write wins: the same key always holds the same record)."""
        row = {"analysis": analysis, "key_hash": key_hash, "params": json.dumps(params, sort_keys=True),
               "inputs_digest": inputs_digest, "record": record, "created_at": time.time()}
        with self.engine.begin() as conn:
            conn.execute(self._insert_ignore(analyses), [row])

    def analysis(self, analysis: str, key_hash: str) -> str | None:
        """The stored record of this analysis and key, or None."""
        t = analyses
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(t.c.record).where(t.c.analysis == analysis, t.c.key_hash == key_hash)).first()
        return None if row is None else row[0]

    def generations_of(self, checkpoint_fp: str, dataset: str, config_hash: str) -> dict[tuple[str, str], str]:
        """{(example id, example hash): output text} of one generation cell."""
        t = generations
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(t.c.example_id, t.c.example_hash, t.c.text).where(
                t.c.checkpoint_fp == checkpoint_fp, t.c.dataset == dataset, t.c.config_hash == config_hash))
            return {(r[0], r[1]): r[2] for r in rows}

    def read(self, table: sa.Table) -> list[dict]:
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(sa.select(table))]

    def protocols(self) -> dict[str, dict]:
        return {r["config_hash"]: {"metric": r["metric"], **json.loads(r["protocol"])} for r in self.read(protocols)}

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self):  # noqa: ANN204 - the store itself (a subclass's type)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
