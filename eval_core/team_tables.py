"""The team-access tables of the workspace's database (schema version 2; see eval_core.store_migrations).

- `team_invites`: one row per invite link. Only the sha256 of its secret token is stored, so a copy
  of the database gives no working link. An invite is redeemed once, before it expires, unless revoked.
- `team_sessions`: the sign-in a redeemed invite gives (the secret kept in the rater's bookmarked
  link), again stored only as a sha256, with its expiry and whether an admin revoked it.
"""

from __future__ import annotations

import sqlalchemy as sa

team_metadata = sa.MetaData()
team_invites = sa.Table(
    "team_invites", team_metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True),  # sha256 hex of the secret token
    sa.Column("member", sa.String(64), nullable=False),  # the rater name (or admin's name) it signs in as
    sa.Column("role", sa.String(16), nullable=False),  # admin / rater
    sa.Column("created_by", sa.String(255), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False),
    sa.Column("redeemed_at", sa.Float),  # set once, in the transaction that creates the session
    sa.Column("revoked_at", sa.Float),  # an admin revoked it before it was used
)
team_sessions = sa.Table(
    "team_sessions", team_metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True),
    sa.Column("member", sa.String(64), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("invite_hash", sa.String(64), nullable=False, unique=True),  # one session per invite
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False),
    sa.Column("revoked_at", sa.Float),
)
