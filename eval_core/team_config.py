"""Team mode: who may sign in, with which role, and where the app may listen.

A workspace is served in team mode when its ftlens.toml has a `[team]` table:

    [team]
    admins = ["lead@example.org"]             # OIDC e-mails with the admin role
    raters = { "ann@example.org" = "ann" }    # OIDC e-mail -> rater name in the campaigns
    invites = true                            # per-rater invite links (no identity provider needed)
    invite_days = 7                           # an invite link expires after this many days
    session_days = 30                         # a redeemed invite signs in for this long

Roles: an **admin** creates campaigns and sees every page, results and model identities; a
**rater** sees only the Rate page with their own queue, blind. Identities come from `st.login`
(OIDC, configured in `.streamlit/secrets.toml` `[auth]`) or from an invite link, never from a name
typed or picked in the page. Without any login the app serves only on a loopback address
(`serve_refusal`).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any, Literal

Role = Literal["admin", "rater"]
ROLES: tuple[Role, ...] = ("admin", "rater")
TEAM_KEYS = ("admins", "raters", "invites", "invite_days", "session_days")


@dataclass(frozen=True)
class TeamConfig:
    """The `[team]` table of ftlens.toml (e-mails lowercased)."""

    admins: tuple[str, ...] = ()
    raters: dict[str, str] = field(default_factory=dict)  # e-mail -> rater name
    invites: bool = True
    invite_days: float = 7.0
    session_days: float = 30.0


@dataclass(frozen=True)
class Member:
    """A signed-in person: the name the app knows them by, their role and how they signed in."""

    name: str  # the rater name (raters) or the e-mail / invite name (admins)
    role: Role
    via: Literal["oidc", "invite"]
    email: str | None = None


def parse_team(c: Any, table: object) -> TeamConfig:
    """The `[team]` table, checked with the workspace config's checker `c` (errors name file, line, field)."""
    from eval_core.rating_campaigns import check_name

    if not isinstance(table, dict):
        raise c.fail("'team' must be a table ([team])", "team")
    c.keys(table, TEAM_KEYS, "team.")
    admins = table.get("admins", [])
    if not isinstance(admins, list) or not all(isinstance(a, str) and "@" in a for a in admins):
        raise c.fail("'admins' must be a list of e-mail addresses, e.g. admins = [\"lead@example.org\"]",
                     "team.admins", "admins")
    raters = table.get("raters", {})
    if not isinstance(raters, dict):
        raise c.fail("'raters' must be a table of e-mail = rater name, e.g. raters = { \"ann@example.org\" = \"ann\" }",
                     "team.raters", "raters")
    mapped: dict[str, str] = {}
    for email, name in raters.items():
        if "@" not in email or not isinstance(name, str):
            raise c.fail(f"raters entry {email!r}: give an e-mail = rater name", "team.raters", email)
        try:
            check_name(name, "rater")
        except Exception as exc:  # noqa: BLE001 - re-raised with the file, line and field
            raise c.fail(f"raters entry {email!r}: {getattr(exc, 'message', exc)}", "team.raters", email) from None
        mapped[email.strip().lower()] = name
    invites = table.get("invites", True)
    if not isinstance(invites, bool):
        raise c.fail("'invites' must be true or false", "team.invites", "invites")
    days = {}
    for key, default in (("invite_days", 7.0), ("session_days", 30.0)):
        value = table.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 366:
            raise c.fail(f"'{key}' must be a number of days between 0 and 366, got {value!r}", f"team.{key}", key)
        days[key] = float(value)
    return TeamConfig(tuple(a.strip().lower() for a in admins), mapped, invites, **days)


def member_from_oidc(user: dict, team: TeamConfig) -> Member | None:
    """The member an OIDC identity (`st.user`) signs in as: an admin when its e-mail is listed under
    `admins`, else the rater mapped to it under `raters`; None when the team does not know it.

    An e-mail the provider marks as unverified (`email_verified = false`) is never trusted.

    Example:
        >>> member_from_oidc({"email": "Ann@Example.org"}, TeamConfig(raters={"ann@example.org": "ann"})).name
        'ann'
    """
    email = str(user.get("email") or "").strip().lower()
    if not email or user.get("email_verified") is False:
        return None
    if email in team.admins:
        return Member(email, "admin", "oidc", email)
    if email in team.raters:
        return Member(team.raters[email], "rater", "oidc", email)
    return None


def is_loopback(address: str | None) -> bool:
    """True for 127.0.0.0/8, ::1 and `localhost`; an empty address means all interfaces (not loopback)."""
    if not address:
        return False
    if address.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to any interface


def serve_refusal(address: str | None, team: TeamConfig | None, oidc_configured: bool) -> str | None:
    """Why the app must not serve on `address` (the server's bind address), or None when it may.

    On a loopback address anything goes (one person's machine). Elsewhere other people can reach the
    app, so it needs team mode with a login: OIDC configured, or invite links enabled.

    Example:
        >>> serve_refusal("0.0.0.0", None, False)[:40]
        'This dashboard listens on 0.0.0.0, reach'
    """
    if is_loopback(address):
        return None
    where = address or "all interfaces"
    if team is None:
        return (f"This dashboard listens on {where}, reachable from other machines, but the workspace is not in "
                "team mode, so nobody has to sign in. Serve it on 127.0.0.1 (the default), or add a [team] table "
                "to ftlens.toml with a login (OIDC in .streamlit/secrets.toml [auth], or invite links).")
    if not oidc_configured and not team.invites:
        return (f"This dashboard listens on {where} in team mode, but no login is configured: set up OIDC in "
                ".streamlit/secrets.toml [auth], or allow invite links with invites = true under [team].")
    return None
