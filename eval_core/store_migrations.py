"""The schema version of the workspace's database, and the migrations that bring an older one up to date.

Every store (`ResultsStore` and its subclasses) opens its database through `upgrade`, in its first
write transaction:

1. On PostgreSQL it first takes a transaction-scoped advisory lock, so two processes opening the same
   database at once (the dashboard and a GPU evaluation job) migrate it one after the other; the
   second then finds nothing left to do. On SQLite the transaction's BEGIN IMMEDIATE does the same.
2. It reads `store_meta.schema_version` (0 where none is recorded: a new database, or one written
   before versions were) and refuses a database newer than `SCHEMA_VERSION` before changing anything.
3. It applies each pending migration in order, creates every missing table of the opening store
   (`create_all` never touches an existing table or row), records each applied migration in the
   `store_migrations` history and writes the new `schema_version`, all in that one transaction: a
   failure leaves the database as it was, and a new database reaches the latest version at once.

A migration's `apply` runs on every database older than its version: a new, empty one too, and one
without the rating tables (only a `RatingStore` creates those), so it checks what exists before
changing it. Versions (docs/results-schema.md):

1. the results tables (`ResultsStore`'s own, created by `create_all`; rating tables by a `RatingStore`);
2. team access: `team_invites` and `team_sessions` (eval_core.team_tables), in every store's database.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import sqlalchemy as sa

from eval_core.errors import EvalCoreError
from eval_core.team_tables import team_metadata
from eval_core.version import __version__

# Any constant works; every process of every Fine-Tune Lens version must use this one. Advisory locks
# are per database, so stores on other databases of the same server never wait for each other.
ADVISORY_LOCK_KEY = 0x66746C656E73  # "ftlens" in ASCII

migration_metadata = sa.MetaData()
store_meta = sa.Table("store_meta", migration_metadata, sa.Column("key", sa.String(64), primary_key=True),
                      sa.Column("value", sa.Text, nullable=False))
migration_history = sa.Table(
    "store_migrations", migration_metadata,
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),  # the key: each version once
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("applied_at", sa.Float, nullable=False),  # Unix seconds, as every created_at in the store
    sa.Column("app_version", sa.String(64), nullable=False),  # the Fine-Tune Lens that applied it
)


@dataclass(frozen=True)
class Migration:
    """One step of the store's schema: `apply` brings a database at `version - 1` to `version`.

    `apply` runs inside the store's write transaction (after the advisory lock on PostgreSQL); it must
    not commit, and must work on a database lacking tables that a store subclass creates.
    """

    version: int
    description: str
    apply: Callable[[sa.Connection], None]


def _results_tables(conn: sa.Connection) -> None:
    """Version 1 is the layout the first stores created; `create_all` of the opening store makes it."""


def _team_tables(conn: sa.Connection) -> None:
    team_metadata.create_all(conn)  # adds only the missing tables


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "results tables: checkpoints, datasets, protocols, nll_scores, generations, text_scores, "
                 "analyses (rating tables with the first RatingStore)", _results_tables),
    Migration(2, "team access: team_invites and team_sessions", _team_tables),
)
SCHEMA_VERSION = MIGRATIONS[-1].version


def recorded_version(conn: sa.Connection, *, where: Mapping[str, object] | None = None) -> int:
    """The database's `store_meta.schema_version`, or 0 where none is recorded.

    Raises:
        EvalCoreError: the recorded value is not a whole number (naming `where`: the file or field).
    """
    if not sa.inspect(conn).has_table(store_meta.name):
        return 0
    row = conn.execute(sa.select(store_meta.c.value).where(store_meta.c.key == "schema_version")).first()
    if row is None:
        return 0
    try:
        return int(row[0])
    except ValueError:
        raise EvalCoreError(
            f"the results database's store_meta.schema_version is {row[0]!r}, not a whole number; it was left "
            "unchanged. Restore the database from a backup", **(where or {})) from None


def upgrade(conn: sa.Connection, metadatas: Sequence[sa.MetaData], *,
            where: Mapping[str, object] | None = None) -> list[Migration]:
    """Bring the database on `conn` to `SCHEMA_VERSION` and create the missing tables of `metadatas`.

    Call it inside a write transaction (BEGIN IMMEDIATE on SQLite): everything it does commits or
    rolls back with that transaction. Returns the migrations it applied, oldest first (none when the
    database was already up to date).

    Raises:
        EvalCoreError: the database is newer than this code (nothing was changed), or its recorded
            version is unreadable. `where` (`path=` or `field=`) says which database.

    Example:
        >>> engine = sa.create_engine("sqlite://")
        >>> with engine.begin() as conn:
        ...     [m.version for m in upgrade(conn, [])]
        [1, 2]
        >>> with engine.begin() as conn:
        ...     upgrade(conn, []), recorded_version(conn)
        ([], 2)
    """
    if conn.dialect.name == "postgresql":
        # Held until this transaction ends; a second process opening the store waits here, then reads
        # the version the first one committed (READ COMMITTED: each statement sees the latest commits).
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(ADVISORY_LOCK_KEY)))
    version = recorded_version(conn, where=where)
    # Checked before creating anything: a newer database is left exactly as it is.
    if version > SCHEMA_VERSION:
        raise EvalCoreError(
            f"the results database has schema version {version}, newer than this Fine-Tune Lens reads "
            f"({SCHEMA_VERSION}); it was left unchanged. Upgrade Fine-Tune Lens", **(where or {}))
    pending = [m for m in MIGRATIONS if m.version > version]
    for migration in pending:
        migration.apply(conn)
    for meta in (migration_metadata, *metadatas):
        meta.create_all(conn)  # adds only missing tables: existing rows are never touched
    if pending:
        now = time.time()
        # A version already in the history (its schema_version row was lost) keeps its first record.
        known = set(conn.execute(sa.select(migration_history.c.version)).scalars())
        rows = [{"version": m.version, "description": m.description, "applied_at": now, "app_version": __version__}
                for m in pending if m.version not in known]
        if rows:
            conn.execute(migration_history.insert(), rows)
        updated = conn.execute(store_meta.update().where(store_meta.c.key == "schema_version")
                               .values(value=str(SCHEMA_VERSION)))
        if updated.rowcount == 0:
            conn.execute(store_meta.insert().values(key="schema_version", value=str(SCHEMA_VERSION)))
    return pending


def history(conn: sa.Connection) -> list[dict]:
    """The applied migrations recorded in the database, oldest first (empty before version 2).

    A database upgraded from version 1 lists only the versions applied since: version 1 was written
    before the history existed.
    """
    if not sa.inspect(conn).has_table(migration_history.name):
        return []
    rows = conn.execute(sa.select(migration_history).order_by(migration_history.c.version))
    return [dict(r._mapping) for r in rows]
