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
from pages._session import PICKER_KEY, current_workspace, demo_dir, demo_settings, set_workspace, sync_picker

for _key, _value in OFFLINE_ENV.items():  # nothing may reach a model hub
    os.environ.setdefault(_key, _value)

st.set_page_config(page_title="Fine-Tune Lens", page_icon="🔬", layout="wide")

# Streamlit sees the pages/ folder and emulates its old folder-based navigation, in which a page's
# url_path is its file stem. A rerun asking for such a path would run that file alone, skipping this
# script (and the sidebar). So no url_path here may equal a file stem in pages/ (a test checks).
PAGES = [
    st.Page("pages/overview.py", title="Overview", icon="🏠", url_path="home", default=True),
]


def _apply_picker() -> None:
    value = st.session_state.get(PICKER_KEY, "").strip()
    set_workspace(value or None)
    _cached.clear()


def sidebar() -> None:
    with st.sidebar:
        st.markdown("### 🔬 Fine-Tune Lens")
        current = current_workspace()
        sync_picker()
        st.text_input(
            "Workspace folder",
            key=PICKER_KEY,
            placeholder="/path/to/workspace",
            help="A folder with an ftlens.toml, or a Trainer output folder with checkpoint-*/ "
            "(see README). Also: FTLENS_WORKSPACE, or `streamlit run app.py -- --workspace DIR`.",
            on_change=_apply_picker,
        )
        demo = demo_dir()
        if is_demo_built(demo, demo_settings()) and (current is None or current.resolve() != demo.resolve()):
            if st.button("Open the demo workspace", key="open_demo_sidebar"):
                set_workspace(demo)
                _cached.clear()
                st.rerun()
        if st.button("Refresh", key="refresh", help="Re-scan the workspace for new checkpoints and files"):
            _cached.clear()
        st.caption(f"Fine-Tune Lens {__version__}")


sidebar()
st.navigation(PAGES).run()
