"""Data diagnostics for the pages: run them with a progress bar, once per session and file state.

The Data page and the Metrics page's "exclude contaminated items" both read
eval_core.data_report.data_pairs through `workspace_pairs`. The results store keeps every computed
pair, so a new session reads them back; within a session the pairs are memoised on the files'
(path, size, mtime), so a rerun of the page (any widget change) does not even re-read the sets.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from eval_core import WorkspaceSummary
from eval_core.data_report import StoredPair, data_pairs
from pages._render import plain

MEMO_KEY = "_data_pairs_memo"
DEFAULT_NGRAM = 13  # lm-evaluation-harness's decontamination n
NGRAM_KEY = "data_ngram"
NEAR_KEY = "data_near"


def data_settings() -> tuple[int, bool]:
    """The session's n-gram length and near-duplicate switch (set on the Data page)."""
    return int(st.session_state.get(NGRAM_KEY, DEFAULT_NGRAM)), bool(st.session_state.get(NEAR_KEY, True))


def _files_state(ws: WorkspaceSummary) -> tuple:
    out = []
    for record in (*ws.training_sets, *ws.datasets):
        path = Path(ws.root) / record.path
        try:
            s = path.stat()
            out.append((record.name, str(path), s.st_size, s.st_mtime_ns))
        except OSError:
            out.append((record.name, str(path), None, None))
    return tuple(out)


def workspace_pairs(ws: WorkspaceSummary, ngram: int, near: bool, heldout_names: list[str] | None = None
                    ) -> list[StoredPair]:
    """Every (training set, held-out set) diagnostics record, computed with a progress bar when the
    store does not hold it. Raises EvalCoreError as data_pairs does."""
    key = (str(ws.root), ngram, near, tuple(heldout_names or ()), _files_state(ws))
    memo = st.session_state.setdefault(MEMO_KEY, {})
    if key in memo:
        return memo[key]
    shown: dict = {}

    def progress(fraction: float, what: str) -> None:
        if "bar" not in shown:
            if fraction >= 1.0:
                return  # everything came from the store: nothing to show
            shown["status"] = st.status("Checking the held-out sets against the training data…", expanded=True)
            shown["bar"] = shown["status"].progress(0.0)
        shown["bar"].progress(min(1.0, max(0.0, fraction)), text=plain(what))

    pairs = data_pairs(ws.root, ngram_n=ngram, near_duplicates=near, heldout_names=heldout_names, progress=progress)
    if "status" in shown:
        shown["status"].update(label="Data checked and stored in the workspace's results store",
                               state="complete", expanded=False)
    while len(memo) >= 8:  # a few settings per session; old file states go first
        memo.pop(next(iter(memo)))
    memo[key] = pairs
    return pairs


@st.cache_data(ttl=30, max_entries=4, show_spinner="Reading the set…")
def set_texts(root: str, name: str, heldout: bool) -> dict[str, str]:
    """{id: compared text} of one held-out (or training) set, as the diagnostics saw it."""
    from eval_core.data_report import text_set
    from eval_core.workspace import discover_workspace

    ws = discover_workspace(root)
    record = next(r for r in (ws.datasets if heldout else ws.training_sets) if r.name == name)
    ts = text_set(Path(root), record)
    return dict(zip(ts.ids, ts.texts, strict=True))
