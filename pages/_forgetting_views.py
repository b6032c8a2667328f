"""The forgetting recommendation where it is shown outside the Forgetting page.

`recommendation_banner` (Overview) states the recommended checkpoint and its reason, or why none is;
`curve_markers` (Training curves) gives the general retention per checkpoint as a score overlay and
the recommended checkpoint as a vertical line. Both read the analysis cached in the results store at
this session's threshold (`_session.forgetting_threshold`), with the project's bootstrap seed and
resamples, so they agree with the Forgetting page and the `forgetting` command's defaults.
"""

from __future__ import annotations

import streamlit as st

from eval_core import EvalCoreError
from eval_core.curve_figures import ScoreOverlay, StepMarker
from eval_core.forgetting import DEFAULT_RESAMPLES, DEFAULT_SEED, ForgettingReport
from eval_core.metric_tables import results_version
from pages import _cached
from pages._render import plain
from pages._session import forgetting_threshold


def stored_forgetting(root: str) -> ForgettingReport | None:
    """The forgetting report at this session's threshold, or None when the store has no base-model,
    probe or general-text results to compare (a broken store still shows its error)."""
    try:
        report = _cached.forgetting_report(root, results_version(root), forgetting_threshold(), DEFAULT_SEED,
                                           DEFAULT_RESAMPLES)
    except EvalCoreError as exc:
        if "no base model results" in exc.message:
            return None
        raise
    if report is None or not any(c.general_retention is not None for c in report.checkpoints):
        return None
    return report


def recommendation_text(report: ForgettingReport) -> str:
    rec = report.recommendation
    return f"Recommended checkpoint: {rec.reason}" if rec.checkpoint else f"No checkpoint recommended: {rec.reason}"


def recommendation_banner(root: str) -> None:
    """The recommendation as a success (one named) or warning (none qualifies) box, with a link."""
    try:
        report = stored_forgetting(root)
    except EvalCoreError as exc:
        st.warning(plain(f"Forgetting analysis unavailable: {exc.message}"))
        return
    if report is None:
        st.info("No forgetting analysis yet: evaluate the base model and checkpoints on the probe suites "
                "(Forgetting page) to get a recommended checkpoint.")
        return
    (st.success if report.recommendation.checkpoint else st.warning)(plain(recommendation_text(report)))
    st.page_link("pages/forgetting.py", label="Why: the Forgetting page", icon=":material/trending_down:")


def curve_markers(report: ForgettingReport, runs: list[str]) -> tuple[list[ScoreOverlay], list[StepMarker]]:
    """General retention per checkpoint of each chosen run, and the recommended checkpoint's line."""
    overlays, markers = [], []
    for run in runs:
        pts = sorted((c.step, c.general_retention) for c in report.checkpoints
                     if c.run == run and c.step is not None and c.general_retention is not None)
        if pts:
            overlays.append(ScoreOverlay("general retention", run, tuple(s for s, _ in pts), tuple(v for _, v in pts),
                                         unit="retention vs base", colour="#2ca02c", percent=True))
    rec = next((c for c in report.checkpoints if c.label == report.recommendation.checkpoint), None)
    if rec is not None and rec.run in runs and rec.step is not None:
        gain = "" if rec.domain_gain is None else f", domain gain {rec.domain_gain:+.0%}"
        markers.append(StepMarker(rec.run, rec.step, f"recommended: {rec.label} (retains {rec.general_retention:.0%}{gain})"))
    return overlays, markers
