"""Plotly figures of stored checkpoint scores: a metric by training step, and score overlays.

`metric_step_figure` draws one line per run through its checkpoints' values, each with its 95%
bootstrap interval as an error bar, and the base model as a dashed horizontal line with its
interval as a faint band (the base has no training step). `score_overlays` turns the same rows
into `ScoreOverlay`s for the Training curves chart.
"""

from __future__ import annotations

from collections.abc import Sequence

import plotly.graph_objects as go
from plotly.colors import qualitative

from eval_core.curve_figures import ScoreOverlay
from eval_core.figure_text import literal_figure
from eval_core.metric_ranking import direction_arrow, format_interval, format_value
from eval_core.metric_tables import MetricRow


def metric_step_figure(rows: Sequence[MetricRow], *, base: MetricRow | None = None, title: str | None = None) -> go.Figure:
    """One metric's value per checkpoint step (whole-set rows with a step), intervals as error bars.

    Example:
        >>> rows = metric_by_step(results, "bleu")  # doctest: +SKIP
        >>> metric_step_figure(rows, base=base_row).layout.xaxis.title.text  # doctest: +SKIP
        'training step'
    """
    metric = rows[0].metric if rows else base.metric if base else ""
    fig = go.Figure()
    runs = list(dict.fromkeys(r.run for r in rows if r.step is not None and r.category is None))
    for i, run in enumerate(runs):
        points = sorted((r for r in rows if r.run == run and r.step is not None and r.category is None), key=lambda r: r.step)
        fig.add_trace(go.Scatter(
            x=[r.step for r in points], y=[r.interval.value for r in points], mode="lines+markers",
            name=run or metric, line={"color": qualitative.Plotly[i % len(qualitative.Plotly)]},
            error_y={"type": "data", "symmetric": False,
                     "array": [r.interval.high - r.interval.value for r in points],
                     "arrayminus": [r.interval.value - r.interval.low for r in points]},
            customdata=[[r.checkpoint, format_interval(r.interval)] for r in points],
            hovertemplate="%{customdata[0]}: %{customdata[1]}<extra>" + (run or "") + "</extra>",
        ))
    if base is not None:
        iv = base.interval
        fig.add_hrect(y0=iv.low, y1=iv.high, fillcolor="grey", opacity=0.12, line_width=0)
        fig.add_hline(y=iv.value, line={"dash": "dash", "color": "grey"},
                      annotation_text=f"{base.checkpoint}: {format_value(metric, iv.value)}", annotation_position="top left")
    fig.update_layout(
        title={"text": title or f"{metric} {direction_arrow(metric)} by training step (95% intervals)"},
        xaxis={"title": {"text": "training step"}},
        yaxis={"title": {"text": metric}},
        legend={"orientation": "h", "yanchor": "top", "y": -0.2},
        margin={"t": 60},
    )
    return literal_figure(fig)  # names from files are shown as written, never as markup


def score_overlays(rows: Sequence[MetricRow], runs: Sequence[str], name: str) -> list[ScoreOverlay]:
    """One ScoreOverlay per run in `runs` with whole-set values at its checkpoint steps (unit: the metric)."""
    out = []
    for run in runs:
        points = sorted((r for r in rows if r.run == run and r.step is not None and r.category is None), key=lambda r: r.step)
        if points:
            out.append(ScoreOverlay(name, run, tuple(r.step for r in points), tuple(r.interval.value for r in points),
                                    unit=points[0].metric))
    return out
