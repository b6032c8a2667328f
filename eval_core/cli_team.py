"""The `team` command: invite links for team mode (a workspace whose ftlens.toml has a `[team]` table).

    python -m eval_core team invite --workspace DIR --member NAME [--role rater|admin] [--days N] [--url URL]
    python -m eval_core team list   --workspace DIR
    python -m eval_core team revoke --workspace DIR --member NAME

`invite` prints the link once (only its sha256 is stored): send it to that person over a private
channel. Opening it signs them in as NAME with the role; it works once and expires after --days
(default: the workspace's invite_days). `revoke` ends every sign-in and open invite of a member.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from eval_core.errors import EvalCoreError

DEFAULT_URL = "http://127.0.0.1:8501"


def _team(root: Path):  # noqa: ANN202 - a TeamConfig
    from eval_core.workspace import load_config

    if not root.is_dir():
        raise EvalCoreError(f"{root}: not a folder; give the workspace folder with --workspace")
    team = load_config(root).team
    if team is None:
        raise EvalCoreError("this workspace is not in team mode: add a [team] table to its ftlens.toml "
                            "(see README, 'Team mode') first", path=root / "ftlens.toml", field="team")
    return team


def _cmd_invite(args: argparse.Namespace) -> int:
    from eval_core.team_store import open_team_store

    team = _team(args.workspace)
    if not team.invites:
        raise EvalCoreError("invite links are off for this team (invites = false under [team])",
                            path=args.workspace / "ftlens.toml", field="team.invites")
    with open_team_store(args.workspace) as store:
        token = store.create_invite(args.member, args.role, "cli", days=args.days or team.invite_days)
    print(f"{args.url.rstrip('/')}/?invite={token}")
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    from eval_core.cli import _table
    from eval_core.team_store import open_team_store

    _team(args.workspace)
    with open_team_store(args.workspace) as store:
        rows = [[i.member, i.role, i.state, time.strftime("%Y-%m-%d %H:%M", time.gmtime(i.created_at)),
                 time.strftime("%Y-%m-%d %H:%M", time.gmtime(i.expires_at)), i.created_by] for i in store.invites()]
    print(_table(["member", "role", "state", "created (UTC)", "expires (UTC)", "by"], rows))
    return 0


def _cmd_revoke(args: argparse.Namespace) -> int:
    from eval_core.team_store import open_team_store

    _team(args.workspace)
    with open_team_store(args.workspace) as store:
        n = store.revoke(args.member)
    print(f"revoked {n} sign-in(s) and open invite(s) of {args.member}")
    return 0


def add_team_commands(sub: argparse._SubParsersAction) -> None:
    """Register `team` on the main parser's subparsers."""
    p = sub.add_parser("team", help="invite links for team mode: invite, list, revoke",
                       description="Invite links for a workspace served in team mode ([team] in ftlens.toml).")
    tsub = p.add_subparsers(dest="team_command", required=True)
    i = tsub.add_parser("invite", help="print a one-time invite link for a member")
    i.add_argument("--workspace", required=True, type=Path)
    i.add_argument("--member", required=True, help="the rater name it signs in as (as listed in campaigns)")
    i.add_argument("--role", choices=("rater", "admin"), default="rater")
    i.add_argument("--days", type=float, default=None, help="days until the link expires (default: invite_days)")
    i.add_argument("--url", default=DEFAULT_URL, help=f"the address raters open the app at (default {DEFAULT_URL})")
    i.set_defaults(func=_cmd_invite)
    ls = tsub.add_parser("list", help="every invite with its state (never its secret)")
    ls.add_argument("--workspace", required=True, type=Path)
    ls.set_defaults(func=_cmd_list)
    r = tsub.add_parser("revoke", help="end every sign-in and open invite of a member")
    r.add_argument("--workspace", required=True, type=Path)
    r.add_argument("--member", required=True)
    r.set_defaults(func=_cmd_revoke)
