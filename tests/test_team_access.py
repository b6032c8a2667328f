"""Team access (eval_core.team_config, team_store, cli_team) on SQLite and PostgreSQL: the [team]
table, OIDC identities mapped to roles, where the app may listen, and invite links that are
stored hashed, work once, expire, and can be revoked."""

from __future__ import annotations

import threading
import time

import pytest
import sqlalchemy as sa

from eval_core.cli import main
from eval_core.errors import WorkspaceError
from eval_core.team_config import TeamConfig, member_from_oidc, serve_refusal
from eval_core.team_store import DAY_S, AccessError, TeamStore, token_hash
from eval_core.team_tables import team_invites, team_sessions
from eval_core.workspace_config import parse_workspace_config

TEAM = TeamConfig(admins=("lead@example.org",), raters={"ann@example.org": "ann"})


@pytest.fixture
def store(store_url):
    s = TeamStore(store_url)
    yield s
    s.close()


def test_invites_are_stored_only_as_hashes_and_redeem_once(store):
    token = store.create_invite("ann", "rater", "lead")
    with store._reading() as conn:
        rows = conn.execute(sa.select(team_invites)).mappings().all()
    assert [r["token_hash"] for r in rows] == [token_hash(token)] and token not in str(rows)
    session, member = store.redeem_invite(token)
    assert (member.name, member.role, member.via) == ("ann", "rater", "invite")
    assert store.member_of_session(session) == member
    with store._reading() as conn:
        assert session not in str(conn.execute(sa.select(team_sessions)).mappings().all())
    with pytest.raises(AccessError, match="already used"):
        store.redeem_invite(token)


def test_wrong_and_expired_invites_and_sessions_are_refused(store):
    with pytest.raises(AccessError, match="not valid"):
        store.redeem_invite("not-a-token")
    old = store.create_invite("ann", "rater", "lead", days=1, now=time.time() - 2 * DAY_S)
    with pytest.raises(AccessError, match="expired"):
        store.redeem_invite(old)
    session, _ = store.redeem_invite(store.create_invite("ann", "rater", "lead"), session_days=1)
    with pytest.raises(AccessError, match="expired"):
        store.member_of_session(session, now=time.time() + 2 * DAY_S)
    with pytest.raises(AccessError, match="not valid"):
        store.member_of_session(session[:-1])


def test_revoke_ends_sign_ins_and_open_invites(store):
    session, _ = store.redeem_invite(store.create_invite("ann", "rater", "lead"))
    pending = store.create_invite("ann", "rater", "lead")
    other, _ = store.redeem_invite(store.create_invite("bob", "admin", "lead"))
    assert store.revoke("ann") == 2
    with pytest.raises(AccessError, match="revoked"):
        store.member_of_session(session)
    with pytest.raises(AccessError, match="revoked by an admin"):
        store.redeem_invite(pending)
    assert store.member_of_session(other).role == "admin"  # others are untouched
    assert sorted(i.state for i in store.invites()) == ["revoked", "revoked", "used"]


def test_concurrent_redeems_of_one_invite_give_one_sign_in(store_url):
    with TeamStore(store_url) as s:
        token = s.create_invite("ann", "rater", "lead")
    results: list = []

    def redeem() -> None:
        with TeamStore(store_url) as s:
            try:
                results.append(s.redeem_invite(token)[1].name)
            except AccessError as exc:
                results.append(exc.message)
            except Exception as exc:  # noqa: BLE001 - a database busy error is an acceptable refusal too
                results.append(str(exc))

    threads = [threading.Thread(target=redeem) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count("ann") == 1
    with TeamStore(store_url) as s, s._reading() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(team_sessions)).scalar() == 1


def test_bad_invite_requests_name_the_field(store):
    with pytest.raises(Exception, match="not a valid name"):
        store.create_invite("<b>x</b>", "rater", "lead")
    with pytest.raises(Exception, match="role 'owner' is not known"):
        store.create_invite("ann", "owner", "lead")  # type: ignore[arg-type]


def test_oidc_identities_map_to_roles():
    assert member_from_oidc({"email": "LEAD@example.org"}, TEAM).role == "admin"
    ann = member_from_oidc({"email": "ann@example.org", "email_verified": True}, TEAM)
    assert (ann.name, ann.role, ann.via) == ("ann", "rater", "oidc")
    assert member_from_oidc({"email": "eve@example.org"}, TEAM) is None
    assert member_from_oidc({"email": "ann@example.org", "email_verified": False}, TEAM) is None
    assert member_from_oidc({}, TEAM) is None


@pytest.mark.parametrize(("address", "team", "oidc", "refused"), [
    ("127.0.0.1", None, False, False), ("localhost", None, False, False), ("::1", None, False, False),
    ("0.0.0.0", None, False, True), ("", None, False, True), (None, None, False, True),
    ("10.0.0.5", None, True, True),  # OIDC configured but no [team]: nobody is asked to sign in
    ("0.0.0.0", TeamConfig(), False, False),  # team mode with invite links
    ("0.0.0.0", TeamConfig(invites=False), True, False),
    ("0.0.0.0", TeamConfig(invites=False), False, True),
    ("my-host.example", None, False, True),
])
def test_the_app_serves_other_machines_only_with_a_login(address, team, oidc, refused):
    assert (serve_refusal(address, team, oidc) is not None) is refused


def test_the_team_table_is_checked_with_file_line_and_field(tmp_path):
    path = tmp_path / "ftlens.toml"
    path.write_text('name = "x"\n[team]\nadmins = ["Lead@Example.org"]\nraters = { "ann@x.org" = "ann" }\n'
                    'invite_days = 2\n')
    team = parse_workspace_config(path).team
    assert team.admins == ("lead@example.org",) and team.raters == {"ann@x.org": "ann"} and team.invite_days == 2
    for body, field in (('admins = "lead@x.org"', "team.admins"), ('raters = { "ann@x.org" = "<b>" }', "team.raters"),
                        ("session_days = 0", "team.session_days"), ("invites = 1", "team.invites"),
                        ("admin = []", "team.admin")):
        path.write_text(f'name = "x"\n[team]\n{body}\n')
        with pytest.raises(WorkspaceError) as err:
            parse_workspace_config(path)
        assert err.value.field == field and err.value.line == 3, body


def test_cli_invite_list_revoke(tmp_path, capsys):
    (tmp_path / "ftlens.toml").write_text('[team]\nadmins = ["lead@x.org"]\n')
    assert main(["team", "invite", "--workspace", str(tmp_path), "--member", "ann", "--url", "http://h:1/"]) == 0
    link = capsys.readouterr().out.strip()
    assert link.startswith("http://h:1/?invite=")
    with TeamStore(f"sqlite:///{tmp_path / '.ftlens' / 'results.sqlite'}") as s:
        assert s.redeem_invite(link.split("=", 1)[1])[1].name == "ann"
    assert main(["team", "list", "--workspace", str(tmp_path)]) == 0
    assert "ann     rater  used" in capsys.readouterr().out
    assert main(["team", "revoke", "--workspace", str(tmp_path), "--member", "ann"]) == 0


def test_cli_refuses_a_workspace_without_team_mode(tmp_path, capsys):
    (tmp_path / "ftlens.toml").write_text("")
    assert main(["team", "invite", "--workspace", str(tmp_path), "--member", "ann"]) == 2
    assert "not in team mode" in capsys.readouterr().err
