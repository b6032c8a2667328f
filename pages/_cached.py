"""The UI's caches, in one place (eval_core itself never caches in Streamlit)."""

from __future__ import annotations

import streamlit as st

from eval_core import WorkspaceSummary, discover_workspace


@st.cache_data(ttl=30, show_spinner="Reading the workspace…")
def workspace_summary(root: str) -> WorkspaceSummary:
    """Discovery is cheap (fingerprints are memoised on disk); the TTL picks up new checkpoints."""
    return discover_workspace(root)


def clear() -> None:
    workspace_summary.clear()
