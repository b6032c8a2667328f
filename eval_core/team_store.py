"""Invite links and the sign-ins they give, in the workspace's database (tables in team_tables).

An admin creates an invite for a member name and role; the link carries a random secret
(`secrets.token_urlsafe(32)`, 256 bits) of which only the sha256 is stored. Opening the link redeems
it once, before it expires, in one transaction that marks the invite used and creates a sign-in
with its own secret (again stored hashed) that the browser keeps in its link. A wrong, expired or
used invite and a revoked or expired sign-in are refused with what to do. Secrets are compared by
looking up their hash, so no timing of a string comparison leaks them.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from eval_core.errors import EvalCoreError
from eval_core.rating_campaigns import check_name
from eval_core.results_store import ResultsStore, database_url
from eval_core.team_config import ROLES, Member, Role
from eval_core.team_tables import team_invites, team_metadata, team_sessions

DAY_S = 86_400.0


class AccessError(EvalCoreError):
    """A sign-in was refused (wrong, expired or used invite; unknown, expired or revoked sign-in)."""


@dataclass(frozen=True)
class InviteInfo:
    """An invite as an admin sees it (never its secret)."""

    member: str
    role: Role
    created_by: str
    created_at: float
    expires_at: float
    state: str  # "open", "used", "expired", "revoked"


def token_hash(token: str) -> str:
    """sha256 hex of a secret token: what the database keeps instead of the token."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class TeamStore(ResultsStore):
    """Invites and sign-ins on the workspace's database (SQLite or PostgreSQL)."""

    metadatas = (*ResultsStore.metadatas, team_metadata)

    def __enter__(self) -> TeamStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def create_invite(self, member: str, role: Role, created_by: str, *, days: float = 7.0,
                      now: float | None = None) -> str:
        """A new invite's secret token (shown once: only its hash is stored)."""
        check_name(member, "member")
        if role not in ROLES:
            raise EvalCoreError(f"role {role!r} is not known; use one of {', '.join(ROLES)}", field="role")
        if not 0 < days <= 366:
            raise EvalCoreError(f"an invite lasts between 0 and 366 days, not {days}", field="days")
        now = time.time() if now is None else now
        token = secrets.token_urlsafe(32)
        with self._writing() as conn:
            conn.execute(team_invites.insert().values(
                token_hash=token_hash(token), member=member.strip(), role=role, created_by=created_by,
                created_at=now, expires_at=now + days * DAY_S, redeemed_at=None, revoked_at=None))
        return token

    def redeem_invite(self, token: str, *, session_days: float = 30.0, now: float | None = None) -> tuple[str, Member]:
        """Use an invite once: returns the new sign-in's secret and who it signs in as.

        Raises:
            AccessError: the invite is unknown (wrong or incomplete link), expired, already used or revoked.
        """
        now = time.time() if now is None else now
        h = token_hash(token or "")
        session = secrets.token_urlsafe(32)
        with self._writing() as conn:
            row = conn.execute(sa.select(team_invites).where(team_invites.c.token_hash == h)).mappings().first()
            if row is None:
                raise AccessError("this invite link is not valid: check that you opened the whole link, or ask "
                                  "your admin for a new one", field="invite")
            if row["revoked_at"] is not None:
                raise AccessError("this invite link was revoked by an admin: ask them for a new one", field="invite")
            if row["redeemed_at"] is not None:
                raise AccessError("this invite link was already used: open the link the app gave you when you "
                                  "first signed in, or ask your admin for a new invite", field="invite")
            if row["expires_at"] <= now:
                raise AccessError(f"this invite link expired on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(row['expires_at']))}: "
                                  "ask your admin for a new one", field="invite")
            # The guard on redeemed_at makes a concurrent second redeem update nothing.
            done = conn.execute(team_invites.update().where(team_invites.c.token_hash == h,
                                                            team_invites.c.redeemed_at.is_(None),
                                                            team_invites.c.revoked_at.is_(None))
                                .values(redeemed_at=now)).rowcount
            if done != 1:
                raise AccessError("this invite link was already used: ask your admin for a new invite", field="invite")
            conn.execute(team_sessions.insert().values(
                token_hash=token_hash(session), member=row["member"], role=row["role"], invite_hash=h,
                created_at=now, expires_at=now + session_days * DAY_S, revoked_at=None))
        return session, Member(row["member"], row["role"], "invite")

    def member_of_session(self, session: str, *, now: float | None = None) -> Member:
        """Who a sign-in secret signs in as.

        Raises:
            AccessError: unknown, expired or revoked sign-in.
        """
        now = time.time() if now is None else now
        with self._reading() as conn:
            row = conn.execute(sa.select(team_sessions).where(
                team_sessions.c.token_hash == token_hash(session or ""))).mappings().first()
        if row is None:
            raise AccessError("this sign-in link is not valid: open your invite link again, or ask your admin "
                              "for a new invite", field="session")
        if row["revoked_at"] is not None:
            raise AccessError("your sign-in was revoked by an admin: ask them for a new invite", field="session")
        if row["expires_at"] <= now:
            raise AccessError("your sign-in expired: ask your admin for a new invite", field="session")
        return Member(row["member"], row["role"], "invite")

    def revoke(self, member: str, *, now: float | None = None) -> int:
        """Revoke every sign-in and open invite of `member`; returns how many were revoked."""
        now = time.time() if now is None else now
        with self._writing() as conn:
            n = conn.execute(team_sessions.update().where(team_sessions.c.member == member,
                                                          team_sessions.c.revoked_at.is_(None))
                             .values(revoked_at=now)).rowcount
            n += conn.execute(team_invites.update().where(team_invites.c.member == member,
                                                         team_invites.c.redeemed_at.is_(None),
                                                         team_invites.c.revoked_at.is_(None))
                              .values(revoked_at=now)).rowcount
        return n

    def invites(self, *, now: float | None = None) -> list[InviteInfo]:
        """Every invite, newest first, with its state."""
        now = time.time() if now is None else now
        with self._reading() as conn:
            rows = conn.execute(sa.select(team_invites, team_sessions.c.revoked_at.label("session_revoked_at")).select_from(
                team_invites.outerjoin(team_sessions, team_sessions.c.invite_hash == team_invites.c.token_hash))
                .order_by(team_invites.c.created_at.desc())).mappings().all()
        out = []
        for r in rows:
            state = ("revoked" if r["revoked_at"] is not None or r["session_revoked_at"] is not None
                     else "used" if r["redeemed_at"] is not None else "expired" if r["expires_at"] <= now else "open")
            out.append(InviteInfo(r["member"], r["role"], r["created_by"], r["created_at"], r["expires_at"], state))
        return out


def open_team_store(root: Path | str, url: str | None = None) -> TeamStore:
    """The team store of a workspace (its results database)."""
    from eval_core.workspace import load_config

    root = Path(root)
    return TeamStore(url or database_url(root, load_config(root).database_url))
