"""Plotly figures of a forgetting report: retention by step beside domain gain, gain vs retention.

`retention_step_figure` draws, per training step, the retention of one probe kind (and category)
with its paired bootstrap 95% interval as error bars on the left axis (for whole sets, also the general
retention), and the domain gain on a second axis; a dashed line marks the threshold and a red line the
recommended checkpoint's step. `frontier_figure` is the scatter of (general
retention, domain gain) per checkpoint, the Pareto frontier as a line, the recommendation starred.
"""

from __future__ import annotations

import plotly.graph_objects as go

from eval_core.figure_text import literal_figure
from eval_core.forgetting import ForgettingReport, Retention


def retention_rows(report: ForgettingReport, kind: str, category: str | None = None) -> list[tuple[str, int | None, Retention]]:
    """(label, step, retention) of every checkpoint with this kind (and category)."""
    out = []
    for c in report.checkpoints:
        pool = c.retention if category is None else c.by_category
        for r in pool:
            if r.kind == kind and r.category == category:
                out.append((c.label, c.step, r))
    return out


def retention_step_figure(report: ForgettingReport, kind: str, category: str | None = None) -> go.Figure:
    """Retention of `kind` by training step with 95% error bars; domain gain on a second axis.

    Example:
        >>> retention_step_figure(report, "mc_acc").layout.xaxis.title.text  # doctest: +SKIP
        'training step'
    """
    rows = [(lbl, s, r) for lbl, s, r in retention_rows(report, kind, category) if r.retention is not None]
    fig = go.Figure()
    fig.add_trace(go.Scatter(
        x=[s for _, s, _ in rows], y=[r.retention for _, _, r in rows], mode="lines+markers",
        name=f"retention: {kind}" + (f" · {category}" if category else ""),
        error_y={"type": "data", "symmetric": False,
                 "array": [(r.high or r.retention) - r.retention for _, _, r in rows],  # type: ignore[operator]
                 "arrayminus": [r.retention - (r.low or r.retention) for _, _, r in rows]},  # type: ignore[operator]
        text=[lbl for lbl, _, _ in rows], hovertemplate="%{text}<br>step %{x}<br>retention %{y:.1%}<extra></extra>"))
    general = [c for c in report.checkpoints if c.general_retention is not None and c.step is not None]
    if general and category is None:
        fig.add_trace(go.Scatter(
            x=[c.step for c in general], y=[c.general_retention for c in general], mode="lines+markers",
            name="general retention", line={"color": "#2ca02c", "width": 3}, text=[c.label for c in general],
            hovertemplate="%{text}<br>step %{x}<br>general retention %{y:.1%}<extra></extra>"))
    rec = next((c for c in report.checkpoints if c.label == report.recommendation.checkpoint and c.step is not None), None)
    if rec is not None:
        fig.add_vline(x=rec.step, line_color="#d62728", annotation_text=f"recommended: {rec.label}")
    gains = [c for c in report.checkpoints if c.domain_gain is not None]
    fig.add_trace(go.Scatter(
        x=[c.step for c in gains], y=[c.domain_gain for c in gains], mode="lines+markers", yaxis="y2",
        name="domain gain", line={"dash": "dot"}, text=[c.label for c in gains],
        hovertemplate="%{text}<br>step %{x}<br>domain gain %{y:+.1%}<extra></extra>"))
    fig.add_hline(y=report.threshold, line_dash="dash", line_color="gray",
                  annotation_text=f"threshold {report.threshold:.0%}")
    fig.update_layout(xaxis_title="training step", yaxis={"title": "retention vs base", "tickformat": ".0%"},
                      yaxis2={"title": "domain gain", "overlaying": "y", "side": "right", "tickformat": "+.0%"},
                      legend={"orientation": "h"}, margin={"t": 30})
    return literal_figure(fig)  # names from files are shown as written, never as markup


def frontier_figure(report: ForgettingReport) -> go.Figure:
    """Domain gain vs general retention per checkpoint; the frontier joined; the recommendation starred."""
    pts = [c for c in report.checkpoints if c.domain_gain is not None and c.general_retention is not None]
    fig = go.Figure()
    fig.add_trace(go.Scatter(
        x=[c.general_retention for c in pts], y=[c.domain_gain for c in pts], mode="markers+text",
        text=[c.label for c in pts], textposition="top center", name="checkpoints",
        marker={"size": 10, "color": ["#1f77b4" if c.on_frontier else "#aaaaaa" for c in pts]}))
    front = sorted((c for c in pts if c.on_frontier), key=lambda c: c.general_retention)  # type: ignore[arg-type,return-value]
    fig.add_trace(go.Scatter(x=[c.general_retention for c in front], y=[c.domain_gain for c in front],
                             mode="lines", name="Pareto frontier", line={"color": "#1f77b4"}))
    rec = [c for c in pts if c.label == report.recommendation.checkpoint]
    if rec:
        fig.add_trace(go.Scatter(x=[rec[0].general_retention], y=[rec[0].domain_gain], mode="markers",
                                 name=f"recommended: {rec[0].label}",
                                 marker={"symbol": "star", "size": 20, "color": "#d62728"}))
    fig.add_vline(x=report.threshold, line_dash="dash", line_color="gray",
                  annotation_text=f"threshold {report.threshold:.0%}")
    fig.update_layout(xaxis={"title": "general retention", "tickformat": ".0%"},
                      yaxis={"title": "domain gain", "tickformat": "+.0%"}, margin={"t": 30})
    return literal_figure(fig)  # names from files are shown as written, never as markup
