"""Training curves: train and eval loss of one or more runs, with the best step and overfitting marked.

- Choose runs (several overlay) and metrics; x axis step / epoch / wall time; log y; smoothing
  (TensorBoard's debiased EMA) with the raw series drawn faintly.
- Each eval metric's best step is starred and labelled; an overfitting onset is a labelled dashed
  line; checkpoint save points are grey triangles.
- A summary table gives per eval metric the best step, overfitting onset, early-stopping step and
  generalisation gap, with the patience used.
- "Checkpoint scores" draws stored metrics (BLEU, ROUGE, completion perplexity… from the Metrics
  page's results) at each checkpoint's step on a second y axis, beside the loss curves.
- "Forgetting" (on when a forgetting analysis exists): the general retention of each checkpoint on the
  right axis and the recommended checkpoint as a red line, at the Forgetting page's threshold.
- "Live refresh" re-reads the logs every few seconds (for a run still writing them) without
  reloading the page.
- A workspace problem or unreadable log shows one error naming the file; the rest still shows.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from eval_core import EvalCoreError
from eval_core.curve_analysis import DEFAULT_PATIENCE, is_eval_metric, summarize_metric
from eval_core.curve_figures import ScoreOverlay, StepMarker, training_curves_figure
from eval_core.metric_figures import score_overlays
from eval_core.metric_tables import results_version
from eval_core.significance import DEFAULT_RESAMPLES, DEFAULT_SEED
from eval_core.training_logs import CurveTable, merge_tables
from pages import _cached
from pages._forgetting_views import curve_markers, recommendation_text, stored_forgetting
from pages._render import plain, problem_text
from pages._session import page_workspace

LIVE_SECONDS = 5
HIDDEN_BY_DEFAULT = ("_runtime", "_per_second", "total_flos")


def load_tables(root: Path, runs) -> CurveTable:
    tables = []
    for run in runs:
        run_dir = str((root / run.path).resolve())
        try:
            tables.append(_cached.run_curves(run_dir, run.name, str(root), _cached.log_signature(run_dir)))
        except EvalCoreError as exc:
            st.error(problem_text(exc.message, exc.path, exc.line, exc.field))
    return merge_tables(tables)


def stored_scores(root: str) -> tuple[tuple | None, dict[str, tuple[str, str, str]]]:
    """(results version, {"set · metric": (set, generation hash, metric)}) of the newest generation
    setting of each held-out set with stored results."""
    try:
        version = results_version(root)
        results = _cached.dataset_results(root, version)
    except EvalCoreError as exc:
        st.warning(problem_text(exc.message, exc.path, exc.line, exc.field))
        return None, {}
    options: dict[str, tuple[str, str, str]] = {}
    for r in results:  # newest setting of each set first
        for m in r.metrics:
            options.setdefault(f"{r.name} · {m}", (r.name, r.generation_hash, m))
    return version, options


def overlays_for(root: str, version, options: dict, chosen_scores: list[str], runs: list[str]) -> list[ScoreOverlay]:
    out: list[ScoreOverlay] = []
    for label in chosen_scores:
        name, generation_hash, metric = options[label]
        rows = _cached.metric_rows(root, version, name, generation_hash, (metric,), False, DEFAULT_SEED, DEFAULT_RESAMPLES)
        out += score_overlays(rows, runs, f"{name} {metric}")
    return out


root = page_workspace("Training curves")
try:
    ws = _cached.workspace_summary(str(root))
except EvalCoreError as exc:
    st.error(problem_text(exc.message, exc.path, exc.line, exc.field))
    st.stop()
runs_with_logs = [r for r in ws.runs if r.log_files]
if not runs_with_logs:
    st.info("No run in this workspace has training logs (trainer_state.json, TensorBoard events, metrics.csv).")
    st.stop()

run_names = [r.name for r in runs_with_logs]
chosen = st.multiselect("Runs", run_names, default=run_names[:1], key="curves_runs")
if not chosen:
    st.info("Choose at least one run.")
    st.stop()
chosen_runs = [r for r in runs_with_logs if r.name in chosen]
root_path = Path(ws.root)
table = load_tables(root_path, chosen_runs)
all_metrics = table.metrics()
default_metrics = [m for m in all_metrics if (m == "loss" or is_eval_metric(m)) and not m.endswith(HIDDEN_BY_DEFAULT)]

c1, c2, c3 = st.columns([3, 2, 2])
metrics = c1.multiselect("Metrics", all_metrics, default=default_metrics, key="curves_metrics")
x_axis = c2.radio("x axis", ["step", "epoch", "wall_time"], horizontal=True, key="curves_x",
                  format_func=lambda v: {"step": "step", "epoch": "epoch", "wall_time": "wall time"}[v])
log_y = c3.checkbox("log y", key="curves_logy")
c4, c5, c6 = st.columns([3, 2, 2])
smoothing = c4.slider("Smoothing (TensorBoard EMA weight)", 0.0, 0.999, 0.6, step=0.01, key="curves_smoothing")
patience = int(c5.number_input("Patience (evaluations)", 1, 50, DEFAULT_PATIENCE, key="curves_patience"))
live = c6.toggle("Live refresh", key="curves_live", help=f"Re-read the logs every {LIVE_SECONDS} s")
results_key, score_options = stored_scores(ws.root)
overlays: list[ScoreOverlay] = []
if score_options:
    chosen_scores = st.multiselect("Checkpoint scores (right axis)", list(score_options), key="curves_scores",
                                   help="Stored metrics of each checkpoint (Metrics page), drawn at its step")
    try:
        overlays = overlays_for(ws.root, results_key, score_options, chosen_scores, chosen)
    except EvalCoreError as exc:
        st.error(problem_text(exc.message, exc.path, exc.line, exc.field))

markers: list[StepMarker] = []
try:
    forgetting = stored_forgetting(ws.root) if score_options else None
except EvalCoreError as exc:
    forgetting = None
    st.warning(problem_text(exc.message, exc.path, exc.line, exc.field))
if forgetting is not None and st.checkbox(
        "Forgetting: general retention and the recommended checkpoint", value=True, key="curves_forgetting",
        help="From the Forgetting page's analysis (right axis: retention against the base model)"):
    retention, markers = curve_markers(forgetting, chosen)
    overlays += retention
    if not markers:
        st.caption(plain(recommendation_text(forgetting)))


@st.fragment(run_every=LIVE_SECONDS if live else None)
def chart() -> None:
    current = load_tables(root_path, chosen_runs) if live else table
    for warning in current.warnings:
        st.warning(plain(warning))
    if not metrics:
        st.info("Choose at least one metric.")
        return
    summaries = [
        summarize_metric(current, r, m, patience)
        for r in chosen for m in metrics if is_eval_metric(m) and current.series(m, r)
    ]
    steps = {r.name: [c.step for c in r.checkpoints if c.step is not None] for r in chosen_runs}
    fig = training_curves_figure(current, chosen, metrics, x_axis=x_axis, smoothing=smoothing, log_y=log_y,
                                 summaries=summaries, checkpoint_steps=steps, overlays=overlays, markers=markers)
    st.plotly_chart(fig, width="stretch", key="curves_chart")
    st.caption(
        plain(
            f"Smoothing: TensorBoard's debiased exponential moving average, weight {smoothing:g} (raw values "
            f"drawn faintly). Best step, overfitting onset and early stopping use raw values, patience "
            f"{patience} evaluations. Sources: {', '.join(Path(s).name for s in current.sources)}."
        )
    )
    if summaries:
        st.subheader("Per eval metric")
        st.dataframe(
            pd.DataFrame(
                [
                    {
                        "run": s.run, "metric": s.metric, "better": s.direction, "best step": s.best_step,
                        "best value": s.best_value, "last step": s.last_step, "last value": s.last_value,
                        "overfitting from step": s.overfit_onset_step, "early stop at step": s.early_stop_step,
                        "gap at best": s.generalization_gap_at_best, "gap at last": s.generalization_gap_at_last,
                    }
                    for s in summaries
                ]
            ),
            hide_index=True,
            width="stretch",
        )


chart()
