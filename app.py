"""Fine-Tune Lens: the Streamlit entry point (router and frame).

    streamlit run app.py -- --workspace DIR

Sets up the page, the sidebar workspace picker shared by every page, and the navigation. Pages
live in pages/ and read everything from eval_core.
"""

from __future__ import annotations

import os

import streamlit as st

from eval_core import __version__, is_demo_built
from eval_core.cli import OFFLINE_ENV
from pages import _cached
from eval_core.team_config import Member
from pages._session import current_workspace, demo_dir, demo_settings, set_workspace
from pages._team import gate, invite_panel, member_sidebar, refuse_page

for _key, _value in OFFLINE_ENV.items():  # nothing may reach a model hub
    os.environ.setdefault(_key, _value)

st.set_page_config(page_title="Fine-Tune Lens", page_icon="🔬", layout="wide")


def _stop_pages_folder_emulation() -> None:
    """Run this script on every rerun, not Streamlit's emulation of folder-based navigation.

    Because a `pages/` folder sits beside app.py, Streamlit (1.67) runs each script run through
    its old folder-based navigation, which can run a page file alone, without this script and the
    sidebar. The flag is read before every run; clearing it takes effect from the second run on.
    """
    try:
        from streamlit.runtime.pages_manager import PagesManager

        PagesManager.uses_pages_directory = False
    except ImportError:  # a later Streamlit without the emulation
        pass


_stop_pages_folder_emulation()

# On the very first run the emulation still resolves the URL, and in it a page's url_path is its
# file stem; so no url_path here may equal a file stem in pages/ (a test checks), or a deep link
# would run that page without this script.
PAGE_SPECS = [  # (file, title, icon, url_path)
    ("pages/overview.py", "Overview", "🏠", "home"),
    ("pages/training_curves.py", "Training curves", "📈", "curves"),
    ("pages/data.py", "Data", "🧮", "data-checks"),
    ("pages/metrics.py", "Metrics", "📊", "scores"),
    ("pages/forgetting.py", "Forgetting", "🧠", "retention"),
    ("pages/rating.py", "Rate outputs", "⚖️", "rate"),
    ("pages/rating_results.py", "Rating results", "🏆", "rankings"),
    ("pages/export.py", "Export", "📄", "reports"),
]


def pages(default: str = "home") -> list:
    """Every page (a rater's default is the Rate page; the others refuse a rater, see pages._team)."""
    return [st.Page(f, title=t, icon=i, url_path=u, default=u == default) for f, t, i, u in PAGE_SPECS]


def sidebar(member: Member | None) -> None:
    with st.sidebar:
        st.markdown("### Fine-Tune Lens")
        if member is not None:  # team mode: one workspace, chosen by whoever started the server
            member_sidebar(member)
            invite_panel(member)
            if member.role == "admin" and st.button("Refresh", key="refresh", help="Re-scan the workspace"):
                _cached.clear()
            st.caption(f"Fine-Tune Lens {__version__}")
            return
        current = current_workspace()
        shown = str(current) if current else ""
        # Unkeyed, with the current workspace as its value: when the workspace changes elsewhere
        # (the demo button), the picker is a new widget showing the new value.
        typed = st.text_input(
            "Workspace folder",
            value=shown,
            placeholder="/path/to/workspace",
            help="A folder with an ftlens.toml, or a Trainer output folder with checkpoint-*/ "
            "(see README). Also: FTLENS_WORKSPACE, or `streamlit run app.py -- --workspace DIR`.",
        ).strip()
        if typed != shown:
            set_workspace(typed or None)
            _cached.clear()
            current = current_workspace()
        demo = demo_dir()
        if is_demo_built(demo, demo_settings()) and (current is None or current.resolve() != demo.resolve()):
            if st.button("Open the demo workspace", key="open_demo_sidebar"):
                set_workspace(demo)
                _cached.clear()
                st.rerun()
        if st.button("Refresh", key="refresh", help="Re-scan the workspace for new checkpoints and files"):
            _cached.clear()
        st.caption(f"Fine-Tune Lens {__version__}")


# A multiprocessing child (spawn) re-runs its parent's main script as "__mp_main__"; after an AppTest
# run in the parent that is this file, and a child must not draw the app.
if __name__ != "__mp_main__":
    member = gate()  # stops here when this session may not see the app (see pages/_team.py)
    sidebar(member)
    rater = member is not None and member.role != "admin"
    # A rater needs only the Rate page: no menu of pages they may not open (deep links get "Not allowed").
    page = st.navigation(pages("rate" if rater else "home"), position="hidden" if rater else "sidebar")
    if member is not None:
        refuse_page(member, page.title)
    page.run()
