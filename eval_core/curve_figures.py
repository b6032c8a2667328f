"""Plotly figures of training curves, shared by the app and (later) exported reports.

One chart per call: raw series drawn faintly under their smoothed line, the best step of each eval
metric marked with a labelled star, the overfitting onset as a labelled dashed line, checkpoint
save points as triangles along the bottom, and optional checkpoint scores (perplexity, BLEU,
forgetting, win rate: `ScoreOverlay`) on a second y axis sharing the x axis, and labelled vertical
lines at chosen steps (the recommended checkpoint: `StepMarker`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import plotly.graph_objects as go
from plotly.colors import qualitative

from eval_core.curve_analysis import MetricSummary, smooth_tensorboard
from eval_core.figure_text import literal_figure
from eval_core.training_logs import CurvePoint, CurveTable

XAxis = Literal["step", "epoch", "wall_time"]
X_TITLES = {"step": "step", "epoch": "epoch", "wall_time": "wall time (UTC)"}


@dataclass(frozen=True)
class ScoreOverlay:
    """Scores computed per checkpoint, drawn on the curves' x axis (second y axis)."""

    name: str
    run: str
    steps: tuple[int, ...]
    values: tuple[float, ...]
    unit: str = ""
    colour: str | None = None  # None: the palette's next colour
    percent: bool = False  # values are fractions, shown as percentages


@dataclass(frozen=True)
class StepMarker:
    """A labelled vertical line at one run's step (e.g. the recommended checkpoint)."""

    run: str
    step: int
    label: str
    colour: str = "#d62728"


def _x(point: CurvePoint, axis: XAxis):
    if axis == "step":
        return point.step
    if axis == "epoch":
        return point.epoch
    return None if point.wall_time is None else datetime.fromtimestamp(point.wall_time, tz=UTC)


def _x_at_step(points: Sequence[CurvePoint], step: int, axis: XAxis):
    """The x of a step on this axis, from the nearest logged point at or after it."""
    for p in sorted(points, key=lambda q: q.step):
        if p.step >= step and _x(p, axis) is not None:
            return _x(p, axis)
    return None


def training_curves_figure(
    table: CurveTable,
    runs: Sequence[str],
    metrics: Sequence[str],
    *,
    x_axis: XAxis = "step",
    smoothing: float = 0.6,
    log_y: bool = False,
    summaries: Sequence[MetricSummary] = (),
    checkpoint_steps: dict[str, Sequence[int]] | None = None,
    overlays: Sequence[ScoreOverlay] = (),
    markers: Sequence[StepMarker] = (),
    title: str = "Training curves",
) -> go.Figure:
    """Build the training-curves chart.

    Example:
        >>> fig = training_curves_figure(table, ["support-ft"], ["loss", "eval_support_loss"])  # doctest: +SKIP
    """
    fig = go.Figure()
    palette = qualitative.Plotly
    ys: list[float] = []
    colour_of: dict[tuple[str, str], str] = {}
    for i, (run, metric) in enumerate((r, m) for r in runs for m in metrics):
        points = [p for p in table.series(metric, run) if _x(p, x_axis) is not None]
        if not points:
            continue
        colour = colour_of[(run, metric)] = palette[i % len(palette)]
        name = metric if len(runs) == 1 else f"{run} · {metric}"
        xs = [_x(p, x_axis) for p in points]
        raw = [p.value for p in points]
        ys += [v for v in raw if math.isfinite(v) and (v > 0 or not log_y)]
        fig.add_trace(go.Scatter(
            x=xs, y=raw, name=f"{name} (raw)", mode="lines", line={"color": colour, "width": 1},
            opacity=0.3, legendgroup=name, showlegend=False, hovertemplate="%{y:.4g} (raw)<extra>" + name + "</extra>",
        ))
        fig.add_trace(go.Scatter(
            x=xs, y=smooth_tensorboard(raw, smoothing), name=name, mode="lines+markers" if len(points) < 30 else "lines",
            line={"color": colour, "width": 2}, marker={"size": 5}, legendgroup=name,
            hovertemplate="%{y:.4g}<extra>" + name + "</extra>",
        ))

    for s in summaries:
        if (s.run, s.metric) not in colour_of or s.best_step is None:
            continue
        points = table.series(s.metric, s.run)
        bx = _x_at_step(points, s.best_step, x_axis)
        if bx is not None and s.best_value is not None and math.isfinite(s.best_value):
            fig.add_trace(go.Scatter(
                x=[bx], y=[s.best_value], mode="markers+text", marker={"symbol": "star", "size": 16,
                "color": colour_of[(s.run, s.metric)], "line": {"width": 1, "color": "black"}},
                text=[f"best: step {s.best_step}"], textposition="top center", name=f"best {s.metric}",
                legendgroup="markers", hovertemplate=f"best {s.metric}: %{{y:.4g}} at step {s.best_step}<extra>{s.run}</extra>",
            ))
        if s.overfit_onset_step is not None:
            ox = _x_at_step(points, s.overfit_onset_step, x_axis)
            if ox is not None:
                fig.add_shape(type="line", x0=ox, x1=ox, y0=0, y1=1, yref="paper",
                              line={"color": colour_of[(s.run, s.metric)], "dash": "dash", "width": 1.5})
                fig.add_annotation(x=ox, y=1, yref="paper", yanchor="bottom", showarrow=False,
                                   text=f"{s.metric}: overfitting from step {s.overfit_onset_step}",
                                   font={"size": 11, "color": colour_of[(s.run, s.metric)]})

    if checkpoint_steps and ys:
        bottom = min(ys)
        for run, steps in checkpoint_steps.items():
            if run not in runs:
                continue
            run_points = [p for p in table.points if p.run == run]
            cx = [_x_at_step(run_points, s, x_axis) for s in steps]
            kept = [(x, s) for x, s in zip(cx, steps) if x is not None]
            if kept:
                fig.add_trace(go.Scatter(
                    x=[x for x, _ in kept], y=[bottom] * len(kept), mode="markers",
                    marker={"symbol": "triangle-up", "size": 10, "color": "grey"},
                    name="checkpoint saved" if len(runs) == 1 else f"{run} · checkpoint saved",
                    customdata=[f"checkpoint-{s}" for _, s in kept],
                    hovertemplate="%{customdata}<extra>" + run + "</extra>",
                ))

    for o in overlays:
        run_points = [p for p in table.points if p.run == o.run]
        ox = [(_x_at_step(run_points, s, x_axis) if x_axis != "step" else s) for s in o.steps]
        fig.add_trace(go.Scatter(
            x=ox, y=list(o.values), yaxis="y2", mode="lines+markers", name=f"{o.name} ({o.run})",
            line={"dash": "dot", "width": 2.5, **({"color": o.colour} if o.colour else {})},
            marker={"symbol": "diamond", "size": 9, **({"color": o.colour} if o.colour else {})},
            hovertemplate=("%{y:.1%}" if o.percent else "%{y:.4g}") + f"<extra>{o.name}</extra>",
        ))
    for m in markers:
        if m.run not in runs:
            continue
        run_points = [p for p in table.points if p.run == m.run]
        mx = m.step if x_axis == "step" else _x_at_step(run_points, m.step, x_axis)
        if mx is not None:
            fig.add_shape(type="line", x0=mx, x1=mx, y0=0, y1=1, yref="paper", line={"color": m.colour, "width": 2.5})
            fig.add_annotation(x=mx, y=0.5, yref="paper", xanchor="left", showarrow=False, text=m.label,
                               font={"size": 12, "color": m.colour}, bgcolor="rgba(255,255,255,0.8)")
    layout: dict = {
        "title": {"text": title},
        "xaxis": {"title": {"text": X_TITLES[x_axis]}},
        "yaxis": {"title": {"text": "value"}, "type": "log" if log_y else "linear"},
        "legend": {"orientation": "h", "yanchor": "top", "y": -0.18},
        "hovermode": "x unified",
        "margin": {"t": 70},
    }
    if overlays:
        units = {o.unit for o in overlays if o.unit}
        layout["yaxis2"] = {"overlaying": "y", "side": "right", "showgrid": False,
                            "title": {"text": ", ".join(sorted(units)) or "checkpoint score"},
                            **({"tickformat": ".0%"} if all(o.percent for o in overlays) else {})}
    fig.update_layout(**layout)
    return literal_figure(fig)  # names from files are shown as written, never as markup
