"""The UI's caches, in one place (eval_core itself never caches in Streamlit)."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from eval_core import EvalCoreError, WorkspaceSummary, discover_workspace
from eval_core.metric_tables import (
    Comparison,
    DatasetResults,
    MetricRow,
    compare,
    load_dataset_results,
    metric_table,
)
from eval_core.metric_subsets import without_examples
from eval_core.training_logs import CurveTable, read_run_logs


@st.cache_data(ttl=30, show_spinner="Reading the workspace…")
def workspace_summary(root: str) -> WorkspaceSummary:
    """Discovery is cheap (fingerprints are memoised on disk); the TTL picks up new checkpoints."""
    return discover_workspace(root)


def clear() -> None:
    workspace_summary.clear()
    run_curves.clear()
    clear_results()
    forgetting_report.clear()


def clear_results() -> None:
    dataset_results.clear()
    metric_rows.clear()
    comparison.clear()


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


# Stored results. `version` is eval_core.metric_tables.results_version(root): it changes when the
# results database is written, so new results show without a manual refresh.


@st.cache_data(max_entries=8, show_spinner="Reading stored results…")
def dataset_results(root: str, version: tuple | None) -> list[DatasetResults]:
    """Every generation set with stored text metrics (empty when there is no database yet)."""
    return [] if version is None else load_dataset_results(root)


def results_of(root: str, version: tuple | None, name: str, generation_hash: str,
               excluded: tuple[str, ...] = ()) -> DatasetResults:
    """One set's results under one generation setting, without the `excluded` example ids."""
    for r in dataset_results(root, version):
        if (r.name, r.generation_hash) == (name, generation_hash):
            return without_examples(r, excluded) if excluded else r
    raise EvalCoreError(f"no stored results for {name} under generation setting {generation_hash[:12]}; press Refresh")


@st.cache_data(max_entries=128, show_spinner="Bootstrapping intervals…")
def metric_rows(root: str, version: tuple | None, name: str, generation_hash: str, metrics: tuple[str, ...],
                by_category: bool, seed: int, n_resamples: int, excluded: tuple[str, ...] = ()) -> list[MetricRow]:
    return metric_table(results_of(root, version, name, generation_hash, excluded), list(metrics), by_category=by_category,
                        seed=seed, n_resamples=n_resamples)


@st.cache_data(max_entries=32, show_spinner="Running the paired test…")
def comparison(root: str, version: tuple | None, name: str, generation_hash: str, a: str, b: str, metric: str,
               wrong_below: float, seed: int, n_resamples: int, excluded: tuple[str, ...] = ()) -> Comparison:
    return compare(results_of(root, version, name, generation_hash, excluded), a, b, metric, wrong_below=wrong_below,
                   seed=seed, n_resamples=n_resamples)


@st.cache_data(max_entries=16, show_spinner="Bootstrapping retention intervals…")
def forgetting_report(root: str, version: tuple | None, threshold: float, seed: int, n_resamples: int):
    """The ftlens.forgetting report of the stored results, read from (or computed into) the store's
    analyses; None when there is no database yet."""
    from eval_core.forgetting_results import forgetting_report as stored_report

    if version is None:
        return None
    return stored_report(root, threshold=threshold, seed=seed, n_resamples=n_resamples).report


@st.cache_data(max_entries=16, show_spinner="Fitting Bradley-Terry and bootstrapping…")
def rating_summary(root: str, campaign: str, version: tuple | None, seed: int, n_resamples: int):
    """The campaign's ftlens.ratings summary (`version` only keys the cache)."""
    from eval_core.rating_setup import campaign_summary

    return campaign_summary(root, campaign, seed=seed, n_resamples=n_resamples)
