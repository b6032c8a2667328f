"""Team mode in the app: where it may listen, who is signed in, and what each role may open.

app.py calls `gate()` before drawing anything: it refuses to serve a workspace to other machines
without a login (eval_core.team_config.serve_refusal), and in team mode signs the session in from,
in order: an invite link (`?invite=`, redeemed once, replaced by a sign-in secret in `?signin=`),
that sign-in secret (checked against the database on every run, so a revoked sign-in ends at once),
or `st.user` from `st.login` (OIDC). Without a member it draws the sign-in screen and stops.
Everything is decided here, on the server: a rater's browser never receives another page's data.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from eval_core import EvalCoreError
from eval_core.team_config import Member, TeamConfig, member_from_oidc, serve_refusal
from pages._render import plain, problem_text
from pages._session import set_workspace, startup_workspace

INVITE_PARAM = "invite"
SIGNIN_PARAM = "signin"
SIGNIN_KEY = "ftlens_signin"  # the session's sign-in secret (also kept in the URL, for a bookmark)
MEMBER_KEY = "ftlens_member"
RATER_PAGES = ("Rate outputs",)  # titles of the pages a rater may open


def oidc_configured() -> bool:
    """True when `.streamlit/secrets.toml` has an `[auth]` table (st.login can work)."""
    try:
        return "auth" in st.secrets
    except Exception:  # noqa: BLE001 - no or an unreadable secrets file: no login is configured
        return False


def served_team(root: str | None) -> TeamConfig | None:
    """The [team] table of the workspace the server was started on (None: not in team mode)."""
    if not root:
        return None
    from eval_core.workspace import load_config

    return load_config(Path(root)).team


def signed_in_member() -> Member | None:
    """The member of this session in team mode (None outside team mode)."""
    return st.session_state.get(MEMBER_KEY)


def _store(root: str):  # noqa: ANN202
    from eval_core.team_store import open_team_store

    return open_team_store(root)


def _from_links(root: str, team: TeamConfig) -> Member | None:
    from eval_core.team_store import AccessError

    params = st.query_params
    try:
        if INVITE_PARAM in params and team.invites:
            token = params[INVITE_PARAM]
            del params[INVITE_PARAM]  # never left in the address bar or the history once used
            with _store(root) as store:
                secret, member = store.redeem_invite(token, session_days=team.session_days)
            st.session_state[SIGNIN_KEY] = secret
        secret = st.session_state.get(SIGNIN_KEY) or params.get(SIGNIN_PARAM)
        if not secret:
            return None
        with _store(root) as store:
            member = store.member_of_session(secret)
    except AccessError as exc:
        st.session_state.pop(SIGNIN_KEY, None)
        params.pop(SIGNIN_PARAM, None)
        st.error(plain(exc.message))
        return None
    st.session_state[SIGNIN_KEY] = secret
    if params.get(SIGNIN_PARAM) != secret:
        params[SIGNIN_PARAM] = secret  # bookmark this address to come back signed in
    return member


def _from_oidc(team: TeamConfig) -> Member | None:
    if not oidc_configured() or not st.user.is_logged_in:
        return None
    member = member_from_oidc(st.user.to_dict(), team)
    if member is None:
        st.error(plain(f"{st.user.get('email') or 'Your account'} is not a member of this team (or its e-mail is not "
                       "verified). Ask an admin to add your e-mail under [team] in ftlens.toml."))
        st.button("Log out", key="team_logout_unknown", on_click=st.logout)
    return member


def _sign_in_screen(team: TeamConfig) -> None:
    st.title("Sign in")
    if oidc_configured():
        st.button("Log in", key="team_login", type="primary", on_click=st.login)
    if team.invites:
        st.info("Raters: open the invite link your admin sent you; it signs you in on this browser. "
                "Then bookmark the address the app shows, to come back signed in.")
    if not oidc_configured() and not team.invites:
        st.error("No login is configured for this team: set up OIDC in .streamlit/secrets.toml [auth], or allow "
                 "invite links with invites = true under [team] in ftlens.toml.")


def _served_or_stop() -> tuple[str | None, TeamConfig | None]:
    """The served workspace and its [team] table; stops the run with the reason when the app may not
    serve on its address (serve_refusal) or the workspace config is broken."""
    root = startup_workspace()
    try:
        team = served_team(root)
    except EvalCoreError as exc:
        st.error(problem_text(exc.message, exc.path, exc.line, exc.field))
        st.stop()
    refusal = serve_refusal(st.get_option("server.address"), team, oidc_configured())
    if refusal:
        st.error(plain(refusal))
        st.stop()
    return root, team


def gate() -> Member | None:
    """Stop the run unless this session may see the app. Returns the signed-in member in team mode,
    None outside it (one person's app on a loopback address)."""
    root, team = _served_or_stop()
    if team is None:
        st.session_state.pop(MEMBER_KEY, None)
        return None
    set_workspace(root)  # team mode serves one workspace: nobody opens another folder
    member = _from_links(root, team) or _from_oidc(team)
    if member is None:
        st.session_state.pop(MEMBER_KEY, None)
        _sign_in_screen(team)
        st.stop()
    st.session_state[MEMBER_KEY] = member
    return member


def sign_out() -> None:
    member = signed_in_member()
    st.session_state.pop(MEMBER_KEY, None)
    st.session_state.pop(SIGNIN_KEY, None)
    st.query_params.pop(SIGNIN_PARAM, None)
    if member is not None and member.via == "oidc":
        st.logout()


def member_sidebar(member: Member) -> None:
    st.caption(plain(f"Signed in as {member.name} ({member.role}, via {'OIDC' if member.via == 'oidc' else 'invite link'})"))
    st.button("Sign out", key="team_sign_out", on_click=sign_out)


def refuse_page(member: Member | None, title: str) -> None:
    """Stop a page the member's role may not open (raters: everything but the Rate page). By title:
    the default page's url_path is empty."""
    if member is not None and member.role != "admin" and title not in RATER_PAGES:
        st.title(title)
        st.error(plain(f"Not allowed: {title} is for admins. You are signed in as {member.name} (rater); "
                       "your queue is on the Rate outputs page."))
        st.stop()


def page_guard(title: str, *, rater_allowed: bool = False) -> None:
    """Every page's own check, repeated from `gate`: so no page draws data for a session the gate did
    not admit, whatever routed the run to it (e.g. Streamlit's first-run folder emulation)."""
    root, team = _served_or_stop()
    if team is None:
        return
    member = signed_in_member() or _from_links(root, team) or _from_oidc(team)
    if member is None:
        st.error("Sign in first: open the app's start page (or your invite link).")
        st.stop()
    st.session_state[MEMBER_KEY] = member
    if not rater_allowed:
        refuse_page(member, title)


def _app_address() -> str:
    """The address this browser opened the app at (scheme, host, port), for invite links."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(st.context.url or "")
    except Exception:  # noqa: BLE001 - no browser context (tests): the default local address
        parts = None
    return f"{parts.scheme}://{parts.netloc}" if parts and parts.scheme and parts.netloc else "http://127.0.0.1:8501"


def invite_panel(member: Member) -> None:
    """Admins: create one-time invite links, see every invite's state, revoke a member."""
    from eval_core.team_store import open_team_store

    root = startup_workspace()
    team = served_team(root)
    if member.role != "admin" or team is None:
        return
    with st.expander("Team invites"):
        if team.invites:
            with st.form("team_invite_form", clear_on_submit=True, border=False):
                name = st.text_input("Member (rater name)", key="team_invite_member")
                role = st.selectbox("Role", ["rater", "admin"], key="team_invite_role")
                days = st.number_input("Expires after (days)", 0.1, 366.0, float(team.invite_days), key="team_invite_days")
                create = st.form_submit_button("Create invite link")
            if create:
                try:
                    with open_team_store(root) as store:
                        token = store.create_invite(name, role, member.email or member.name, days=float(days))
                    st.caption("Send this link privately; it works once and is shown only now:")
                    st.code(f"{_app_address()}/?invite={token}", language=None, wrap_lines=True)
                except EvalCoreError as exc:
                    st.error(problem_text(exc.message, exc.path, exc.line, exc.field))
        with open_team_store(root) as store:
            invites = store.invites()
        if invites:
            st.dataframe([{"member": i.member, "role": i.role, "state": i.state, "by": i.created_by} for i in invites],
                         hide_index=True, key="team_invites_table")
            who = st.selectbox("Revoke a member", sorted({i.member for i in invites}), index=None, key="team_revoke_member")
            if who and st.button("Revoke", key="team_revoke"):
                with open_team_store(root) as store:
                    n = store.revoke(who)
                st.success(plain(f"Revoked {n} sign-in(s) and open invite(s) of {who}."))
