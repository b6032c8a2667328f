"""Team mode in the app (pages/_team.py): sign-in by invite link and by OIDC (`at.user`), roles and
blinding enforced on the server, invite tokens refused when wrong, expired or used."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from eval_core.rating_campaigns import CampaignSpec
from eval_core.rating_setup import open_rating_store
from eval_core.rating_store import RatingItem
from eval_core.team_store import DAY_S, open_team_store
from pages._render import plain

MODELS = ("model-alpha-secret", "model-beta-secret")  # must never reach a rater's page
TEAM_TOML = """
[team]
admins = ["lead@example.org"]
raters = { "alice@example.org" = "alice" }
"""
AUTH = {"auth": {"redirect_uri": "http://127.0.0.1:8501/oauth2callback", "cookie_secret": "x" * 32,
                 "client_id": "ftlens", "client_secret": "s",
                 "server_metadata_url": "http://127.0.0.1:1/.well-known/openid-configuration"}}


@pytest.fixture
def team_ws(tmp_path) -> Path:
    ws = tmp_path / "team"
    ws.mkdir()
    (ws / "ftlens.toml").write_text(TEAM_TOML, encoding="utf-8")
    spec = CampaignSpec("demo", "set", "h", MODELS, ("alice", "bob"), overlap=2, rubric=())
    items = [RatingItem(f"x{i}", f"prompt {i}", {MODELS[0]: f"alpha says {i}", MODELS[1]: f"beta says {i}"})
             for i in range(6)]
    with open_rating_store(ws) as store:
        store.create_campaign(spec, items)
    return ws


def start(app, monkeypatch, ws: Path, *, params: dict | None = None, user: dict | None = None, auth: bool = False):
    monkeypatch.setenv("FTLENS_WORKSPACE", str(ws))
    at = app(60)
    for k, v in (params or {}).items():
        at.query_params[k] = v
    if user is not None:
        at.user = user
    if auth:
        at.secrets.update(AUTH)
    at.run()
    assert not at.exception, at.exception
    return at


def texts(at) -> str:
    parts = [e.value for kind in ("title", "markdown", "caption", "info", "error", "warning", "success", "code")
             for e in getattr(at, kind)]
    parts += [str(df.value.to_dict()) for df in at.dataframe]
    parts += [str(list(s.options)) for s in at.selectbox]
    return "\n".join(str(p) for p in parts)


def invite(ws: Path, member: str, role: str = "rater", **kw) -> str:
    with open_team_store(ws) as store:
        return store.create_invite(member, role, "test", **kw)


def test_without_sign_in_every_page_shows_only_the_sign_in_screen(app, monkeypatch, team_ws):
    at = start(app, monkeypatch, team_ws)
    assert [t.value for t in at.title] == ["Sign in"] and "invite link" in at.info[0].value
    for page in ("pages/rating_results.py", "pages/rating.py", "pages/overview.py"):
        at.switch_page(page).run()
        # app.py's gate draws the sign-in screen; a run routed straight to the page meets its own guard.
        assert [t.value for t in at.title] == ["Sign in"] or at.error[0].value.startswith("Sign in first"), page
        assert "prompt 0" not in texts(at) and MODELS[0] not in texts(at)
    assert not at.sidebar.text_input  # no workspace picker: team mode serves one workspace


def test_an_invite_link_signs_a_rater_in_to_their_own_blind_queue(app, monkeypatch, team_ws):
    token = invite(team_ws, "bob")
    at = start(app, monkeypatch, team_ws, params={"invite": token})
    assert at.title[0].value == "Rate outputs"  # a rater lands on the Rate page
    assert "invite" not in at.query_params and at.query_params["signin"]  # the used link leaves the address bar
    assert "Rating as bob" in texts(at) and not [s for s in at.selectbox if s.label == "Your name"]
    with open_rating_store(team_ws) as store:
        bob_tokens = {a.token for a in store.assignments("demo", "bob")}
    shown = {r.key.removeprefix("rate_").removesuffix("_verdict") for r in at.radio if r.key and r.key.endswith("_verdict")}
    assert shown and shown <= bob_tokens
    assert not any(m in texts(at) for m in MODELS)  # blind
    assert plain("Signed in as bob (rater, via invite link)") in [c.value for c in at.sidebar.caption]


def test_the_sign_in_link_works_again_until_revoked(app, monkeypatch, team_ws):
    at = start(app, monkeypatch, team_ws, params={"invite": invite(team_ws, "bob")})
    signin = at.query_params["signin"]
    again = start(app, monkeypatch, team_ws, params={"signin": signin})  # a bookmarked address, new session
    assert again.title[0].value == "Rate outputs"
    with open_team_store(team_ws) as store:
        assert store.revoke("bob") == 1
    revoked = start(app, monkeypatch, team_ws, params={"signin": signin})
    assert "revoked" in revoked.error[0].value and revoked.title[0].value == "Sign in"


@pytest.mark.parametrize("case", ["wrong", "expired", "reused"])
def test_bad_invite_tokens_are_refused(app, monkeypatch, team_ws, case):
    if case == "wrong":
        token = invite(team_ws, "bob")[:-2] + "xx"
    elif case == "expired":
        token = invite(team_ws, "bob", days=1, now=time.time() - 2 * DAY_S)
    else:
        token = invite(team_ws, "bob")
        start(app, monkeypatch, team_ws, params={"invite": token})
    at = start(app, monkeypatch, team_ws, params={"invite": token})
    words = {"wrong": "not valid", "expired": "expired", "reused": "already used"}[case]
    assert words in at.error[0].value and at.title[0].value == "Sign in"
    assert "prompt" not in texts(at)


def test_a_rater_is_not_allowed_on_results_or_any_other_page(app, monkeypatch, team_ws):
    at = start(app, monkeypatch, team_ws, params={"invite": invite(team_ws, "bob")})
    for page, title in (("pages/rating_results.py", "Rating results"), ("pages/metrics.py", "Metrics"),
                        ("pages/overview.py", "Overview"), ("pages/export.py", "Export"), ("pages/data.py", "Data")):
        at.switch_page(page).run()
        assert not at.exception, at.exception
        assert at.error and at.error[0].value.startswith("Not allowed"), page
        assert not at.dataframe and not any(m in texts(at) for m in MODELS), page


def test_oidc_rater_is_mapped_by_email_and_unknown_emails_are_refused(app, monkeypatch, team_ws):
    user = {"is_logged_in": True, "email": "Alice@Example.org", "email_verified": True, "name": "Alice"}
    at = start(app, monkeypatch, team_ws, user=user, auth=True)
    assert at.title[0].value == "Rate outputs" and "Rating as alice" in texts(at)
    stranger = start(app, monkeypatch, team_ws, user={"is_logged_in": True, "email": "eve@example.org"}, auth=True)
    assert "not a member of this team" in stranger.error[0].value and stranger.title[0].value == "Sign in"
    unverified = start(app, monkeypatch, team_ws, auth=True,
                       user={"is_logged_in": True, "email": "alice@example.org", "email_verified": False})
    assert unverified.title[0].value == "Sign in"


def test_st_user_counts_only_when_oidc_is_configured(app, monkeypatch, team_ws):
    at = start(app, monkeypatch, team_ws, user={"is_logged_in": True, "email": "lead@example.org"})
    assert at.title[0].value == "Sign in"  # no [auth]: a seeded identity is not a login
    assert [b.label for b in at.button if b.key == "team_login"] == []


def test_admin_sees_results_with_model_identities(app, monkeypatch, team_ws):
    with open_rating_store(team_ws) as store:
        for rater in ("alice", "bob"):
            while (item := store.next_item("demo", rater)) is not None:
                store.submit("demo", item.token, rater, "left")
    at = start(app, monkeypatch, team_ws, user={"is_logged_in": True, "email": "lead@example.org"}, auth=True)
    assert at.title[0].value != "Sign in" and not at.error
    at.switch_page("pages/rating_results.py").run()
    assert not at.exception and not [e for e in at.error if "Not allowed" in e.value]
    assert all(m in texts(at) for m in MODELS)  # the admin sees which model is which


def test_an_admin_creates_an_invite_in_the_sidebar_and_revokes_it(app, monkeypatch, team_ws):
    admin = {"is_logged_in": True, "email": "lead@example.org", "email_verified": True}
    at = start(app, monkeypatch, team_ws, user=admin, auth=True)
    at.sidebar.text_input(key="team_invite_member").input("bob")
    next(b for b in at.sidebar.button if b.label == "Create invite link").click().run()
    assert not at.exception, at.exception
    link = next(c.value for c in at.sidebar.code if "?invite=" in c.value)
    assert link.startswith("http://") and "bob" not in link
    bob = start(app, monkeypatch, team_ws, params={"invite": link.split("?invite=")[1]})
    assert "Rating as bob" in texts(bob)
    at = start(app, monkeypatch, team_ws, user=admin, auth=True)
    table = next(df.value for df in at.sidebar.dataframe)
    assert table.to_dict("records") == [{"member": "bob", "role": "rater", "state": "used", "by": "lead@example.org"}]
    at.sidebar.selectbox(key="team_revoke_member").set_value("bob").run()
    at.sidebar.button(key="team_revoke").click().run()
    assert "Revoked 1 sign-in" in at.sidebar.success[0].value
    again = start(app, monkeypatch, team_ws, params={"signin": bob.query_params["signin"]})
    assert again.title[0].value == "Sign in" and "revoked" in again.error[0].value


def test_raters_have_no_invite_panel(app, monkeypatch, team_ws):
    at = start(app, monkeypatch, team_ws, params={"invite": invite(team_ws, "bob")})
    assert not [e for e in at.sidebar.expander if e.label == "Team invites"]
