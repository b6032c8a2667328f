"""Which workspace the app shows, and the session keys every page shares.

Precedence, highest first: the sidebar picker (this session), `streamlit run app.py --
--workspace DIR`, the environment variable FTLENS_WORKSPACE, else none (Overview offers the demo).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import streamlit as st

WORKSPACE_KEY = "ftlens_workspace"  # str path picked in this session
ENV_WORKSPACE = "FTLENS_WORKSPACE"
ENV_DEMO_DIR = "FTLENS_DEMO_DIR"
ENV_DEMO_QUICK = "FTLENS_DEMO_QUICK"
REPO_ROOT = Path(__file__).resolve().parent.parent


def demo_dir() -> Path:
    """Where the built-in demo workspace lives (FTLENS_DEMO_DIR, else .demo_workspace/)."""
    return Path(os.environ.get(ENV_DEMO_DIR) or REPO_ROOT / ".demo_workspace").expanduser()


def demo_settings():
    """Full demo settings; FTLENS_DEMO_QUICK=1 builds the reduced demo (tests, slow machines)."""
    from eval_core import DemoSettings

    return DemoSettings.quick() if os.environ.get(ENV_DEMO_QUICK) == "1" else DemoSettings()


def cli_workspace(argv: list[str] | None = None) -> str | None:
    """`--workspace DIR` from the arguments after `streamlit run app.py --`."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--workspace")
    args, _ = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    return args.workspace


def startup_workspace() -> str | None:
    return cli_workspace() or os.environ.get(ENV_WORKSPACE) or None


def current_workspace() -> Path | None:
    """The workspace this session shows, or None when none was chosen yet."""
    if WORKSPACE_KEY not in st.session_state:
        st.session_state[WORKSPACE_KEY] = startup_workspace()
    value = st.session_state[WORKSPACE_KEY]
    return Path(value).expanduser() if value else None


def page_workspace(title: str, *, rater_allowed: bool = False) -> Path:
    """Check that this session may see the page (pages._team.page_guard), draw the page title and
    return the open workspace; with none open, say how to open one and stop the page."""
    from pages._team import page_guard

    page_guard(title, rater_allowed=rater_allowed)
    st.title(title)
    root = current_workspace()
    if root is None:
        st.info("No workspace is open: choose one in the sidebar or open the demo from the Overview.")
        st.stop()
    return root


def set_workspace(path: Path | str | None) -> None:
    """Switch this session to `path` (None: no workspace)."""
    st.session_state[WORKSPACE_KEY] = str(path) if path else None


THRESHOLD_KEY = "ftlens_forgetting_threshold"  # float: the retention threshold chosen on the Forgetting page


def forgetting_threshold() -> float:
    """The retention threshold of this session (the Forgetting page sets it; default 95%), so the
    Overview and Training curves pages recommend the same checkpoint as the Forgetting page."""
    from eval_core.forgetting import DEFAULT_THRESHOLD

    return float(st.session_state.get(THRESHOLD_KEY, DEFAULT_THRESHOLD))
