"""The UI's caches, in one place (eval_core itself never caches in Streamlit)."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from eval_core import WorkspaceSummary, discover_workspace
from eval_core.training_logs import CurveTable, read_run_logs


@st.cache_data(ttl=30, show_spinner="Reading the workspace…")
def workspace_summary(root: str) -> WorkspaceSummary:
    """Discovery is cheap (fingerprints are memoised on disk); the TTL picks up new checkpoints."""
    return discover_workspace(root)


def clear() -> None:
    workspace_summary.clear()
    run_curves.clear()


def log_signature(run_dir: str) -> tuple:
    """(path, size, mtime) of every log file: changes when a live run writes more."""
    from eval_core.training_logs import find_log_sources

    sig = []
    for path in find_log_sources(Path(run_dir)):
        try:
            st_ = path.stat()
            sig.append((str(path), st_.st_size, st_.st_mtime_ns))
        except OSError:
            continue
    return tuple(sig)


@st.cache_data(max_entries=64, show_spinner=False)
def run_curves(run_dir: str, run: str, root: str, signature: tuple) -> CurveTable:
    """Parsed logs of one run; `signature` (from log_signature) makes new log writes a cache miss."""
    return read_run_logs(run_dir, run=run, root=Path(root))
